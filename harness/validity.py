"""Is a benchmark run good enough to gate on, and was the device stable during it?

Two questions with two consequences:

VALID (else the verdict is inconclusive, exit 2): the run met LoadGen's
minimums (sample count AND duration), its warm-up did not eat more than
max_warmup_exclusion of the timed samples, and it did not throttle when the
profile forbids that.

STABLE (always reported; an unstable run passes a timing budget only with
budgets.UNSTABLE_MARGIN of room, else inconclusive): judged on robust
statistics, because a tail is part of a device's latency, not instability:

* spread: the MAD of log latency (x 1.4826, a robust sigma, ~ the CV of the
  body) at most max_spread — a 2 % slow path does not move it, a contended
  device does; the CV and p99/p50 are reported, not gated (a heavy tail made
  them a coin flip, and more data made a stable device more certainly
  "invalid");
* drift: a step (best split) or a trend (resistant line) in log latency is
  flagged only when it exceeds BOTH the floor max_trend and change_sigmas
  standard errors, the errors allowing for autocorrelation — a noise
  allowance the old quarter-median rule did not have;
* background load: CPU time other processes took during the timed window
  (the agent reads /proc/stat), at most max_background_cpu_cores.

Warm-up: only leading blocks SLOWER than the steady state are warm-up (a
mid-run throttle step makes the later samples slower, not the first ones);
they are excluded from the statistics and reported. Outliers are REPORTED
(count, fraction, indices, values), never dropped.
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
#: a step's split point is searched for, so its z must clear change_sigmas x this
STEP_SEARCH_FACTOR = 1.2


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
    max_spread: float = setting(0.10, minimum=0, help="robust spread (1.4826 x MAD of log "
                                "latency) at most, for a stable run")
    max_trend: float = setting(0.10, minimum=0, help="relative step or trend in latency across "
                               "the run that makes it unstable (when also beyond change_sigmas "
                               "standard errors)")
    change_sigmas: float = setting(3.0, minimum=0, help="standard errors a step or trend must "
                                   "exceed to count")
    max_background_cpu_cores: float = setting(0.5, minimum=0, help="CPU time of other "
                                              "processes during the timed window, in cores, "
                                              "at most for a stable run")
    drift_tolerance: float = setting(0.05, minimum=0, help="relative slowness of a leading "
                                     "block against the steady state that counts as warm-up")
    max_warmup_exclusion: float = setting(0.2, minimum=0, help="at most this fraction of the "
                                          "timed samples may be excluded as warm-up")
    outlier_iqr_k: float = setting(3.0, minimum=0, help="Tukey fence multiplier (on log "
                                   "latency) for reporting outliers")
    allow_throttled: bool = setting(True, help="whether a throttled run may be valid (also "
                                    "settable in [sensors])")
    run_to_run_sd: float = setting(0.01, minimum=0, help="the device's boot-to-boot sd of a "
                                   "run's median: the floor `gem-hil gate` puts under the "
                                   "run-to-run term of a regression test (--run-sd overrides)")

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
    stability: dict[str, Any]
    outliers: dict[str, Any]
    throttled: bool | None
    bounds: dict[str, Any]
    kept_samples_ms: list[float] = field(repr=False, default_factory=list)

    @property
    def stable(self) -> bool:
        return bool(self.stability.get("stable", True))

    def as_record(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("kept_samples_ms")
        return d


def detect_warmup_drift(x: np.ndarray, tolerance: float) -> dict[str, Any]:
    """Find a leading stretch of blocks that are SLOWER than the steady state.

    Steady state = median of the second half. Blocks of ~n/20 samples (at
    least 5); a block counts as warm-up while its median is slower by more
    than max(tolerance, 3 standard errors of a block median), so ordinary
    noise on a short block is not mistaken for drift. Faster leading blocks
    are not warm-up: they are what a device looks like before it throttles
    or a neighbour starts, and the drift checks report that. Returns the
    number of leading samples to exclude (0 when none).
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
        if dev > threshold:
            excluded = start + b
        else:
            break
    return {"detected": excluded > 0, "excluded_count": excluded, "block_size": b,
            "steady_median_ms": ref, "threshold": threshold,
            "first_block_deviation": first_dev}


def _robust_sigma(np: Any, y: np.ndarray) -> float:
    return 1.4826 * float(np.median(np.abs(y - np.median(y))))


def _log_residuals(np: Any, x: np.ndarray, period: int) -> np.ndarray:
    """log latency with each pool input's own level removed (it is the workload)."""
    y = np.log(x)
    if period > 1 and y.size >= 4 * period:
        slot = np.arange(y.size) % period
        y = y - np.array([np.median(y[slot == k]) for k in range(period)])[slot]
    return y


def detect_drift(y: np.ndarray, floor: float, sigmas: float) -> dict[str, Any]:
    """A step (best split) and a trend (resistant line) in log latency y, each with its
    standard error; flagged only beyond both the floor and `sigmas` errors.

    The errors use the robust sigma and the autocorrelation of the residuals
    AFTER the fitted step or line: a real step makes the raw series look
    dependent, and estimating the dependence on it would hide the step.
    """
    import numpy as np  # here, not at import: loading a profile must stay light

    from harness.stats import variance_inflation

    n = int(y.size)
    none = {"step": None, "trend": None, "flagged": False, "reason": None}
    if n < 30:
        return none
    log_floor = math.log1p(floor)
    # step at the best split between 10 % and 90 % of the run
    stride = max(1, n // 50)
    best = (0.0, n // 2)
    for k in range(n // 10, n - n // 10, stride):
        d = float(np.median(y[k:]) - np.median(y[:k]))
        if abs(d) > abs(best[0]):
            best = (d, k)
    d, k = best
    resid = np.concatenate([y[:k] - np.median(y[:k]), y[k:] - np.median(y[k:])])
    infl = variance_inflation(resid)["factor"]
    se = 1.2533 * _robust_sigma(np, resid) * math.sqrt(infl * (1.0 / k + 1.0 / (n - k)))
    step_sigma = _robust_sigma(np, resid)
    # the split is the best of ~40: the max of 40 correlated |z| needs a higher bar
    step_sigmas = sigmas * STEP_SEARCH_FACTOR
    step = {"at_sample": k, "relative_change": math.expm1(d), "z": d / se if se > 0 else None,
            "variance_inflation": infl, "threshold_z": step_sigmas,
            "flagged": abs(d) > log_floor and (se == 0 or abs(d) > step_sigmas * se)}
    # trend: medians of the first and last thirds, 2n/3 apart
    t = n // 3
    m1, m3 = float(np.median(y[:t])), float(np.median(y[-t:]))
    slope = (m3 - m1) / (n - t)
    total = slope * n
    line = m1 + slope * (np.arange(n) - (t - 1) / 2.0)
    resid = y - line
    infl = variance_inflation(resid)["factor"]
    se_t = 1.2533 * _robust_sigma(np, resid) * math.sqrt(infl * 2.0 / t) * n / (n - t)
    trend = {"relative_change": math.expm1(total), "z": total / se_t if se_t > 0 else None,
             "variance_inflation": infl,
             "flagged": abs(total) > log_floor and (se_t == 0 or abs(total) > sigmas * se_t)}
    # both may fire on one change: name the one that fits it better (smaller residuals)
    step_fits = step["flagged"] and (not trend["flagged"]
                                     or step_sigma <= _robust_sigma(np, resid))
    reason = None
    if step_fits:
        reason = (f"latency stepped {step['relative_change']:+.1%} at sample {k} of {n} "
                  f"(z = {step['z']:.1f}): throttling, a frequency change or background load")
    elif trend["flagged"]:
        reason = (f"latency drifted {trend['relative_change']:+.1%} across the run "
                  f"(z = {trend['z']:.1f}): throttling or background load")
    return {"step": step, "trend": trend, "flagged": bool(step["flagged"] or trend["flagged"]),
            "reason": reason}


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


def assess_stability(kept: np.ndarray, bounds: ValidityBounds, period: int = 1,
                     background_cpu_cores: float | None = None) -> dict[str, Any]:
    """The stability verdict of the (warm-up excluded) samples; see the module docstring."""
    import numpy as np  # here, not at import: loading a profile must stay light

    reasons: list[str] = []
    if kept.size < 2 or np.any(kept <= 0):
        return {"stable": True, "reasons": [], "spread_log_mad": None, "drift": None,
                "background_cpu_cores": background_cpu_cores,
                "note": "too few positive samples to judge"}
    y = _log_residuals(np, kept, period)
    spread = _robust_sigma(np, y)
    if spread > bounds.max_spread:
        reasons.append(f"spread {spread:.3f} (robust sigma of log latency) > max_spread "
                       f"{bounds.max_spread:g}: background load, frequency scaling or thermal "
                       "throttling; condition the device")
    drift = detect_drift(y, bounds.max_trend, bounds.change_sigmas)
    if drift["flagged"]:
        reasons.append(drift["reason"])
    if background_cpu_cores is not None and background_cpu_cores > bounds.max_background_cpu_cores:
        reasons.append(f"other processes used {background_cpu_cores:.2f} CPU cores during the "
                       f"timed window (> max_background_cpu_cores "
                       f"{bounds.max_background_cpu_cores:g}): the latency is about the "
                       "contention; stop the other work or use a quiet device")
    return {"stable": not reasons, "reasons": reasons, "spread_log_mad": spread,
            "drift": drift, "background_cpu_cores": background_cpu_cores}


def assess(samples_ms: Sequence[float], bounds: ValidityBounds | None = None, *,
           duration_s: float | None = None, min_count_met: bool | None = None,
           min_duration_met: bool | None = None, stopped_by: str | None = None,
           throttled: bool | None = None, period: int = 1,
           background_cpu_cores: float | None = None) -> ValidityReport:
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
        hint = "raise max_count" if stopped_by == "max_count" else \
            "raise max_duration_s" if stopped_by == "max_duration" else \
            "raise max_count or max_duration_s"
        reasons.append(f"timed window {_fmt_s(duration_s)} is below min_duration_s "
                       f"{bounds.min_duration_s:g} s ({stopped_by or 'stopped'} first): {hint}, "
                       "or lower min_duration_s")
    if n == 0:
        return ValidityReport(False, reasons + ["no timed samples"], 0, duration_s,
                              stopped_by, bool(min_count_met), bool(min_duration_met), None,
                              None, 0, {}, {"stable": True, "reasons": []}, {}, throttled,
                              asdict(bounds), [])
    drift = detect_warmup_drift(x, bounds.drift_tolerance)
    excluded = int(drift["excluded_count"])
    if excluded > bounds.max_warmup_exclusion * n:
        reasons.append(
            f"warm-up lasts {excluded} of {n} samples (> {bounds.max_warmup_exclusion:.0%}): "
            f"the first samples are {drift['first_block_deviation']:+.1%} slower than the "
            "steady state; raise warmup_count")
    kept = x[excluded:] if excluded < n else x
    cv = float(kept.std(ddof=1) / kept.mean()) if kept.size > 1 and kept.mean() > 0 else 0.0
    p50, p99 = (float(v) for v in np.percentile(kept, [50, 99]))
    tail = p99 / p50 if p50 > 0 else None
    if throttled and not bounds.allow_throttled:
        reasons.append("the device throttled during the run and allow_throttled = false: "
                       "cool it down, improve cooling or lower the load")
    stability = assess_stability(kept, bounds, period, background_cpu_cores)
    outliers = find_outliers(x, bounds.outlier_iqr_k)
    return ValidityReport(
        valid=not reasons, reasons=reasons, count=n, duration_s=duration_s,
        stopped_by=stopped_by, min_count_met=bool(min_count_met),
        min_duration_met=bool(min_duration_met), cv=cv, p99_over_p50=tail,
        excluded_leading_count=excluded, warmup_drift=drift, stability=stability,
        outliers=outliers, throttled=throttled, bounds=asdict(bounds),
        kept_samples_ms=kept.tolist())


def assess_agent_run(agent_out: Mapping[str, Any], bounds: ValidityBounds | None = None,
                     throttled: bool | None = None) -> ValidityReport:
    """assess() fed from the on-device agent's JSON (latency_samples_ns, run, contention)."""
    samples_ms = [ns / 1e6 for ns in agent_out.get("latency_samples_ns") or []]
    run = agent_out.get("run") or {}
    return assess(samples_ms, bounds, duration_s=run.get("duration_s"),
                  min_count_met=run.get("min_count_met"),
                  min_duration_met=run.get("min_duration_met"),
                  stopped_by=run.get("stopped_by"), throttled=throttled,
                  period=int(run.get("input_pool_size") or 1),
                  background_cpu_cores=(agent_out.get("contention") or {}).get(
                      "background_cpu_cores"))


def _fmt_s(v: float | None) -> str:
    return "unknown" if v is None else f"{v:.3g} s"
