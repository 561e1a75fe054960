"""The initramfs writer: a real newc archive the kernel (and cpio) can read."""

from __future__ import annotations

import gzip
import lzma
import shutil
import subprocess
from pathlib import Path

import pytest

from harness.qemu.initramfs import CpioWriter, InitramfsError, build_initramfs


def read_newc(data: bytes) -> dict[str, tuple[int, bytes, tuple[int, int]]]:
    """Independent reader: name -> (mode, data, (rdevmajor, rdevminor))."""
    out = {}
    pos = 0
    while True:
        assert data[pos:pos + 6] == b"070701", f"bad magic at {pos}"
        fields = [int(data[pos + 6 + 8 * i: pos + 14 + 8 * i], 16) for i in range(13)]
        mode, size, rmaj, rmin, namesize = fields[1], fields[6], fields[9], fields[10], fields[11]
        pos += 110
        name = data[pos:pos + namesize - 1].decode()
        pos = (pos + namesize + 3) & ~3
        body = data[pos:pos + size]
        pos = (pos + size + 3) & ~3
        if name == "TRAILER!!!":
            return out
        out[name] = (mode, body, (rmaj, rmin))


def test_cpio_roundtrip() -> None:
    w = CpioWriter()
    w.directory("bin")
    w.file("bin/x", b"hello", 0o755)
    w.symlink("bin/sh", "busybox")
    w.chardev("dev/console", 5, 1)
    entries = read_newc(w.finish())
    assert entries["bin/x"] == (0o100755, b"hello", (0, 0))
    assert entries["bin/sh"][1] == b"busybox"
    assert entries["dev/console"][0] == 0o020600 and entries["dev/console"][2] == (5, 1)


@pytest.mark.skipif(shutil.which("cpio") is None, reason="cpio not installed")
def test_gnu_cpio_reads_it(tmp_path: Path) -> None:
    w = CpioWriter()
    w.directory("d")
    w.file("d/f", b"x" * 5, 0o644)
    res = subprocess.run(["cpio", "-t"], input=w.finish(), capture_output=True, check=True)
    assert res.stdout.decode().split() == ["d", "d/f"]


def _kernel_tree(tmp_path: Path) -> Path:
    mods = tmp_path / "lib/modules/6.1.0-test"
    (mods / "kernel/drivers/virtio").mkdir(parents=True)
    (mods / "kernel/drivers/virtio/virtio_ring.ko").write_bytes(b"ring")
    (mods / "kernel/drivers/virtio/virtio-pci.ko.xz").write_bytes(lzma.compress(b"pci"))
    (mods / "modules.builtin").write_text("kernel/fs/ext4/ext4.ko\n")
    return mods


def test_build_initramfs(tmp_path: Path) -> None:
    mods = _kernel_tree(tmp_path)
    busybox = tmp_path / "busybox"
    busybox.write_bytes(b"\x7fELF fake")
    init = tmp_path / "init"
    init.write_text("#!/bin/busybox sh\n")
    out = tmp_path / "initrd.img"
    loaded = build_initramfs(busybox, init, mods, ("virtio_ring", "virtio_pci", "ext4"), out)
    assert loaded == ["virtio_ring", "virtio_pci"]  # ext4 is built in: nothing to load
    entries = read_newc(gzip.decompress(out.read_bytes()))
    assert entries["init"][0] == 0o100755
    assert entries["modules/virtio_pci.ko"][1] == b"pci"  # decompressed on the host
    assert entries["modules.order"][1] == b"virtio_ring\nvirtio_pci\n"
    assert "dev/console" in entries


def test_missing_module_is_an_error(tmp_path: Path) -> None:
    mods = _kernel_tree(tmp_path)
    (tmp_path / "bb").write_bytes(b"")
    (tmp_path / "init").write_text("")
    with pytest.raises(InitramfsError, match="virtio_blk.*initramfs_modules"):
        build_initramfs(tmp_path / "bb", tmp_path / "init", mods, ("virtio_blk",),
                        tmp_path / "out")
