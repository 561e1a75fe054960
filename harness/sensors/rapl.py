"""Intel/AMD RAPL energy counters through the powercap interface (x86 hosts such as `local`).

/sys/class/powercap/intel-rapl:N/energy_uj is a cumulative counter in µJ per
package that wraps at max_energy_range_uj (about 262 kJ: minutes at full
load), so every delta is taken modulo that range. Sub-domains
(intel-rapl:N:M = core, uncore, dram) are inside the package figure and are
not added again. Since the PLATYPUS fix (2020) energy_uj is readable by root
only on most distributions: an unreadable counter means "no sensor", and the
record says so.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from harness.sensors.reader import SysfsReader, parse_int

POWERCAP_ROOT = "/sys/class/powercap"
_PACKAGE = re.compile(r"^intel-rapl:(\d+)$")


@dataclass(frozen=True)
class RaplDomain:
    """One package-level RAPL domain."""

    name: str  # e.g. "package-0"
    zone: str  # e.g. "intel-rapl:0"
    energy_path: str
    max_range_uj: int | None

    @property
    def description(self) -> str:
        return f"rapl:{self.name}"


def find_rapl_domains(reader: SysfsReader) -> list[RaplDomain]:
    """Readable top-level RAPL domains (energy_uj parses as an integer)."""
    out: list[RaplDomain] = []
    zones = [e for e in reader.list_dir(POWERCAP_ROOT) if _PACKAGE.match(e)]
    zones.sort(key=lambda z: int(_PACKAGE.match(z).group(1)))  # type: ignore[union-attr]
    for zone in zones:
        base = f"{POWERCAP_ROOT}/{zone}"
        files = reader.read_many([f"{base}/name", f"{base}/energy_uj",
                                  f"{base}/max_energy_range_uj"])
        if parse_int(files[f"{base}/energy_uj"]) is None:
            continue
        out.append(RaplDomain(files[f"{base}/name"] or zone, zone, f"{base}/energy_uj",
                              parse_int(files[f"{base}/max_energy_range_uj"])))
    return out


def counter_delta_uj(start: int, end: int, max_range_uj: int | None) -> int:
    """end - start for a counter that wraps to 0 after max_range_uj.

    The counter runs from 0 up to max_range_uj and starts again at 0 (the
    convention of the kernel's powercap docs and of turbostat/Scaphandre).
    A decrease means exactly one wrap (callers sample often enough that two
    wraps between readings cannot happen: at 100 W that is 43 minutes).
    Without a known range a decrease cannot be interpreted: ValueError.
    """
    if end >= start:
        return end - start
    if not max_range_uj:
        raise ValueError(f"RAPL counter went backwards ({start} -> {end} µJ) and "
                         "max_energy_range_uj is unknown: cannot correct the wrap-around")
    return end + max_range_uj - start


def energy_uj_from_series(values: Sequence[int], max_range_uj: int | None) -> int:
    """Total energy over successive counter readings, each step wrap-corrected."""
    total = 0
    for a, b in zip(values, values[1:], strict=False):
        total += counter_delta_uj(a, b, max_range_uj)
    return total
