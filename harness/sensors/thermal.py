"""Thermal zones and the kernel's own throttle counters.

/sys/class/thermal/thermal_zoneN/{type,temp}: temp in millidegrees Celsius
(a few drivers report degrees; values below 200 are taken as degrees).
On x86, /sys/devices/system/cpu/cpuN/thermal_throttle/{core,package}_throttle_count
count thermal throttling events since boot: a count that grows during a run
is direct evidence the numbers were measured on a throttled CPU.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from harness.sensors.reader import SysfsReader, parse_int

THERMAL_ROOT = "/sys/class/thermal"
CPU_ROOT = "/sys/devices/system/cpu"
_ZONE = re.compile(r"^thermal_zone(\d+)$")
_CPU = re.compile(r"^cpu(\d+)$")


@dataclass(frozen=True)
class ThermalZone:
    zone: str  # "thermal_zone0"
    type: str  # "cpu-thermal", "x86_pkg_temp", ...
    temp_path: str


def parse_temp_c(raw: str | None) -> float | None:
    """Celsius from a thermal zone's temp text; None when missing or invalid."""
    v = parse_int(raw)
    if v is None:
        return None
    return v / 1000.0 if abs(v) >= 200 else float(v)


def find_zones(reader: SysfsReader) -> list[ThermalZone]:
    """Zones whose temp file reads as a number (some report EINVAL when powered down)."""
    zones = [z for z in reader.list_dir(THERMAL_ROOT) if _ZONE.match(z)]
    zones.sort(key=lambda z: int(_ZONE.match(z).group(1)))  # type: ignore[union-attr]
    paths = {z: (f"{THERMAL_ROOT}/{z}/type", f"{THERMAL_ROOT}/{z}/temp") for z in zones}
    files = reader.read_many([p for pair in paths.values() for p in pair])
    out = []
    for z, (tp, tmp) in paths.items():
        if parse_temp_c(files[tmp]) is None:
            continue
        out.append(ThermalZone(z, files[tp] or z, tmp))
    return out


def pick_zone(zones: list[ThermalZone], reader: SysfsReader,
              preferred: str | None = None) -> ThermalZone | None:
    """The zone named by the profile (type or zone name), else the hottest one now.

    The hottest zone is the one closest to a trip point, hence the one that
    decides throttling; on a Pi that is cpu-thermal, on x86 x86_pkg_temp.
    """
    if not zones:
        return None
    if preferred:
        for z in zones:
            if preferred in (z.type, z.zone):
                return z
        return None
    temps = read_temps_c(reader, zones)
    return max(zones, key=lambda z: temps.get(z.zone) if temps.get(z.zone) is not None
               else float("-inf"))


def read_temps_c(reader: SysfsReader, zones: list[ThermalZone]) -> dict[str, float | None]:
    files = reader.read_many([z.temp_path for z in zones])
    return {z.zone: parse_temp_c(files[z.temp_path]) for z in zones}


def throttle_count_paths(reader: SysfsReader) -> list[str]:
    """x86 thermal throttle event counters that exist on this machine."""
    cpus = sorted((c for c in reader.list_dir(CPU_ROOT) if _CPU.match(c)),
                  key=lambda c: int(c[3:]))
    paths = [f"{CPU_ROOT}/{c}/thermal_throttle/{n}" for c in cpus
             for n in ("core_throttle_count", "package_throttle_count")]
    files = reader.read_many(paths)  # one round trip on a remote device
    return [p for p in paths if parse_int(files.get(p)) is not None]


def read_throttle_counts(reader: SysfsReader, paths: list[str]) -> dict[str, int]:
    files = reader.read_many(paths)
    return {p: v for p in paths if (v := parse_int(files[p])) is not None}


def throttle_events_between(before: dict[str, int], after: dict[str, int]) -> int:
    """How many new throttle events the counters recorded between two snapshots."""
    return sum(max(0, after[p] - before[p]) for p in before if p in after)
