"""The guest's tiny initramfs: static busybox, the virtio modules, an /init.

Written as a "newc" cpio archive directly from Python, so the build needs no
cpio binary and every entry is owned by root with exactly the mode we choose,
whoever runs the build. The cloud kernel has ext4 built in but virtio as
modules, hence this small step before switch_root to /dev/vda.
"""

from __future__ import annotations

import gzip
import io
import lzma
from pathlib import Path

from harness.errors import HarnessError


class InitramfsError(HarnessError):
    """The kernel package lacks something the initramfs needs."""


class CpioWriter:
    """Minimal newc writer (the format the Linux kernel unpacks)."""

    def __init__(self) -> None:
        self._buf = io.BytesIO()
        self._ino = 1

    def _write(self, name: str, mode: int, data: bytes, nlink: int,
               rdev: tuple[int, int] = (0, 0)) -> None:
        encoded = name.encode() + b"\0"
        header = "070701" + "".join(f"{v:08x}" for v in (
            self._ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rdev[0], rdev[1],
            len(encoded), 0))
        self._ino += 1
        self._buf.write(header.encode() + encoded)
        self._pad()
        self._buf.write(data)
        self._pad()

    def _pad(self) -> None:
        self._buf.write(b"\0" * (-self._buf.tell() % 4))

    def directory(self, name: str, perm: int = 0o755) -> None:
        self._write(name, 0o040000 | perm, b"", 2)

    def file(self, name: str, data: bytes, perm: int = 0o644) -> None:
        self._write(name, 0o100000 | perm, data, 1)

    def chardev(self, name: str, major: int, minor: int, perm: int = 0o600) -> None:
        self._write(name, 0o020000 | perm, b"", 1, (major, minor))

    def symlink(self, name: str, target: str) -> None:
        self._write(name, 0o120000 | 0o777, target.encode(), 1)

    def finish(self) -> bytes:
        self._write("TRAILER!!!", 0, b"", 1)
        return self._buf.getvalue()


def find_module(modules_dir: Path, name: str) -> Path | None:
    """Path of NAME.ko / NAME.ko.xz under lib/modules/VERSION, or None.

    Module file names use either '_' or '-' for the same module name.
    """
    variants = {name, name.replace("_", "-")}
    for path in modules_dir.rglob("*.ko*"):
        base = path.name.split(".ko")[0]
        if base in variants:
            return path
    return None


def module_bytes(path: Path) -> bytes:
    """Module content, decompressed on the host (busybox insmod reads plain .ko)."""
    data = path.read_bytes()
    if path.name.endswith(".ko.xz"):
        return lzma.decompress(data)
    if path.name.endswith(".ko.gz"):
        return gzip.decompress(data)
    if path.name.endswith(".ko.zst"):
        raise InitramfsError(f"{path}: zstd-compressed modules are not supported by this "
                             "builder; use a kernel package with .ko or .ko.xz modules")
    return data


def build_initramfs(busybox: Path, init_script: Path, modules_dir: Path,
                    module_names: tuple[str, ...], out: Path) -> list[str]:
    """Write a gzip'd cpio to out; return the module names it will load.

    A module that is neither shipped nor listed in modules.builtin is an error:
    the VM would otherwise hang waiting for /dev/vda.
    """
    builtin_file = modules_dir / "modules.builtin"
    builtin = builtin_file.read_text() if builtin_file.is_file() else ""
    cpio = CpioWriter()
    for d in ("bin", "dev", "proc", "sys", "newroot", "modules"):
        cpio.directory(d)
    # without /dev/console the kernel starts /init with no stdout: no error text
    cpio.chardev("dev/console", 5, 1)
    cpio.file("bin/busybox", busybox.read_bytes(), 0o755)
    cpio.symlink("bin/sh", "busybox")
    cpio.file("init", init_script.read_bytes(), 0o755)
    loaded = []
    for name in module_names:
        path = find_module(modules_dir, name)
        if path is None:
            if f"/{name}.ko" in builtin or f"/{name.replace('_', '-')}.ko" in builtin:
                continue
            raise InitramfsError(f"kernel module {name!r} is neither in {modules_dir} nor "
                                 "built in; fix initramfs_modules in firmware/qemu/recipe.toml")
        cpio.file(f"modules/{name}.ko", module_bytes(path))
        loaded.append(name)
    cpio.file("modules.order", ("\n".join(loaded) + "\n").encode())
    out.write_bytes(gzip.compress(cpio.finish(), compresslevel=6, mtime=0))
    return loaded
