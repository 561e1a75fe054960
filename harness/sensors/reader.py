"""Reading sysfs files here or on a device, behind one small interface.

Every sensor module parses text it gets from a SysfsReader, never from open()
directly, for two reasons: the same code must read this host's /sys and a
board's /sys over SSH or ADB, and tests must be able to point it at a fake
sysfs tree built in a temporary folder (root="/tmp/xyz"): the real parsing and
arithmetic then run on files the test wrote.

Paths given to a reader are always the device's logical paths
("/sys/class/hwmon/hwmon0/name"); physical(path) is where that file really
lives (root + path) and is what the on-device agent must be asked to sample.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from harness.transports.base import Transport

# ASCII record / unit separators frame each file in a batched read: they never
# occur in sysfs text.
_RS, _US = "\x1e", "\x1f"


@runtime_checkable
class SysfsReader(Protocol):
    """Read-only view of a device's sysfs/procfs."""

    root: str

    def read_text(self, path: str) -> str | None:
        """File content stripped of surrounding whitespace; None when missing/unreadable."""

    def list_dir(self, path: str) -> list[str]:
        """Sorted entry names of a directory; [] when it does not exist."""

    def read_many(self, paths: Iterable[str]) -> dict[str, str | None]:
        """read_text for several files at once (one round trip on a remote device)."""

    def physical(self, path: str) -> str:
        """Where the logical path lives on the device (root applied)."""


def _join(root: str, path: str) -> str:
    if not path.startswith("/"):
        raise ValueError(f"sysfs path {path!r} must be absolute")
    if root in ("", "/"):
        return path
    return posixpath.join(root.rstrip("/"), path.lstrip("/"))


class LocalSysfs:
    """This host's files, optionally under a fake root (tests)."""

    def __init__(self, root: str | Path = "/") -> None:
        self.root = str(root)

    def physical(self, path: str) -> str:
        return _join(self.root, path)

    def read_text(self, path: str) -> str | None:
        try:
            with open(self.physical(path), encoding="utf-8", errors="replace") as f:
                return f.read().strip()
        except OSError:  # missing, EACCES (RAPL is root-only on many kernels), EIO
            return None

    def list_dir(self, path: str) -> list[str]:
        try:
            return sorted(os.listdir(self.physical(path)))
        except OSError:
            return []

    def read_many(self, paths: Iterable[str]) -> dict[str, str | None]:
        return {p: self.read_text(p) for p in paths}


class TransportSysfs:
    """A device's files read through its Transport (ssh, adb, local, qemu).

    Each call is one command on the device; read_many batches any number of
    files into a single `sh -c` so an idle-power loop or a snapshot of forty
    files costs one round trip, not forty. Paths travel as positional
    arguments, never inside the script text.
    """

    _BATCH_SCRIPT = (
        'for f in "$@"; do printf \'\\036%s\\037\' "$f"; '
        'if cat -- "$f" 2>/dev/null; then :; else printf \'\\035\'; fi; done'
    )

    def __init__(self, transport: Transport, root: str = "/", timeout_s: float = 30.0) -> None:
        self.transport = transport
        self.root = root
        self.timeout_s = timeout_s

    def physical(self, path: str) -> str:
        return _join(self.root, path)

    def read_text(self, path: str) -> str | None:
        res = self.transport.run(["cat", "--", self.physical(path)], timeout_s=self.timeout_s)
        return res.stdout.strip() if res.ok else None

    def list_dir(self, path: str) -> list[str]:
        res = self.transport.run(["ls", "-1", "--", self.physical(path)],
                                 timeout_s=self.timeout_s)
        if not res.ok:
            return []
        return sorted(line.strip() for line in res.stdout.splitlines() if line.strip())

    def read_many(self, paths: Iterable[str]) -> dict[str, str | None]:
        logical = list(paths)
        if not logical:
            return {}
        phys = [self.physical(p) for p in logical]
        res = self.transport.run(["sh", "-c", self._BATCH_SCRIPT, "sh", *phys],
                                 timeout_s=self.timeout_s)
        return parse_batch(res.stdout, logical, phys)


def parse_batch(stdout: str, logical: list[str], physical: list[str]) -> dict[str, str | None]:
    """Split the framed output of TransportSysfs's batch script back into files."""
    by_phys: dict[str, str | None] = {}
    for chunk in stdout.split(_RS)[1:]:
        name, sep, body = chunk.partition(_US)
        if not sep:
            continue
        by_phys[name] = None if body.endswith("\x1d") else body.strip()
    return {lp: by_phys.get(pp) for lp, pp in zip(logical, physical, strict=True)}


def parse_int(raw: str | None) -> int | None:
    """Integer sysfs value or None (missing file, empty, garbage such as 'N/A')."""
    if raw is None:
        return None
    try:
        return int(raw.split()[0]) if raw.split() else None
    except ValueError:
        return None
