"""Fetching the arm64 kernel package: index parsing and verified download."""

from __future__ import annotations

import functools
import hashlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.qemu.debian import DebianFetchError, fetch_deb, parse_packages, resolve_metapackage

INDEX = """\
Package: linux-image-cloud-arm64
Source: linux-signed-arm64 (6.1.176+1)
Version: 6.1.176-1
Depends: linux-image-6.1.0-50-cloud-arm64 (= 6.1.176-1)
Filename: pool/main/l/linux-signed-arm64/linux-image-cloud-arm64_6.1.176-1_arm64.deb
SHA256: {meta}
Description: Linux for arm64 cloud (meta-package)
 This package depends on the latest Linux kernel
 and modules for use on cloud platforms.

Package: linux-image-6.1.0-50-cloud-arm64
Version: 6.1.176-1
Depends: kmod, linux-base (>= 4.3~), initramfs-tools (>= 0.120+deb8u2) | linux-initramfs-tool
Filename: pool/main/l/linux/kernel.deb
SHA256: {real}
"""


@pytest.fixture
def mirror(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A real HTTP server on loopback serving tmp_path/www as a mirror."""
    www = tmp_path / "www"
    (www / "pool/main/l/linux").mkdir(parents=True)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(www))
    handler.log_message = lambda *a, **k: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", www
    finally:
        server.shutdown()
        server.server_close()


def test_parse_and_follow_metapackage() -> None:
    idx = parse_packages(INDEX.format(meta="a" * 64, real="b" * 64))
    assert set(idx) == {"linux-image-cloud-arm64", "linux-image-6.1.0-50-cloud-arm64"}
    assert "modules for use on cloud platforms." in idx["linux-image-cloud-arm64"]["Description"]
    real = resolve_metapackage(idx, "linux-image-cloud-arm64")
    assert real["Package"] == "linux-image-6.1.0-50-cloud-arm64"
    assert real["SHA256"] == "b" * 64


def test_unknown_package_names_the_recipe_key() -> None:
    with pytest.raises(DebianFetchError, match="kernel_package in firmware/qemu/recipe.toml"):
        resolve_metapackage(parse_packages(INDEX.format(meta="a" * 64, real="b" * 64)),
                            "linux-image-nope")


def test_download_is_verified(mirror: tuple[str, Path], tmp_path: Path) -> None:
    url, www = mirror
    payload = b"!<arch>\nfake deb"
    (www / "pool/main/l/linux/kernel.deb").write_bytes(payload)
    good = hashlib.sha256(payload).hexdigest()
    fields = {"Package": "k", "Filename": "pool/main/l/linux/kernel.deb", "SHA256": good}
    dest = tmp_path / "debs"
    dest.mkdir()
    got = fetch_deb(fields, url, dest)
    assert got.read_bytes() == payload
    # cached: a second fetch works even with the mirror gone
    assert fetch_deb(fields, "http://127.0.0.1:9/", dest) == got

    got.unlink()
    bad = dict(fields, SHA256="0" * 64)
    with pytest.raises(DebianFetchError, match="arrived corrupted"):
        fetch_deb(bad, url, dest)
    assert not list(dest.iterdir()), "a corrupted download must not be left behind"


def test_unreachable_mirror_says_how_to_fix(tmp_path: Path) -> None:
    fields = {"Package": "k", "Filename": "pool/x.deb", "SHA256": "1" * 64}
    with pytest.raises(DebianFetchError, match="GEM_HIL_DEBIAN_MIRROR"):
        fetch_deb(fields, "http://127.0.0.1:9", tmp_path)
    with pytest.raises(DebianFetchError, match="only http"):
        fetch_deb(fields, "file:///etc", tmp_path)
