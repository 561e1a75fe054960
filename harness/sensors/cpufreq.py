"""CPU frequency governor and clocks, read for the fingerprint and set for conditioning.

/sys/devices/system/cpu/cpuN/cpufreq/: scaling_governor, scaling_cur_freq
(kHz), cpuinfo_max_freq / scaling_max_freq (kHz). A benchmark under the
"powersave" or "ondemand" governor measures the governor's ramp-up as much as
the model, so the profile may ask for "performance"; setting it needs root,
and where that is not permitted the run goes on and the record says so.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from harness.sensors.reader import SysfsReader, parse_int

if TYPE_CHECKING:
    from harness.transports.base import Transport

CPU_ROOT = "/sys/devices/system/cpu"
_CPU = re.compile(r"^cpu(\d+)$")
_GOVERNOR = re.compile(r"^[a-z_]+$")


def list_cpus(reader: SysfsReader) -> list[str]:
    cpus = [c for c in reader.list_dir(CPU_ROOT) if _CPU.match(c)]
    return sorted(cpus, key=lambda c: int(c[3:]))


@dataclass
class CpuFreqState:
    """Per-CPU governor and clocks (kHz); empty dicts when cpufreq is absent (VMs, containers)."""

    governors: dict[str, str] = field(default_factory=dict)
    cur_khz: dict[str, int] = field(default_factory=dict)
    max_khz: dict[str, int] = field(default_factory=dict)
    scaling_max_khz: dict[str, int] = field(default_factory=dict)

    @property
    def governor(self) -> str | None:
        """The governor when all CPUs agree, "mixed(a,b)" when not, None without cpufreq."""
        kinds = sorted(set(self.governors.values()))
        if not kinds:
            return None
        return kinds[0] if len(kinds) == 1 else f"mixed({','.join(kinds)})"

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["governor"] = self.governor
        return d


def cur_freq_paths(reader: SysfsReader) -> list[str]:
    """scaling_cur_freq files worth sampling during a run (clock drops = throttling/capping)."""
    paths = [f"{CPU_ROOT}/{c}/cpufreq/scaling_cur_freq" for c in list_cpus(reader)]
    files = reader.read_many(paths)  # one round trip on a remote device
    return [p for p in paths if files.get(p) is not None]


def read_cpufreq(reader: SysfsReader) -> CpuFreqState:
    cpus = list_cpus(reader)
    names = ("scaling_governor", "scaling_cur_freq", "cpuinfo_max_freq", "scaling_max_freq")
    files = reader.read_many([f"{CPU_ROOT}/{c}/cpufreq/{n}" for c in cpus for n in names])
    st = CpuFreqState()
    for c in cpus:
        base = f"{CPU_ROOT}/{c}/cpufreq"
        gov = files[f"{base}/scaling_governor"]
        if gov:
            st.governors[c] = gov
        for key, attr in (("scaling_cur_freq", st.cur_khz), ("cpuinfo_max_freq", st.max_khz),
                          ("scaling_max_freq", st.scaling_max_khz)):
            v = parse_int(files[f"{base}/{key}"])
            if v is not None:
                attr[c] = v
    return st


def freq_summary_from_samples(sysfs_samples: Mapping[str, list], paths: list[str],
                              max_khz: Mapping[str, int]) -> dict[str, Any]:
    """Min / mean sampled clock per CPU and whether any fell below 90 % of its max.

    paths are physical sample paths ending in cpuN/cpufreq/scaling_cur_freq.
    Under a performance governor a clock below max means capping or
    throttling; under ondemand it may just be idle cores, so this is
    evidence for the record, not by itself a verdict.
    """
    out: dict[str, Any] = {"per_cpu": {}, "below_90pct_of_max": False}
    for p in paths:
        m = re.search(r"/(cpu\d+)/cpufreq/scaling_cur_freq$", p)
        vals = [v for _, raw in sysfs_samples.get(p, []) if (v := parse_int(raw)) is not None]
        if not m or not vals:
            continue
        cpu = m.group(1)
        entry = {"min_khz": min(vals), "mean_khz": sum(vals) / len(vals), "samples": len(vals)}
        mx = max_khz.get(cpu)
        if mx:
            entry["min_fraction_of_max"] = min(vals) / mx
            if min(vals) < 0.9 * mx:
                out["below_90pct_of_max"] = True
        out["per_cpu"][cpu] = entry
    return out


@dataclass(frozen=True)
class GovernorChange:
    requested: str
    applied: bool
    previous: dict[str, str]
    error: str | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def set_governor(transport: Transport, reader: SysfsReader, governor: str) -> GovernorChange:
    """Write governor to every CPU's scaling_governor where permitted.

    Never raises for a refusal (non-root, no cpufreq, governor not offered):
    conditioning is best effort and the result says what happened, so the
    fingerprint records the governor the run really had.
    """
    if not _GOVERNOR.match(governor):
        raise ValueError(f"governor {governor!r} is not a valid governor name")
    state = read_cpufreq(reader)
    if not state.governors:
        return GovernorChange(governor, False, {}, "no cpufreq on this device")
    paths = [reader.physical(f"{CPU_ROOT}/{c}/cpufreq/scaling_governor")
             for c in state.governors]
    script = 'g=$1; shift; for f in "$@"; do printf %s "$g" > "$f" || exit 1; done'
    res = transport.run(["sh", "-c", script, "sh", governor, *paths], timeout_s=30)
    after = read_cpufreq(reader)
    applied = res.ok and all(g == governor for g in after.governors.values())
    err = None if applied else (res.stderr.strip() or
                                f"governor still {after.governor} after writing {governor}")
    return GovernorChange(governor, applied, state.governors, err)


def restore_governors(transport: Transport, reader: SysfsReader,
                      previous: Mapping[str, str]) -> None:
    """Put back what set_governor found (best effort, same quoting rules)."""
    for cpu, gov in previous.items():
        if not _GOVERNOR.match(gov):
            continue
        path = reader.physical(f"{CPU_ROOT}/{cpu}/cpufreq/scaling_governor")
        transport.run(["sh", "-c", 'printf %s "$1" > "$2"', "sh", gov, path], timeout_s=30)
