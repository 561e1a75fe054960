"""Raspberry Pi firmware throttling state: `vcgencmd get_throttled`.

The answer is "throttled=0x50005": low bits say what is happening NOW, bits
16-19 what has happened SINCE BOOT. Since-boot bits cannot be cleared, so
"throttled during this run" is: a now-bit set before or after the run, or a
since-boot bit that was clear before and is set after. When a since-boot bit
was already set before the run the answer for that kind is unknowable from
these bits alone, and is reported as such.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from harness.errors import TransportError

if TYPE_CHECKING:
    from harness.transports.base import Transport

BITS: dict[int, str] = {
    0: "under_voltage_now",
    1: "freq_capped_now",
    2: "throttled_now",
    3: "soft_temp_limit_now",
    16: "under_voltage_occurred",
    17: "freq_capped_occurred",
    18: "throttled_occurred",
    19: "soft_temp_limit_occurred",
}
_KINDS = ("under_voltage", "freq_capped", "throttled", "soft_temp_limit")
_RE = re.compile(r"throttled\s*=\s*(0x[0-9a-fA-F]+|\d+)")


def parse_throttled(text: str) -> int | None:
    """The integer in "throttled=0x50005"; None when the text is something else."""
    m = _RE.search(text or "")
    if not m:
        return None
    return int(m.group(1), 0)


def decode(value: int) -> dict[str, bool]:
    """Named flags of a get_throttled value."""
    return {name: bool(value >> bit & 1) for bit, name in BITS.items()}


def read_throttled(transport: Transport) -> int | None:
    """Run vcgencmd on the device; None when it is not a Pi (no vcgencmd) or it fails."""
    try:
        res = transport.run(["vcgencmd", "get_throttled"], timeout_s=15)
    except TransportError:  # timeout or dropped link: no reading, recorded as null
        return None
    return parse_throttled(res.stdout) if res.ok else None


def throttled_during(before: int | None, after: int | None) -> dict[str, Any]:
    """Did throttling of any kind happen between two readings?

    Returns {"throttled": True | False | None, "kinds": [...], "unknown_kinds": [...],
    "before": hex, "after": hex, "flags_after": {...}}; throttled is None when no
    reading was possible, or when no new event is visible but a since-boot bit
    was already set before the run (a repeat would be invisible).
    """
    if before is None or after is None:
        return {"throttled": None, "kinds": [], "unknown_kinds": [],
                "before": _hex(before), "after": _hex(after),
                "flags_after": decode(after) if after is not None else None}
    kinds, unknown = [], []
    for i, kind in enumerate(_KINDS):
        now_bit, boot_bit = 1 << i, 1 << (16 + i)
        if (before | after) & now_bit or (after & boot_bit and not before & boot_bit):
            kinds.append(kind)
        elif before & boot_bit:
            unknown.append(kind)
    throttled: bool | None = True if kinds else (None if unknown else False)
    return {"throttled": throttled, "kinds": kinds, "unknown_kinds": unknown,
            "before": _hex(before), "after": _hex(after), "flags_after": decode(after)}


def _hex(v: int | None) -> str | None:
    return None if v is None else hex(v)
