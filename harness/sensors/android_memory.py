"""Android memory readings: /proc/PID/status and `dumpsys meminfo PID`.

Both report kibibytes ("kB" in /proc, "Kilobytes" in dumpsys); every field
name here carries its unit (``_kb``) so nobody has to guess. Parsers raise
AndroidParseError naming the command whose output was not understood, so a
device that prints something unexpected fails the sensor, not the harness.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from harness.errors import HarnessError


class AndroidParseError(HarnessError):
    """A device command printed something the parser does not understand."""

    def __init__(self, command: str, problem: str, text: str) -> None:
        tail = text.strip()[-300:]
        super().__init__(f"cannot parse the output of `{command}`: {problem}. Output tail: "
                         f"{tail!r}. The device's format may differ from the recorded Pixel 6 "
                         "samples (tests/data/android); report it with the full output")
        self.command = command


_STATUS_RE = re.compile(r"^(Vm\w+|Rss\w+):\s+(\d+)\s+kB\s*$", re.M)


def parse_proc_status(text: str, command: str = "cat /proc/PID/status") -> dict[str, int]:
    """VmHWM/VmRSS/... in kB, keyed like ``vm_hwm_kb``."""
    found = {_snake(k) + "_kb": int(v) for k, v in _STATUS_RE.findall(text)}
    if "vm_hwm_kb" not in found:
        raise AndroidParseError(command, "no 'VmHWM: N kB' line", text)
    return found


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z])(?=[A-Z])", "_", name).lower()


@dataclass(frozen=True)
class MeminfoReading:
    """The App Summary totals of `dumpsys meminfo PID` (all kB)."""

    pid: int | None
    process: str | None
    total_pss_kb: int
    total_rss_kb: int | None
    total_swap_pss_kb: int | None
    native_heap_pss_kb: int | None
    java_heap_pss_kb: int | None
    graphics_pss_kb: int | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


_HEAD_RE = re.compile(r"\*\* MEMINFO in pid (\d+) \[([^\]]*)\] \*\*")
_TOTALS_RE = re.compile(r"TOTAL PSS:\s+(\d+)(?:\s+TOTAL RSS:\s+(\d+))?"
                        r"(?:\s+TOTAL SWAP(?: PSS)?(?: \(KB\))?:\s+(\d+))?")


def _summary_value(text: str, label: str) -> int | None:
    m = re.search(rf"^\s*{re.escape(label)}:\s+(\d+)", text, re.M)
    return int(m.group(1)) if m else None


def parse_dumpsys_meminfo(text: str, command: str = "dumpsys meminfo") -> MeminfoReading:
    if re.search(r"^No process found for:", text, re.M):
        raise AndroidParseError(command, "the process is gone (No process found)", text)
    if "Applications Memory Usage (in Kilobytes)" not in text and "MEMINFO in pid" not in text:
        raise AndroidParseError(command, "not a meminfo report (no 'Applications Memory Usage "
                                "(in Kilobytes)' header)", text)
    totals = _TOTALS_RE.search(text)
    if not totals:
        raise AndroidParseError(command, "no 'TOTAL PSS:' line in the App Summary", text)
    head = _HEAD_RE.search(text)
    return MeminfoReading(
        pid=int(head.group(1)) if head else None,
        process=head.group(2) if head else None,
        total_pss_kb=int(totals.group(1)),
        total_rss_kb=int(totals.group(2)) if totals.group(2) else None,
        total_swap_pss_kb=int(totals.group(3)) if totals.group(3) else None,
        native_heap_pss_kb=_summary_value(text, "Native Heap"),
        java_heap_pss_kb=_summary_value(text, "Java Heap"),
        graphics_pss_kb=_summary_value(text, "Graphics"),
    )
