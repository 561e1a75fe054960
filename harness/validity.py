"""Is a benchmark run good enough to gate on?

A verdict computed from a run that was too short, still warming up, throttling
or disturbed by background load is a verdict about the disturbance. So a run
is VALID only when (MLPerf LoadGen style) both the minimum sample count and
the minimum duration were met, and its stability is within bounds:

* coefficient of variation (std / mean) at most max_cv;
* p99 / p50 at most max_p99_over_p50 (a heavy tail hides in the CV otherwise);
* no warm-up drift left: the first samples of a timed window are often slower
  (caches, page faults, JIT, governor ramp-up). A leading stretch that stays
  above the steady state is detected, reported and excluded from the
  statistics (the raw samples stay in the record); when it lasts longer than
  max_warmup_exclusion the run is invalid ("raise warmup_count");
* no trend across the run: a median that creeps up from the first to the last
  quarter is thermal throttling or background load, not the model;
* optionally, no throttling (allow_throttled = false).

Outliers are REPORTED (count, fraction, indices, values), never dropped: a
tail is part of the latency a user sees.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

from harness.registry import registry, setting

if TYPE_CHECKING:
    import numpy as np

MAX_REPORTED_OUTLIERS = 20


@registry.table("validity", owner="validity",
                help="When a run is good enough to gate on (docs/statistics.md). min_count "
                     "and min_duration_s default to [run]'s.")
@dataclass(frozen=True, kw_only=True)
class ValidityBounds:
    """Thresholds for a valid run; a profile's [validity] table overrides any of them."""

    min_count: int = setting(50, minimum=0, help="timed samples at least (default: [run] "
                             "min_count)")
    min_duration_s: float = setting(1.0, minimum=0, help="timed seconds at least (default: "
                                    "[run] min_duration_s)")
    max_cv: float = setting(0.25, minimum=0, help="coefficient of variation (std / mean) at "
                            "most")
    max_p99_over_p50: float = setting(3.0, minimum=0, help="p99 / p50 at most")
    drift_tolerance: float = setting(0.05, minimum=0, help="relative deviation of a leading "
                                     "block from the steady state that counts as warm-up")
    max_warmup_exclusion: float = setting(0.2, minimum=0, help="at most this fraction of the "
                                          "timed samples may be excluded as warm-up")
    max_trend: float = setting(0.10, minimum=0, help="relative change of the median between "
                               "the first and last quarter that invalidates")
    outlier_iqr_k: float = setting(3.0, minimum=0, help="Tukey fence multiplier (on log "
                                   "latency) for reporting outliers")
    allow_throttled: bool = setting(True, help="whether a throttled run may be valid (also "
                                    "settable in [sensors])")

    @classmethod
    def from_profile(cls, profile: Any) -> ValidityBounds:
        """Bounds for a loaded DeviceProfile: [run] min_count / min_duration_s, then
        the keys its [validity] table sets (checked at load; only overlaid here),
        then [sensors] allow_throttled unless [validity] sets it."""
        run = getattr(profile, "run", None)
        base = cls()
        if run is not None:
            base = replace(base, min_count=run.min_count, min_duration_s=run.min_duration_s)
        table = dict(getattr(profile, "validity", None) or {})
        sensors = getattr(profile, "sensors", None) or {}
        if "allow_throttled" in sensors and "allow_throttled" not in table:
            table["allow_throttled"] = sensors["allow_throttled"]
        return replace(base, **table)


@dataclass
class ValidityReport:
    """What assess() found. as_record() is the record's "validity" object."""

    valid: bool
    reasons: list[str]
    count: int
    duration_s: float | None
    stopped_by: str | None
    min_count_met: bool
    min_duration_met: bool
    cv: float | None
    p99_over_p50: float | None
    excluded_leading_count: int
    warmup_drift: dict[str, Any]
    trend: dict[str, Any]
    outliers: dict[str, Any]
    throttled: bool | None
    bounds: dict[str, Any]
    kept_samples_ms: list[float] = field(repr=False, default_factory=list)

    def as_record(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("kept_samples_ms")
        return d


def detect_warmup_drift(x: np.ndarray, tolerance: float) -> dict[str, Any]:
    """Find a leading stretch of blocks whose median stays away from the steady state.

    Steady state = median of the second half. Blocks of ~n/20 samples (at
    least 5); a block counts as warm-up while its median deviates by more
    than max(tolerance, 3 standard errors of a block median), so ordinary
    noise on a short block is not mistaken for drift. Returns the number of
    leading samples to exclude (0 when none).
    """
    import numpy as np  # here, not at import: loading a profile must stay light

    n = x.size
    if n < 20:
        return {"detected": False, "excluded_count": 0, "block_size": None,
                "steady_median_ms": float(np.median(x)) if n else None, "threshold": None,
                "first_block_deviation": None}
    b = max(5, n // 20)
    steady = x[n // 2:]
    ref = float(np.median(steady))
    mad = float(np.median(np.abs(steady - ref))) * 1.4826
    se_rel = 1.2533 * mad / math.sqrt(b) / ref if ref > 0 else 0.0
    threshold = max(tolerance, 3.0 * se_rel)
    excluded = 0
    first_dev = None
    for start in range(0, n // 2, b):
        block_med = float(np.median(x[start:start + b]))
        dev = block_med / ref - 1.0 if ref > 0 else 0.0
        if first_dev is None:
            first_dev = dev
        if abs(dev) > threshold:
            excluded = start + b
        else:
            break
    return {"detected": excluded > 0, "excluded_count": excluded, "block_size": b,
            "steady_median_ms": ref, "threshold": threshold,
            "first_block_deviation": first_dev}


def detect_trend(x: np.ndarray) -> dict[str, Any]:
    """Relative change of the median from the first to the last quarter of the samples."""
    import numpy as np  # here, not at import: loading a profile must stay light

    n = x.size
    if n < 8:
        return {"first_quarter_median_ms": None, "last_quarter_median_ms": None,
                "relative_change": None}
    q = n // 4
    first, last = float(np.median(x[:q])), float(np.median(x[-q:]))
    return {"first_quarter_median_ms": first, "last_quarter_median_ms": last,
            "relative_change": last / first - 1.0 if first > 0 else None}


def find_outliers(x: np.ndarray, k: float) -> dict[str, Any]:
    """Tukey fences on log latency (latency is right-skewed; the log makes fences symmetric)."""
    import numpy as np  # here, not at import: loading a profile must stay light

    if x.size < 4 or np.any(x <= 0):
        return {"method": f"tukey-{k:g}iqr-log", "count": 0, "fraction": 0.0,
                "high_fence_ms": None, "low_fence_ms": None, "indices": [], "values_ms": []}
    lx = np.log(x)
    q1, q3 = np.percentile(lx, [25, 75])
    iqr = q3 - q1
    lo, hi = q1 - k * iqr, q3 + k * iqr
    idx = np.nonzero((lx < lo) | (lx > hi))[0]
    return {"method": f"tukey-{k:g}iqr-log", "count": int(idx.size),
            "fraction": float(idx.size / x.size), "high_fence_ms": float(math.exp(hi)),
            "low_fence_ms": float(math.exp(lo)),
            "indices": [int(i) for i in idx[:MAX_REPORTED_OUTLIERS]],
            "values_ms": [float(x[i]) for i in idx[:MAX_REPORTED_OUTLIERS]]}


def assess(samples_ms: Sequence[float], bounds: ValidityBounds | None = None, *,
           duration_s: float | None = None, min_count_met: bool | None = None,
           min_duration_met: bool | None = None, stopped_by: str | None = None,
           throttled: bool | None = None) -> ValidityReport:
    """Judge one run. samples_ms are the timed samples in the order they were taken.

    duration_s / min_*_met / stopped_by come from the agent's "run" object
    when available (the agent knows its own clock); otherwise they are
    derived from the count and the bounds. Statistics for the record should
    be computed on report.kept_samples_ms (warm-up drift excluded).
    """
    import numpy as np  # here, not at import: loading a profile must stay light

    bounds = bounds or ValidityBounds()
    x = np.asarray(samples_ms, dtype=float)
    n = int(x.size)
    reasons: list[str] = []
    if min_count_met is None:
        min_count_met = n >= bounds.min_count
    if min_duration_met is None:
        min_duration_met = duration_s is not None and duration_s >= bounds.min_duration_s
    if not min_count_met:
        reasons.append(f"only {n} samples, below min_count {bounds.min_count}: raise "
                       "max_duration_s or max_count so the run can reach it")
    if not min_duration_met:
        reasons.append(f"timed window {_fmt_s(duration_s)} is below min_duration_s "
                       f"{bounds.min_duration_s:g} s: raise max_count or max_duration_s")
    if n == 0:
        return ValidityReport(False, reasons + ["no timed samples"], 0, duration_s,
                              stopped_by, bool(min_count_met), bool(min_duration_met), None,
                              None, 0, {}, {}, {}, throttled, asdict(bounds), [])
    drift = detect_warmup_drift(x, bounds.drift_tolerance)
    excluded = int(drift["excluded_count"])
    if excluded > bounds.max_warmup_exclusion * n:
        # A long "warm-up" whose steady half still moves is a trend across the
        # whole run (thermal, load), and the fix is different: say which.
        half = x[n // 2:]
        h = half.size // 2
        moving = h >= 4 and abs(float(np.median(half[h:])) / float(np.median(half[:h])) - 1.0) \
            > bounds.max_trend / 2
        if moving:
            whole = detect_trend(x)["relative_change"] or 0.0
            reasons.append(f"latency drifted {whole:+.1%} from the first to the last quarter of "
                           "the run and never settled: throttling or background load")
        else:
            reasons.append(
                f"warm-up drift lasts {excluded} of {n} samples (> "
                f"{bounds.max_warmup_exclusion:.0%}): the first samples deviate "
                f"{drift['first_block_deviation']:+.1%} from the steady state; raise "
                "warmup_count")
        drift["never_settled"] = bool(moving)
    kept = x[excluded:] if excluded < n else x
    cv = float(kept.std(ddof=1) / kept.mean()) if kept.size > 1 and kept.mean() > 0 else 0.0
    p50, p99 = (float(v) for v in np.percentile(kept, [50, 99]))
    tail = p99 / p50 if p50 > 0 else None
    if cv > bounds.max_cv:
        reasons.append(f"unstable: CV {cv:.3f} > max_cv {bounds.max_cv:g} (background load, "
                       "frequency scaling or thermal throttling; condition the device)")
    if tail is not None and tail > bounds.max_p99_over_p50:
        reasons.append(f"heavy tail: p99/p50 {tail:.2f} > max_p99_over_p50 "
                       f"{bounds.max_p99_over_p50:g}")
    trend = detect_trend(kept)
    change = trend["relative_change"]
    if change is not None and abs(change) > bounds.max_trend and \
            not any("drifted" in r for r in reasons):
        reasons.append(f"latency drifted {change:+.1%} from the first to the last quarter of "
                       f"the run (> {bounds.max_trend:.0%}): throttling or background load")
    if throttled and not bounds.allow_throttled:
        reasons.append("the device throttled during the run and allow_throttled = false: "
                       "cool it down, improve cooling or lower the load")
    outliers = find_outliers(x, bounds.outlier_iqr_k)
    return ValidityReport(
        valid=not reasons, reasons=reasons, count=n, duration_s=duration_s,
        stopped_by=stopped_by, min_count_met=bool(min_count_met),
        min_duration_met=bool(min_duration_met), cv=cv, p99_over_p50=tail,
        excluded_leading_count=excluded, warmup_drift=drift, trend=trend, outliers=outliers,
        throttled=throttled, bounds=asdict(bounds), kept_samples_ms=kept.tolist())


def assess_agent_run(agent_out: Mapping[str, Any], bounds: ValidityBounds | None = None,
                     throttled: bool | None = None) -> ValidityReport:
    """assess() fed from the on-device agent's JSON (latency_samples_ns + run)."""
    samples_ms = [ns / 1e6 for ns in agent_out.get("latency_samples_ns") or []]
    run = agent_out.get("run") or {}
    return assess(samples_ms, bounds, duration_s=run.get("duration_s"),
                  min_count_met=run.get("min_count_met"),
                  min_duration_met=run.get("min_duration_met"),
                  stopped_by=run.get("stopped_by"), throttled=throttled)


def _fmt_s(v: float | None) -> str:
    return "unknown" if v is None else f"{v:.3g} s"
