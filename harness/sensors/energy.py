"""Energy per inference from power samples taken on the device during the timed window.

energy_per_inference = (mean power over the window - idle power) × window / inferences

* The idle baseline is measured right before the run, on the same sensor, so
  the figure is what the inference costs, not what the board costs standing
  still (a Pi 4 idles at ~2.7 W; one inference may add a few hundred mJ).
* Power monitors (hwmon INA2xx) give instantaneous power: integrated with the
  trapezoid rule. Energy counters (RAPL) give cumulative energy: differences
  of successive readings, each corrected for wrap-around.
* Every figure says which sensor produced it, its resolution and the sampling
  rate actually achieved; with no sensor the fields are null and status says
  why. Nothing is ever estimated from TDPs or datasheets.
* The interval comes from batch means: the window's power series is cut into
  10 consecutive blocks whose means are nearly independent even though
  neighbouring samples are not (a naive std/sqrt(n) would be far too narrow).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.sensors.hwmon_power import (
    SUPPORTED_CHIPS,
    HwmonPowerSensor,
    find_hwmon_power,
    power_mw_from_raw,
)
from harness.sensors.rapl import RaplDomain, counter_delta_uj, find_rapl_domains
from harness.sensors.reader import SysfsReader, parse_int

POWER_KINDS = ("auto", "hwmon", "rapl", "none")
BATCHES = 10


@dataclass(frozen=True)
class EnergyPlan:
    """Which energy sensor a run uses and the files to sample (physical paths)."""

    kind: str | None  # "hwmon" | "rapl" | None
    sensor: str | None
    sample_paths: tuple[str, ...] = ()
    hwmon: HwmonPowerSensor | None = None
    rapl: tuple[RaplDomain, ...] = ()
    reason: str = ""
    reader_paths: Mapping[str, str] = field(default_factory=dict)  # physical -> logical

    @property
    def available(self) -> bool:
        return self.kind is not None


def plan_energy(config: Mapping[str, Any], reader: SysfsReader) -> EnergyPlan:
    """Pick the energy sensor from the profile's [sensors] table and what the device has.

    power = "auto" (default): an INA2xx hwmon monitor if one exists, else RAPL,
    else none. "hwmon" / "rapl" insist on that kind (null + reason when
    absent); "none" records no energy on purpose. hwmon_chip, hwmon_label and
    hwmon_index choose among several monitors.
    """
    kind = str(config.get("power", "auto"))
    if kind == "none":
        return EnergyPlan(None, None, reason="the profile disables energy ([sensors] power = "
                                             "\"none\")")
    if kind not in POWER_KINDS:
        return EnergyPlan(None, None, reason=f"[sensors] power = {kind!r} is not a sysfs sensor "
                                             f"this module reads ({', '.join(POWER_KINDS)})")
    reasons = []
    if kind in ("auto", "hwmon"):
        chip = config.get("hwmon_chip")
        chips = (str(chip),) if chip else SUPPORTED_CHIPS
        found = find_hwmon_power(reader, chips, config.get("hwmon_label"))
        index = int(config.get("hwmon_index", 0))
        if len(found) > index:
            s = found[index]
            logical = s.sample_paths()
            phys = tuple(reader.physical(p) for p in logical)
            return EnergyPlan("hwmon", s.description, phys, hwmon=s,
                              reason=f"{len(found)} matching hwmon monitor(s), using #{index}",
                              reader_paths=dict(zip(phys, logical, strict=True)))
        reasons.append(f"no hwmon power monitor named {'/'.join(chips)} "
                       f"(#{index}) under /sys/class/hwmon (is the ina2xx driver/overlay "
                       "loaded?)")
    if kind in ("auto", "rapl"):
        domains = find_rapl_domains(reader)
        if domains:
            logical = [d.energy_path for d in domains]
            phys = tuple(reader.physical(p) for p in logical)
            return EnergyPlan("rapl", "+".join(d.description for d in domains), phys,
                              rapl=tuple(domains),
                              reason=f"{len(domains)} RAPL package domain(s)",
                              reader_paths=dict(zip(phys, logical, strict=True)))
        reasons.append("no readable RAPL counter under /sys/class/powercap (energy_uj is "
                       "root-only on most kernels: run the agent as root or chmod it)")
    return EnergyPlan(None, None, reason="; ".join(reasons))


# -- power series -------------------------------------------------------------

@dataclass(frozen=True)
class PowerSeries:
    """Interval powers: between t_ns[i] and t_ns[i+1] the mean power was p_mw[i]."""

    t_ns: list[int]
    p_mw: list[float]

    @property
    def span_s(self) -> float:
        return (self.t_ns[-1] - self.t_ns[0]) / 1e9 if len(self.t_ns) > 1 else 0.0

    def mean_mw(self) -> float | None:
        if self.span_s <= 0:
            return None
        total = sum(p * (b - a) for p, a, b in zip(self.p_mw, self.t_ns, self.t_ns[1:],
                                                   strict=False))
        return total / (self.t_ns[-1] - self.t_ns[0])

    def batch_se_mw(self, batches: int = BATCHES) -> tuple[float | None, int]:
        """Standard error of the mean power by batch means; (None, 0) with too few intervals."""
        n = len(self.p_mw)
        k = min(batches, n // 2)
        if k < 3:
            return None, 0
        means = []
        for j in range(k):
            lo, hi = j * n // k, (j + 1) * n // k
            w = [self.t_ns[i + 1] - self.t_ns[i] for i in range(lo, hi)]
            means.append(sum(p * wi for p, wi in zip(self.p_mw[lo:hi], w, strict=True)) / sum(w))
        mu = sum(means) / k
        var = sum((m - mu) ** 2 for m in means) / (k - 1)
        return math.sqrt(var / k), k


def hwmon_series(points: Sequence[tuple[int, float]]) -> PowerSeries:
    """Trapezoid: the mean power between two instantaneous readings is their average."""
    pts = sorted(points)
    return PowerSeries([t for t, _ in pts], [(a + b) / 2 for (_, a), (_, b) in
                                             zip(pts, pts[1:], strict=False)])


def counter_series(points: Sequence[tuple[int, int]], max_range_uj: int | None) -> PowerSeries:
    """Mean power between successive counter readings (µJ / ns × 1e6 = mW), wrap-corrected.

    Readings whose counter did not change since the previous one are merged:
    RAPL updates about every millisecond but some firmware only every 50+ ms,
    and a zero followed by a double step is one interval, not two.
    """
    pts = sorted(points)
    if not pts:
        return PowerSeries([], [])
    t_out, p_out = [pts[0][0]], []
    last_t, last_v = pts[0]
    for t, v in pts[1:]:
        if v == last_v or t <= last_t:
            continue
        de = counter_delta_uj(last_v, v, max_range_uj)
        p_out.append(de / (t - last_t) * 1e6)
        t_out.append(t)
        last_t, last_v = t, v
    return PowerSeries(t_out, p_out)


def _in_window(points: list, window_ns: Sequence[int] | None) -> list:
    """Readings taken inside the timed window (all of them when there is no window).

    Readings outside it (the sampler starting early, the agent tearing down)
    measure something else and are dropped, even if that leaves too few.
    """
    if not window_ns:
        return points
    a, b = window_ns
    return [p for p in points if a <= p[0] <= b]


def series_from_samples(plan: EnergyPlan, sysfs_samples: Mapping[str, Sequence],
                        window_ns: Sequence[int] | None = None) -> list[PowerSeries]:
    """Turn the agent's raw {path: [[t_ns, text], ...]} into one PowerSeries per source."""
    out: list[PowerSeries] = []
    if plan.kind == "hwmon" and plan.hwmon is not None:
        paths = list(plan.sample_paths)
        if len(paths) == 1:
            pts = [(int(t), p) for t, raw in sysfs_samples.get(paths[0], [])
                   if (p := power_mw_from_raw(power_raw=raw)) is not None]
        else:  # curr + volt sampled in the same loop iteration: pair by index
            cur, volt = sysfs_samples.get(paths[0], []), sysfs_samples.get(paths[1], [])
            pts = [(int(tc), p) for (tc, rc), (_, rv) in zip(cur, volt, strict=False)
                   if (p := power_mw_from_raw(curr_raw=rc, volt_raw=rv)) is not None]
        out.append(hwmon_series(_in_window(pts, window_ns)))
    elif plan.kind == "rapl":
        for phys, dom in zip(plan.sample_paths, plan.rapl, strict=True):
            pts = [(int(t), v) for t, raw in sysfs_samples.get(phys, [])
                   if (v := parse_int(raw)) is not None]
            out.append(counter_series(_in_window(pts, window_ns), dom.max_range_uj))
    return out


def _combine(series: list[PowerSeries]) -> tuple[float | None, float | None, int, float]:
    """Sum of mean powers (RAPL packages add up), its SE, interval count, mean span."""
    means = [s.mean_mw() for s in series]
    if not series or any(m is None for m in means):
        return None, None, 0, 0.0
    ses = [s.batch_se_mw() for s in series]
    se = math.sqrt(sum(e * e for e, _ in ses)) if all(e is not None for e, _ in ses) else None
    n = min(len(s.p_mw) for s in series)
    return sum(means), se, n, sum(s.span_s for s in series) / len(series)  # type: ignore[arg-type]


# -- idle baseline ------------------------------------------------------------

@dataclass(frozen=True)
class IdleBaseline:
    power_mw: float | None
    se_mw: float | None
    duration_s: float
    samples: int
    reason: str = ""


def measure_idle(reader: SysfsReader, plan: EnergyPlan, duration_s: float = 2.0,
                 interval_s: float = 0.1, clock: Callable[[], int] = time.monotonic_ns,
                 sleep: Callable[[float], None] = time.sleep) -> IdleBaseline:
    """Sample the plan's sensor from the host while the device is idle.

    Each reading is timestamped at the midpoint of its round trip (the
    transport's latency is then symmetric noise, not a bias). Must run right
    before the agent starts: idle power drifts with temperature.
    """
    if not plan.available:
        return IdleBaseline(None, None, 0.0, 0, plan.reason)
    logical = [plan.reader_paths[p] for p in plan.sample_paths]
    raw: dict[str, list[list]] = {p: [] for p in plan.sample_paths}
    t_start = clock()
    while True:
        a = clock()
        files = reader.read_many(logical)
        b = clock()
        for phys, log in zip(plan.sample_paths, logical, strict=True):
            raw[phys].append([(a + b) // 2, files.get(log)])
        if (b - t_start) / 1e9 >= duration_s:
            break
        sleep(interval_s)
    series = series_from_samples(plan, raw)  # unreadable (None) readings are skipped there
    mean, se, n, span = _combine(series)
    if mean is None:
        return IdleBaseline(None, None, span, n, "the sensor gave fewer than 2 readings "
                                                 "while idle")
    return IdleBaseline(mean, se, span, n)


# -- the record's "energy" object ---------------------------------------------

def empty_energy(status: str, note: str, sensor: str | None = None) -> dict[str, Any]:
    """The energy object when nothing was measured: every figure null, status says why."""
    return {"energy_per_inference_mj": None, "energy_per_inference_ci_mj": None,
            "gross_energy_per_inference_mj": None, "energy_window_mj": None,
            "active_power_mw": None, "idle_power_mw": None, "idle_duration_s": None,
            "window_s": None, "inferences": None, "sensor": sensor, "sensor_kind": None,
            "power_resolution_mw": None, "energy_resolution_mj": None,
            "resolution_source": None, "sampling_hz": None, "sample_count": 0,
            "status": status, "note": note}


def _observed_quantum(values: Sequence[float]) -> float | None:
    u = sorted(set(values))
    diffs = [b - a for a, b in zip(u, u[1:], strict=False) if b - a > 1e-12]
    return min(diffs) if diffs else None


def energy_from_samples(plan: EnergyPlan, sysfs_samples: Mapping[str, Sequence],
                        window_ns: Sequence[int] | None, inferences: int,
                        idle: IdleBaseline | None, confidence: float = 0.95) -> dict[str, Any]:
    """The record's "energy" object from the agent's samples and the idle baseline.

    window_ns is the agent's window_monotonic_ns [start, end]; inferences is
    the number of timed inferences in it (run.count).
    """
    if not plan.available:
        return empty_energy("no_sensor", plan.reason)
    if inferences < 1 or not window_ns or window_ns[1] <= window_ns[0]:
        return empty_energy("insufficient_samples", "no timed window or no inferences",
                            plan.sensor)
    series = series_from_samples(plan, sysfs_samples, window_ns)
    active, se_a, n, span = _combine(series)
    if active is None:
        return empty_energy("insufficient_samples",
                            f"fewer than 2 usable readings of {plan.sensor} in the window: lower "
                            "--sample-interval-ms or lengthen min_duration_s", plan.sensor)
    window_s = (window_ns[1] - window_ns[0]) / 1e9
    out = empty_energy("measured", plan.reason, plan.sensor)
    out.update({
        "sensor_kind": plan.kind, "active_power_mw": active, "window_s": window_s,
        "inferences": inferences, "energy_window_mj": active * window_s,
        "gross_energy_per_inference_mj": active * window_s / inferences,
        "sampling_hz": n / span if span > 0 else None, "sample_count": n + 1,
    })
    if plan.kind == "hwmon":
        raw_vals = [p for s in series for p in s.p_mw]
        paths = list(plan.sample_paths)
        if len(paths) == 1:
            raw_vals = [v for _, r in sysfs_samples.get(paths[0], [])
                        if (v := power_mw_from_raw(power_raw=r)) is not None]
        out["power_resolution_mw"] = _observed_quantum(raw_vals)
        out["resolution_source"] = "smallest step between distinct readings"
        if plan.hwmon and plan.hwmon.update_interval_ms:
            out["note"] += f"; sensor update_interval {plan.hwmon.update_interval_ms} ms"
    else:
        out["energy_resolution_mj"] = 0.001
        out["resolution_source"] = "energy_uj counter unit (1 µJ)"
    if idle is None or idle.power_mw is None:
        out["status"] = "no_idle_baseline"
        out["note"] = ("gross energy only: no idle baseline"
                       + (f" ({idle.reason})" if idle and idle.reason else ""))
        return out
    net = active - idle.power_mw
    out["idle_power_mw"] = idle.power_mw
    out["idle_duration_s"] = idle.duration_s
    out["energy_per_inference_mj"] = net * window_s / inferences
    if se_a is not None and idle.se_mw is not None:
        se = math.sqrt(se_a**2 + idle.se_mw**2)
        from harness.stats import t_quantile  # numpy: only when energy is computed

        t = t_quantile(1 - (1 - confidence) / 2, BATCHES - 1)
        out["energy_per_inference_ci_mj"] = [(net - t * se) * window_s / inferences,
                                             (net + t * se) * window_s / inferences]
    if net < 0:
        out["note"] += ("; active power is below the idle baseline: the inference's energy is "
                        "within the sensor's noise")
    return out
