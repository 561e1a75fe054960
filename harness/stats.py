"""Summary statistics of latency samples, with intervals that keep their coverage.

A budget verdict is only as good as the interval it compares with the limit.
Simulated on log-normal, heavy-tailed and autocorrelated series (docs/
statistics.md, tests/benchmarks/bench_stats_sim.py), a percentile bootstrap
under-covers the tail at the sample counts boards produce (it can never put
p99's upper bound above the sample maximum), and every iid interval
under-covers autocorrelated series by a variance ratio that more samples do
not cure. So here:

* every percentile interval comes from order statistics (distribution-free),
  at every n; when n is too small for an end (p99 needs n >= 368 for the
  upper end of a 95 % interval) that end is None, "unbounded", and a verdict
  that needs it is inconclusive — never [p, max];
* the ranks are chosen for the effective sample size n / IF, where IF, the
  variance inflation from autocorrelation, is estimated from the samples
  (firmware/agent/gem_agent.py variance_inflation: the device uses the same
  estimate for its stopping decision);
* the mean's interval is Student t on the effective sample size.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Mapping, Sequence
from functools import cache
from statistics import NormalDist
from types import ModuleType
from typing import Any

import numpy as np

PERCENTILES = (50, 90, 95, 99)
CI_METHOD = "order-statistic at the effective sample size (percentiles), Student t (mean)"


@cache
def agent_module() -> ModuleType:
    """The on-device agent loaded as a module, for the functions the harness shares with it."""
    from harness.resources import agent_source

    path = agent_source()
    spec = importlib.util.spec_from_file_location("gem_hil_agent", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load the agent from {path}")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def variance_inflation(samples: Sequence[float], period: int = 1) -> dict[str, Any]:
    """IF and effective sample size of a series (the agent's estimate, see its docstring)."""
    return agent_module().variance_inflation(np, samples, period)


def _binom_cdf(n: int, p: float) -> np.ndarray:
    """P(B <= k) for k = 0..n, B ~ Binomial(n, p)."""
    pmf = agent_module().binom_pmf(np, n, p)
    return np.cumsum(pmf / pmf.sum())


def quantile_ranks(n: int, q: float, confidence: float, n_eff: float | None = None
                   ) -> tuple[int | None, int | None]:
    """1-based ranks (l, u) of the order statistics bracketing the q-quantile.

    For independent samples the count below the true quantile is Binomial(n,
    q), so P(x_(l) <= quantile <= x_(u)) >= confidence whatever the shape;
    each end misses with probability at most (1 - confidence) / 2. With n_eff
    < n (autocorrelation) the ranks are those of a sample of n_eff,
    stretched to n: the band in quantile levels is as wide as n_eff
    independent samples give. An end no rank can reach is None.
    """
    if not 0.0 < q < 1.0:
        raise ValueError(f"quantile q={q} must be strictly between 0 and 1")
    m = n if n_eff is None else max(1, min(n, int(n_eff)))
    if m < 1:
        return None, None
    cdf = _binom_cdf(m, q)  # cdf[k] = P(B <= k)
    half = (1.0 - confidence) / 2.0
    lows = np.nonzero(cdf <= half)[0]  # lower rank l: P(B <= l - 1) <= half
    highs = np.nonzero(cdf >= 1.0 - half)[0]  # upper rank u: P(B <= u - 1) >= 1 - half
    lo = int(lows[-1]) + 1 if lows.size else None
    hi = int(highs[0]) + 1 if highs.size and int(highs[0]) + 1 <= m else None
    if m == n:
        return lo, hi
    scale = (n + 1) / (m + 1)
    lo = max(1, math.floor(lo * scale)) if lo is not None else None
    hi = min(n, math.ceil(hi * scale)) if hi is not None else None
    return lo, hi


def _interval(xs: np.ndarray, q: float, confidence: float, n_eff: float | None
              ) -> list[float | None]:
    lo, hi = quantile_ranks(int(xs.size), q, confidence, n_eff)
    return [float(xs[lo - 1]) if lo else None, float(xs[hi - 1]) if hi else None]


def quantile_ci_order_stat(samples_ms: Sequence[float], q: float, confidence: float = 0.95,
                           n_eff: float | None = None) -> tuple[float | None, float | None]:
    """Distribution-free interval for the q-quantile; an end n cannot reach is None."""
    xs = np.sort(np.asarray(samples_ms, dtype=float))
    lo, hi = _interval(xs, q, confidence, n_eff)
    return lo, hi


def summarize(samples_ms: Sequence[float], confidence: float = 0.95, period: int = 1
              ) -> dict[str, Any]:
    """p50/p90/p95/p99 and the mean, each with an interval at `confidence`, and the
    dependence behind the intervals (variance_inflation, effective_sample_size).

    period: the size of the input pool the agent cycled through (its per-input
    latency pattern is not dependence). Field names carry their unit (ms).
    """
    x = np.asarray(samples_ms, dtype=float)
    if x.size == 0:
        raise ValueError("no samples to summarize")
    infl = variance_inflation(x, period)
    n_eff = float(infl["effective_sample_size"])
    xs = np.sort(x)
    out: dict[str, Any] = {"count": int(x.size), "confidence": confidence,
                           "ci_method": CI_METHOD}
    for p in PERCENTILES:
        out[f"p{p}_ms"] = float(np.percentile(x, p))
        out[f"p{p}_ci_ms"] = _interval(xs, p / 100.0, confidence, n_eff)
    out["mean_ms"] = float(x.mean())
    out["std_ms"] = float(x.std(ddof=1)) if x.size > 1 else 0.0
    if n_eff >= 2:
        half = t_quantile(1.0 - (1.0 - confidence) / 2.0, n_eff - 1.0) * out["std_ms"] * \
            math.sqrt(infl["factor"] / x.size)
        out["mean_ci_ms"] = [out["mean_ms"] - half, out["mean_ms"] + half]
    else:
        out["mean_ci_ms"] = [None, None]
    out["min_ms"] = float(xs[0])
    out["max_ms"] = float(xs[-1])
    out["cv"] = float(out["std_ms"] / out["mean_ms"]) if out["mean_ms"] > 0 else 0.0
    out["variance_inflation"] = float(infl["factor"])
    out["effective_sample_size"] = n_eff
    out["lag1_autocorrelation"] = infl["lag1_autocorrelation"]
    out["input_pool_size"] = period
    return out


# -- sequential stopping: the rule the agent receives ---------------------------
#
# The agent stops as soon as every gated latency percentile is decided at one
# of a fixed set of looks; the boundaries are exact (gem_agent.py
# exceedance_boundaries). Here: which budgets can be decided that way, the look
# schedule, and the replay that recomputes the device's decision from the raw
# samples of the record.

#: the one-sided error of each verdict: the two ends of a 95 % interval
STOP_ALPHA = 0.025
DEFAULT_LOOKS = 10


def min_decisive_count(percentile: float = 95, alpha: float = STOP_ALPHA,
                       looks: int = DEFAULT_LOOKS) -> int:
    """Fewest independent samples for which a "pass" of this percentile is possible.

    With no sample over the limit the chance of that at the limit is q**n; the
    first look spends alpha / looks, so a pass needs q**n <= alpha / looks.
    Looks before this count only waste the error budget.
    """
    q = percentile / 100.0
    return math.ceil(math.log(alpha / looks) / math.log(q))


def look_schedule(min_count: int, max_count: int, max_looks: int = DEFAULT_LOOKS) -> list[int]:
    """Sample counts at which the agent looks: geometric from min_count to max_count.

    Geometric spacing puts most looks early, where a clear verdict is cheap
    to confirm, and few late, where each look costs more device time.
    """
    if min_count < 1 or max_count < min_count:
        raise ValueError(f"need 1 <= min_count ({min_count}) <= max_count ({max_count})")
    if max_looks <= 1 or max_count == min_count:
        return [max_count]
    ratio = (max_count / min_count) ** (1.0 / (max_looks - 1))
    counts = sorted({min(max_count, round(min_count * ratio**i)) for i in range(max_looks)})
    counts[-1] = max_count
    return counts


def stop_rule(budgets: Mapping[str, float], min_count: int, max_count: int,
              max_looks: int = DEFAULT_LOOKS) -> tuple[dict[str, Any] | None, str]:
    """The --stop-rule the agent gets for these gated budgets, or None and why not.

    Only latency percentiles can be decided on the device as samples arrive;
    a gated mean or energy budget needs the run to go on to its minimums, so
    with one of those the rule is None (the record says so).
    """
    rules, blockers = [], []
    for name, limit in budgets.items():
        if name.startswith("latency_p") and name.endswith("_ms") and name[9:-3].isdigit():
            rules.append({"metric": name, "quantile": int(name[9:-3]) / 100.0,
                          "limit_ms": float(limit)})
        elif name in ("latency_mean_ms", "energy_per_inference_mj"):
            blockers.append(name)
    if blockers:
        return None, (f"{', '.join(blockers)} cannot be decided as samples arrive: sampling "
                      "stops at the minimums")
    if not rules:
        return None, "no gated latency percentile: sampling stops at the minimums"
    first = max(min_count, max(min_decisive_count(100 * r["quantile"]) for r in rules))
    first = min(first, max_count)
    return ({"looks": look_schedule(first, max_count, max_looks), "alpha": STOP_ALPHA,
             "budgets": rules}, "sequential: stops when every gated percentile is decided")


def replay_stopping(samples_ms: Sequence[float], stopping: Mapping[str, Any],
                    stopped_at: int | None) -> dict[str, Any]:
    """Recompute the device's stopping decision from the record's raw samples.

    Replays each look the agent took (its sample count and planned index are
    in the record: chosen by the clock, not the data) on the raw samples;
    agrees when the first decided look is where the agent said it stopped
    (or none was decided and it ran on).
    """
    mod = agent_module()
    rule = stopping["rule"]
    x = np.asarray(samples_ms, dtype=float)
    taken: list[tuple[int, int]] = []
    first: dict[str, Any] | None = None
    for look in stopping.get("looks") or []:
        n, j = int(look["count"]), int(look["look"])
        if n > x.size:
            break
        d = mod.sequential_decision(np, x[:n], rule, j, taken)
        taken.append((n, j))
        if d["decided"]:
            first = d
            break
    decided_at = first["count"] if first else None
    return {"decided_at_count": decided_at, "looks_replayed": len(taken),
            "verdicts": {k: v["verdict"] for k, v in first["budgets"].items()} if first else None,
            "agrees": decided_at == stopped_at}


def t_cdf(x: float, df: float) -> float:
    """Student t CDF (numpy only), integrated numerically from the density.

    The substitution t = tan(u) maps the heavy tail (df = 1) to a finite
    range, so 4001 trapezoids give ~1e-7 accuracy for every df >= 1.
    """
    if df <= 0:
        raise ValueError(f"df={df} must be > 0")
    if x < 0:
        return 1.0 - t_cdf(-x, df)
    if df > 1e6:
        return float(NormalDist().cdf(x))
    logc = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    u = np.linspace(0.0, math.atan(x), 4001)
    t = np.tan(u)
    dens = np.exp(logc - (df + 1) / 2 * np.log1p(t * t / df)) / np.cos(u) ** 2
    return min(1.0, 0.5 + float(np.sum((dens[1:] + dens[:-1]) * np.diff(u)) / 2))


def t_quantile(p: float, df: float) -> float:
    """Student t quantile by bisection on t_cdf.

    Small-df intervals (a handful of runs) are where the normal quantile lies
    most: t(0.975, 2) = 4.30, not 1.96.
    """
    if not 0.0 < p < 1.0 or df <= 0:
        raise ValueError(f"need 0 < p < 1 and df > 0 (got p={p}, df={df})")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    if df > 1e6:
        return float(NormalDist().inv_cdf(p))
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        hi *= 2.0
    for _ in range(50):
        mid = (lo + hi) / 2
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2
