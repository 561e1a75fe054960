"""The QEMU image recipe: loading, checking, and the content cache key."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from harness.errors import ConfigError
from harness.qemu.recipe import cache_key, default_cache_dir, default_recipe_dir, load_recipe


@pytest.fixture
def recipe_dir(tmp_path: Path) -> Path:
    """A private copy of firmware/qemu/ to edit."""
    dst = tmp_path / "qemu"
    shutil.copytree(default_recipe_dir(), dst)
    return dst


def test_shipped_recipe_loads() -> None:
    r = load_recipe("pi4")
    assert r.arch == "arm64"
    assert "python3" in r.include and "openssh-server" in r.include
    assert r.initramfs_modules[:2] == ("virtio_ring", "virtio")
    assert r.wheels_file.is_file() and r.initramfs_init.is_file()


def test_key_is_stable_and_follows_content(recipe_dir: Path) -> None:
    k1 = cache_key(load_recipe("pi4", recipe_dir))
    assert k1 == cache_key(load_recipe("pi4", recipe_dir))
    assert len(k1) == 16
    init = recipe_dir / "rootfs/etc/gem-hil/rcS"
    init.write_text(init.read_text() + "# changed\n")
    k2 = cache_key(load_recipe("pi4", recipe_dir))
    assert k2 != k1


def test_key_sees_exec_bit_but_not_umask(recipe_dir: Path) -> None:
    rcs = recipe_dir / "rootfs/etc/gem-hil/rcS"
    base = cache_key(load_recipe("pi4", recipe_dir))
    rcs.chmod(0o775)  # group-writable: a different umask, same meaning
    assert cache_key(load_recipe("pi4", recipe_dir)) == base
    rcs.chmod(0o644)  # no longer executable: the guest would not boot the same
    assert cache_key(load_recipe("pi4", recipe_dir)) != base


def test_host_helpers_do_not_change_the_key(recipe_dir: Path) -> None:
    base = cache_key(load_recipe("pi4", recipe_dir))
    (recipe_dir / "bin" / "qemu-user-python").write_text("#!/bin/sh\necho changed\n")
    assert cache_key(load_recipe("pi4", recipe_dir)) == base


def test_symlink_in_recipe_is_refused(recipe_dir: Path) -> None:
    (recipe_dir / "rootfs/etc/evil").symlink_to("/etc/shadow")
    with pytest.raises(ConfigError, match="symlinks are not allowed"):
        cache_key(load_recipe("pi4", recipe_dir))


def test_errors_name_the_file_and_key(recipe_dir: Path) -> None:
    path = recipe_dir / "recipe.toml"
    text = path.read_text()
    path.write_text(text.replace('kernel_package = "linux-image-cloud-arm64"\n', ""))
    with pytest.raises(ConfigError, match=r"recipe.toml: missing key 'kernel_package'"):
        load_recipe("pi4", recipe_dir)
    path.write_text(text)
    with pytest.raises(ConfigError, match="only 'pi4' is defined"):
        load_recipe("rpi5", recipe_dir)
    path.write_text(text.replace("image_size_mb = 1024", "image_size_mb = 10"))
    with pytest.raises(ConfigError, match="too small"):
        load_recipe("pi4", recipe_dir)
    with pytest.raises(ConfigError, match="recipe not found"):
        load_recipe("pi4", recipe_dir / "nowhere")


def test_cache_dir_follows_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GEM_HIL_CACHE", str(tmp_path))
    assert default_cache_dir() == tmp_path / "qemu"
    monkeypatch.delenv("GEM_HIL_CACHE")
    monkeypatch.delenv("SUDO_USER", raising=False)
    assert default_cache_dir() == Path.home() / ".cache" / "gem-hil" / "qemu"
