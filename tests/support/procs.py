"""This host's processes, read from /proc: for tests that must show what is left
running. One reader, so every such check sees processes the same way (zombies
are not "running"; a process gone between listing and reading is skipped)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    name: str  # the kernel's comm, e.g. "sshd"
    state: str  # R, S, D, Z, ...
    uid: int
    argv: tuple[str, ...]


def processes() -> Iterator[Proc]:
    """Every live (non-zombie) process of this host."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            raw = (entry / "cmdline").read_bytes()
            uid = entry.stat().st_uid
        except OSError:
            continue
        head, _, rest = stat.rpartition(")")
        fields = rest.split()
        if len(fields) < 2 or fields[0] == "Z":
            continue
        argv = tuple(a.decode(errors="replace") for a in raw.split(b"\0") if a)
        yield Proc(int(entry.name), int(fields[1]), head.partition("(")[2], fields[0], uid,
                   argv)


def descendants(root: int, keep=lambda p: True) -> list[int]:
    """PIDs below root whose whole chain from root passes keep (e.g. only sshd)."""
    children: dict[int, list[Proc]] = {}
    for p in processes():
        children.setdefault(p.ppid, []).append(p)
    found, todo = [], list(children.get(root, []))
    while todo:
        p = todo.pop()
        if keep(p):
            found.append(p.pid)
            todo += children.get(p.pid, [])
    return found
