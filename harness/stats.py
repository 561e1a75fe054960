"""Summary statistics of latency samples, with confidence intervals.

Percentiles of a few hundred noisy samples move between runs; a budget verdict
must know by how much, so every percentile comes with a bootstrap interval.
The resampling is seeded: the same samples always give the same interval.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

PERCENTILES = (50, 90, 95, 99)


#: from this many samples on, percentile intervals come from order statistics:
#: distribution-free with guaranteed coverage and O(n log n), where a bootstrap
#: would cost 1000 x n work inside the harness-overhead budget.
ORDER_STAT_FROM_N = 1000
BOOTSTRAP_RESAMPLES = 1000


def summarize(samples_ms: Sequence[float], confidence: float = 0.95, seed: int = 0) -> dict:
    """p50/p90/p95/p99, mean, std, min, max and a CI for each percentile and the mean.

    Field names carry their unit (ms) so a record read without its schema
    still says what it holds. ci_method says how the intervals were made.
    """
    x = np.asarray(samples_ms, dtype=float)
    if x.size == 0:
        raise ValueError("no samples to summarize")
    alpha = (1.0 - confidence) / 2.0
    out: dict = {"count": int(x.size), "confidence": confidence}
    for p in PERCENTILES:
        out[f"p{p}_ms"] = float(np.percentile(x, p))
    out["mean_ms"] = float(x.mean())
    out["std_ms"] = float(x.std(ddof=1)) if x.size > 1 else 0.0
    if x.size >= ORDER_STAT_FROM_N:
        out["ci_method"] = "order-statistic (percentiles), normal (mean)"
        out["bootstrap_resamples"] = 0
        xs = np.sort(x)
        for p in PERCENTILES:
            ci = _order_stat_ci_sorted(xs, p / 100.0, confidence)
            out[f"p{p}_ci_ms"] = list(ci) if ci else [out[f"p{p}_ms"], float(xs[-1])]
        half = NormalDist().inv_cdf(1.0 - alpha) * out["std_ms"] / math.sqrt(x.size)
        out["mean_ci_ms"] = [out["mean_ms"] - half, out["mean_ms"] + half]
    else:
        # One resample matrix serves every statistic: the intervals come from
        # the same bootstrap world and the cost is paid once.
        out["ci_method"] = "bootstrap-percentile"
        out["bootstrap_resamples"] = BOOTSTRAP_RESAMPLES
        rng = np.random.default_rng(seed)
        boot = x[rng.integers(0, x.size, size=(BOOTSTRAP_RESAMPLES, x.size))]
        qs = np.percentile(boot, PERCENTILES, axis=1)  # (len(PERCENTILES), resamples)
        for i, p in enumerate(PERCENTILES):
            lo, hi = np.quantile(qs[i], [alpha, 1.0 - alpha])
            out[f"p{p}_ci_ms"] = [float(lo), float(hi)]
        lo, hi = np.quantile(boot.mean(axis=1), [alpha, 1.0 - alpha])
        out["mean_ci_ms"] = [float(lo), float(hi)]
    out["min_ms"] = float(x.min())
    out["max_ms"] = float(x.max())
    out["cv"] = float(out["std_ms"] / out["mean_ms"]) if out["mean_ms"] > 0 else 0.0
    return out


# -- distribution-free quantile intervals and sequential early stopping -------
#
# The bootstrap above is what records carry. Deciding *during* a run whether to
# keep sampling needs something cheaper and with a guarantee that does not
# lean on resampling: the order-statistic interval. For any continuous
# distribution the number of samples below the true q-quantile is
# Binomial(n, q), so a pair of ranks (l, u) with P(l <= B < u) >= confidence
# brackets the quantile with at least that probability, whatever the shape.


def _binom_cdf(n: int, p: float) -> np.ndarray:
    """P(B <= k) for k = 0..n, B ~ Binomial(n, p), via log-pmf (stable for large n)."""
    k = np.arange(n + 1)
    # log k! for k = 0..n, vectorised (a Python lgamma loop costs ms per 1000 samples)
    lgam = np.concatenate(([0.0], np.cumsum(np.log(np.arange(1, n + 1, dtype=float)))))
    logpmf = lgam[n] - lgam[k] - lgam[n - k] + k * math.log(p) + (n - k) * math.log1p(-p)
    cdf = np.cumsum(np.exp(logpmf - logpmf.max()))
    return cdf / cdf[-1]


def quantile_ci_order_stat(samples_ms: Sequence[float], q: float,
                           confidence: float = 0.95) -> tuple[float, float] | None:
    """Distribution-free two-sided interval for the q-quantile, or None when n is too small.

    Returns (x_(l), x_(u)) with P(x_(l) <= true quantile <= x_(u)) >= confidence.
    None means no pair of ranks reaches the confidence with this many samples
    (e.g. fewer than 72 samples for a 95 % interval of p95): the honest answer
    is "not enough data", not a made-up interval.
    """
    if not 0.0 < q < 1.0:
        raise ValueError(f"quantile q={q} must be strictly between 0 and 1")
    return _order_stat_ci_sorted(np.sort(np.asarray(samples_ms, dtype=float)), q, confidence)


def _order_stat_ci_sorted(x: np.ndarray, q: float, confidence: float
                          ) -> tuple[float, float] | None:
    n = x.size
    if n < 2:
        return None
    cdf = _binom_cdf(n, q)  # cdf[k] = P(B <= k)
    alpha = 1.0 - confidence
    # lower rank l (1-based): largest l with P(B <= l-1) <= alpha/2
    # upper rank u (1-based): smallest u with P(B <= u-1) >= 1 - alpha/2
    lows = np.nonzero(cdf <= alpha / 2)[0]
    highs = np.nonzero(cdf >= 1 - alpha / 2)[0]
    if lows.size == 0 or highs.size == 0:
        return None
    l_rank = int(lows[-1]) + 1
    u_rank = int(highs[0]) + 1
    if u_rank > n:
        return None
    return float(x[l_rank - 1]), float(x[u_rank - 1])


@dataclass(frozen=True)
class SequentialDecision:
    """Whether sampling may stop because the budget verdict can no longer change.

    verdict is "pass" / "fail" when certain at the per-look confidence, None
    while more samples are needed. ci_ms is the interval the decision used.
    """

    stop: bool
    verdict: str | None
    count: int
    ci_ms: tuple[float, float] | None
    per_look_confidence: float
    reason: str

    def as_dict(self) -> dict:
        return {"stop": self.stop, "verdict": self.verdict, "count": self.count,
                "ci_ms": list(self.ci_ms) if self.ci_ms else None,
                "per_look_confidence": self.per_look_confidence, "reason": self.reason}


def sequential_check(samples_ms: Sequence[float], limit_ms: float, percentile: float = 95,
                     confidence: float = 0.95, max_looks: int = 10, min_count: int = 20,
                     direction: str = "max") -> SequentialDecision:
    """Early-stopping test: is the pass/fail verdict already certain?

    Call it after each batch of samples (at most max_looks times per run).
    Looking repeatedly at growing data inflates the error rate, so each look
    is Bonferroni-corrected: a pass needs the one-sided upper bound at
    1 - alpha / max_looks under the limit, a fail the one-sided lower bound
    over it (alpha = 1 - confidence). A wrong "pass" needs one of the
    max_looks upper bounds to fall below the true percentile, so over the
    whole run the chance of stopping on a wrong verdict stays below alpha.
    The bounds are the distribution-free order-statistic ones, valid for any
    latency shape (tails included); the price is a minimum sample count
    before any pass is possible (min_decisive_count: 104 for p95 at 10 looks).

    direction "max": the metric must stay at or under limit_ms (latency);
    "min": at or over it. Never stops before min_count samples, so a short
    lucky streak cannot end a run.
    """
    if direction not in ("max", "min"):
        raise ValueError(f"direction {direction!r} must be 'max' or 'min'")
    if max_looks < 1:
        raise ValueError("max_looks must be at least 1")
    per_look = 1.0 - 2.0 * (1.0 - confidence) / max_looks  # two-sided = both one-sided bounds
    n = len(samples_ms)
    if n < min_count:
        return SequentialDecision(False, None, n, None, per_look,
                                  f"{n} samples < min_count {min_count}")
    ci = quantile_ci_order_stat(samples_ms, percentile / 100.0, per_look)
    if ci is None:
        return SequentialDecision(False, None, n, None, per_look,
                                  f"{n} samples are too few for a {per_look:.4f} interval of "
                                  f"p{percentile:g}")
    lo, hi = ci
    if direction == "max":
        certain = "pass" if hi <= limit_ms else "fail" if lo > limit_ms else None
    else:
        certain = "pass" if lo >= limit_ms else "fail" if hi < limit_ms else None
    if certain is None:
        return SequentialDecision(False, None, n, ci, per_look,
                                  f"p{percentile:g} interval [{lo:.4g}, {hi:.4g}] ms straddles "
                                  f"the limit {limit_ms:g} ms")
    return SequentialDecision(True, certain, n, ci, per_look,
                              f"p{percentile:g} interval [{lo:.4g}, {hi:.4g}] ms is entirely "
                              f"{'within' if certain == 'pass' else 'beyond'} the limit "
                              f"{limit_ms:g} ms")


def min_decisive_count(percentile: float = 95, confidence: float = 0.95,
                       max_looks: int = 10) -> int:
    """Fewest samples for which sequential_check can ever say "pass" for this percentile.

    The upper bound is the largest sample until n is large enough that all n
    samples falling below the true percentile is unlikely: q**n <= alpha/looks.
    Looks before this count only waste the error budget.
    """
    q = percentile / 100.0
    return math.ceil(math.log((1.0 - confidence) / max_looks) / math.log(q))


def look_schedule(min_count: int, max_count: int, max_looks: int = 10) -> list[int]:
    """Sample counts at which to call sequential_check: geometric from min_count to max_count.

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
