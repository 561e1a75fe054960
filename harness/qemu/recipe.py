"""The arm64 image recipe (firmware/qemu/) as data, and its cache key.

The key is a hash of every file in the recipe folder plus the few host facts
that change the produced bytes (the builder's format version). It is what lets
a second `gem-hil qemu build pi4` with nothing changed finish in seconds: the
image folder is named after the key, and a changed recipe simply gets a new
folder instead of silently reusing a stale image.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from gem.files import cache_root
from harness.errors import ConfigError

#: bump when harness/qemu/image.py changes what it writes from the same recipe
BUILDER_VERSION = 3

_RECIPE_FILE = "recipe.toml"


def default_recipe_dir() -> Path:
    """firmware/qemu/ of this checkout (GEM_HIL_QEMU_RECIPE overrides it, for tests)."""
    env = os.environ.get("GEM_HIL_QEMU_RECIPE")
    if env:
        return Path(env)
    from harness.resources import shipped_dir

    return shipped_dir("firmware") / "qemu"


def default_cache_dir() -> Path:
    """$GEM_HIL_CACHE/qemu, else ~/.cache/gem-hil/qemu: images are large and
    slow to make, so they live outside the work tree and survive checkouts."""
    home = None
    sudo_user = os.environ.get("SUDO_USER")
    if os.geteuid() == 0 and sudo_user and sudo_user != "root":
        # `sudo gem-hil qemu build` builds for the user who typed it
        import pwd

        with contextlib.suppress(KeyError):
            home = Path(pwd.getpwnam(sudo_user).pw_dir)
    return cache_root(home) / "qemu"


@dataclass(frozen=True)
class Recipe:
    """What firmware/qemu/recipe.toml says, checked."""

    dir: Path
    name: str
    suite: str
    arch: str
    variant: str
    include: tuple[str, ...]
    kernel_package: str
    initramfs_modules: tuple[str, ...]
    python_version: str
    image_size_mb: int

    @property
    def wheels_file(self) -> Path:
        return self.dir / "wheels.txt"

    @property
    def rootfs_overlay(self) -> Path:
        return self.dir / "rootfs"

    @property
    def initramfs_init(self) -> Path:
        return self.dir / "initramfs" / "init"

    @property
    def cpuinfo_file(self) -> Path:
        return self.dir / "cpuinfo-cortex-a72.txt"


def load_recipe(name: str = "pi4", recipe_dir: Path | None = None) -> Recipe:
    """Read and check the recipe; errors name the file and key to fix."""
    rdir = Path(recipe_dir) if recipe_dir else default_recipe_dir()
    path = rdir / _RECIPE_FILE
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"QEMU image recipe not found: {path} is missing; the checkout "
                          "should contain firmware/qemu/recipe.toml") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None

    def need(key: str, typ: type) -> object:
        if key not in raw:
            raise ConfigError(f"{path}: missing key {key!r}")
        value = raw[key]
        if not isinstance(value, typ) or isinstance(value, bool) and typ is int:
            raise ConfigError(f"{path}: {key} must be a {typ.__name__}, got {value!r}")
        return value

    recipe_name = str(need("name", str))
    if recipe_name != name:
        raise ConfigError(f"{path}: name = {recipe_name!r}, but image {name!r} was asked for; "
                          f"only {recipe_name!r} is defined")
    include = need("include", list)
    modules = need("initramfs_modules", list)
    for key, seq in (("include", include), ("initramfs_modules", modules)):
        if not all(isinstance(x, str) and x for x in seq):  # type: ignore[union-attr]
            raise ConfigError(f"{path}: {key} must be a list of non-empty strings")
    size = int(need("image_size_mb", int))  # type: ignore[call-overload]
    if size < 256:
        raise ConfigError(f"{path}: image_size_mb = {size} is too small (at least 256)")
    return Recipe(
        dir=rdir, name=recipe_name, suite=str(need("suite", str)), arch=str(need("arch", str)),
        variant=str(need("variant", str)), include=tuple(include),  # type: ignore[arg-type]
        kernel_package=str(need("kernel_package", str)),
        initramfs_modules=tuple(modules),  # type: ignore[arg-type]
        python_version=str(need("python_version", str)), image_size_mb=size,
    )


#: what goes into the image; firmware/qemu/bin/ (host-side helpers) does not
KEYED_ENTRIES = ("recipe.toml", "wheels.txt", "cpuinfo-cortex-a72.txt", "rootfs", "initramfs")


def recipe_files(recipe_dir: Path) -> list[Path]:
    """Every file that shapes the image, in a stable order (symlinks refused:
    they would make the key depend on something outside the folder)."""
    files = []
    for entry in KEYED_ENTRIES:
        top = recipe_dir / entry
        candidates = [top] if top.is_file() else sorted(top.rglob("*"))
        for path in candidates:
            if path.is_symlink():
                raise ConfigError(f"{path}: symlinks are not allowed in the QEMU recipe folder")
            if path.is_file() and "__pycache__" not in path.parts:
                files.append(path)
    return files


def cache_key(recipe: Recipe) -> str:
    """Hex key of the recipe's content (names, modes and bytes of its files)."""
    h = hashlib.sha256(f"gem-hil-qemu-builder-{BUILDER_VERSION}\n".encode())
    for path in recipe_files(recipe.dir):
        rel = path.relative_to(recipe.dir).as_posix()
        # only the executable bit: other mode bits follow the user's umask
        exe = "x" if path.stat().st_mode & 0o111 else "-"
        h.update(f"{rel}\0{exe}\0".encode())
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()[:16]
