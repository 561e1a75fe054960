"""Is the candidate slower than the baseline? A test on raw samples, not on summaries.

Two runs of the same build never give the same p50. A regression check that
compares point estimates pages someone every night; one that only asks "is it
statistically different" flags 0.4 % changes on a quiet board. So a verdict
here needs both:

* statistical evidence: the bootstrap confidence interval of the ratio of
  medians (candidate / baseline) excludes 1, and the Mann-Whitney U test
  agrees (p below 1 - confidence);
* practical size: the point estimate of the ratio is at least 1 + min_effect
  (3 % by default).

"unchanged" is also a claim that needs evidence: neither of the above, AND
the interval rules out a change of rule_out (default 2 x min_effect, i.e. 6 %)
either way (an equivalence test with a margin wider than the flagging
threshold: with a margin equal to it, every clean run whose estimate lands at
+2 % would come back "inconclusive" and the gate would cry wolf in the other
direction). Anything else is "inconclusive": the runs are too short or too
noisy to tell, and the fix is more samples, not a guess.

The median is the compared statistic because it is what moves when code gets
slower, and it is robust to the tail outliers every device produces. The
bootstrap of a median is computed exactly and cheaply: the median of a
resample of n points is the order statistic of rank ceil(n * U_(m)) where
U_(m) ~ Beta(m, n - m + 1) is the m-th smallest of n uniforms, so one Beta draw
replaces resampling and sorting n values.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from statistics import NormalDist

import numpy as np

VERDICTS = ("regressed", "improved", "unchanged", "inconclusive")


@dataclass(frozen=True)
class RegressionResult:
    """Outcome of compare(): verdict plus the evidence behind it."""

    verdict: str
    ratio_median: float
    ci: tuple[float, float]
    p_value: float
    min_effect: float
    confidence: float
    n_baseline: int
    n_candidate: int
    median_baseline_ms: float
    median_candidate_ms: float
    reason: str

    @property
    def change_pct(self) -> float:
        """Signed change of the median in percent (+ = slower)."""
        return (self.ratio_median - 1.0) * 100.0

    def as_dict(self) -> dict:
        d = asdict(self)
        d["ci"] = list(self.ci)
        d["change_pct"] = self.change_pct
        return d


def bootstrap_median_draws(samples: Sequence[float] | np.ndarray, resamples: int,
                           rng: np.random.Generator) -> np.ndarray:
    """Exact bootstrap distribution of the sample median, in O(resamples).

    Equivalent in distribution to ``np.median(x[rng.integers(0, n, (R, n))], axis=1)``
    (tests check this against brute force). For even n the median of a
    resample averages its order statistics m and m+1; U_(m+1) given U_(m) = u
    is u + (1 - u) * Beta(1, n - m), the smallest of the n - m uniforms above u.
    """
    x = np.sort(np.asarray(samples, dtype=float))
    n = x.size
    if n == 0:
        raise ValueError("no samples")
    if n == 1:
        return np.full(resamples, x[0])
    m = (n + 1) // 2
    u1 = rng.beta(m, n - m + 1, size=resamples)
    idx1 = np.clip(np.ceil(n * u1).astype(np.int64) - 1, 0, n - 1)
    if n % 2 == 1:
        return x[idx1]
    u2 = u1 + (1.0 - u1) * rng.beta(1, n - m, size=resamples)
    idx2 = np.clip(np.ceil(n * u2).astype(np.int64) - 1, 0, n - 1)
    return (x[idx1] + x[idx2]) / 2.0


def mann_whitney_u(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """Two-sided Mann-Whitney U test, normal approximation with tie and continuity correction.

    Returns (U of a, p-value). Numpy only: the harness must not need scipy on
    a CI runner. Accurate for the sample sizes benchmarks produce (n >= 20 each).
    """
    x = np.asarray(a, dtype=float)
    y = np.asarray(b, dtype=float)
    n1, n2 = x.size, y.size
    if n1 == 0 or n2 == 0:
        raise ValueError("Mann-Whitney U needs samples on both sides")
    allv = np.concatenate([x, y])
    order = np.argsort(allv, kind="mergesort")
    sorted_v = allv[order]
    ranks = np.empty(allv.size, dtype=float)
    # midranks for ties
    _, first, counts = np.unique(sorted_v, return_index=True, return_counts=True)
    mid = first + (counts + 1) / 2.0  # 1-based average rank of each tie group
    ranks[order] = np.repeat(mid, counts)
    r1 = ranks[:n1].sum()
    u1 = r1 - n1 * (n1 + 1) / 2.0
    mu = n1 * n2 / 2.0
    n = n1 + n2
    tie_term = float(((counts**3) - counts).sum()) / (n * (n - 1)) if n > 1 else 0.0
    var = n1 * n2 / 12.0 * ((n + 1) - tie_term)
    if var <= 0:
        return float(u1), 1.0
    z = (abs(u1 - mu) - 0.5) / math.sqrt(var)
    p = math.erfc(max(z, 0.0) / math.sqrt(2.0))
    return float(u1), float(min(1.0, p))


def compare(baseline_samples_ms: Sequence[float], candidate_samples_ms: Sequence[float],
            min_effect: float = 0.03, confidence: float = 0.95, resamples: int = 4000,
            seed: int = 0, rule_out: float | None = None) -> RegressionResult:
    """Compare candidate latencies with baseline latencies (lower is better).

    See the module docstring for the decision rule. Deterministic for a seed.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence {confidence} must be between 0 and 1")
    if min_effect < 0:
        raise ValueError(f"min_effect {min_effect} must be >= 0")
    base = np.asarray(baseline_samples_ms, dtype=float)
    cand = np.asarray(candidate_samples_ms, dtype=float)
    if base.size < 2 or cand.size < 2:
        raise ValueError(f"need at least 2 samples on each side (baseline {base.size}, "
                         f"candidate {cand.size})")
    if np.any(base <= 0) or np.any(cand <= 0):
        raise ValueError("latency samples must be positive")
    rng = np.random.default_rng(seed)
    mb, mc = float(np.median(base)), float(np.median(cand))
    ratio = mc / mb
    draws = bootstrap_median_draws(cand, resamples, rng) / bootstrap_median_draws(
        base, resamples, rng)
    alpha = 1.0 - confidence
    lo, hi = (float(v) for v in np.quantile(draws, [alpha / 2, 1 - alpha / 2]))
    _, p = mann_whitney_u(cand, base)
    verdict, reason = _decide(ratio, lo, hi, p, min_effect, confidence, rule_out)
    return RegressionResult(verdict, ratio, (lo, hi), p, min_effect, confidence,
                            int(base.size), int(cand.size), mb, mc, reason)


def _pct(ratio: float) -> str:
    return f"{(ratio - 1) * 100:+.2f} %"


# -- several runs per side: run-to-run variation made visible -----------------
#
# Within one run, samples are (nearly) independent and the bootstrap above is
# right. Between runs, the device is not the same device: temperature, clocks,
# memory layout and background load move the whole run by ~1 % (more on
# phones). A single baseline run against a single candidate run cannot see
# that shift, and the simulation (docs/statistics.md) shows it then raises
# false alarms above 2 % whatever the sample count. With several runs on a
# side, the spread of the run medians measures it, and the comparison becomes
# a two-level model: log run median = side mean + run shift (sd tau) + noise.


def _log_median_and_var(samples: np.ndarray, rng: np.random.Generator,
                        resamples: int) -> tuple[float, float]:
    draws = np.log(bootstrap_median_draws(samples, resamples, rng))
    return float(np.log(np.median(samples))), float(draws.var(ddof=1))


def compare_runs(baseline_runs: Sequence[Sequence[float]],
                 candidate_runs: Sequence[Sequence[float]], min_effect: float = 0.03,
                 confidence: float = 0.95, run_sd: float | None = None,
                 rule_out: float | None = None, resamples: int = 2000,
                 seed: int = 0) -> RegressionResult:
    """Compare sides made of one or more runs each, counting run-to-run variation.

    Statistic: the mean of the runs' log medians per side; ratio = exp(difference).
    Variance of a side's mean = sum(within-run variances) / k**2 + tau**2 / k.
    tau**2 is estimated from the run medians of every side with >= 2 runs
    (pooled, method of moments); run_sd (e.g. from the profile or past
    nights) is a floor for it. With one run per side and no run_sd, tau is 0
    and the reason says the run-to-run variation was not measured. The
    interval uses Student t with the pooled degrees of freedom when tau is
    estimated (three runs are not a normal distribution's worth of evidence).
    """
    from harness.stats import t_quantile

    if not baseline_runs or not candidate_runs:
        raise ValueError("need at least one run on each side")
    if len(baseline_runs) == 1 and len(candidate_runs) == 1 and not run_sd:
        return compare(baseline_runs[0], candidate_runs[0], min_effect, confidence, seed=seed,
                       rule_out=rule_out)
    rng = np.random.default_rng(seed)
    sides = []
    for runs in (baseline_runs, candidate_runs):
        arrs = [np.asarray(r, dtype=float) for r in runs]
        if any(a.size < 2 or np.any(a <= 0) for a in arrs):
            raise ValueError("every run needs at least 2 positive latency samples")
        sides.append([(*_log_median_and_var(a, rng, resamples), a) for a in arrs])
    ss, df, within = 0.0, 0, []
    for side in sides:
        m = np.array([s[0] for s in side])
        within += [s[1] for s in side]
        if m.size >= 2:
            ss += float(((m - m.mean()) ** 2).sum())
            df += m.size - 1
    tau2_est = max(0.0, ss / df - float(np.mean(within))) if df else 0.0
    tau2 = max(tau2_est, (run_sd or 0.0) ** 2)
    means, var = [], 0.0
    for side in sides:
        k = len(side)
        means.append(float(np.mean([s[0] for s in side])))
        var += sum(s[1] for s in side) / k**2 + tau2 / k
    diff = means[1] - means[0]
    se = math.sqrt(var)
    alpha = 1.0 - confidence
    use_t = df > 0 and tau2_est >= (run_sd or 0.0) ** 2
    q = t_quantile(1 - alpha / 2, df) if use_t else float(NormalDist().inv_cdf(1 - alpha / 2))
    lo, hi = math.exp(diff - q * se), math.exp(diff + q * se)
    z = abs(diff) / se if se > 0 else math.inf
    p = 2 * (1 - NormalDist().cdf(z)) if not use_t else _t_two_sided_p(z, df)
    ratio = math.exp(diff)
    base_all = np.concatenate([s[2] for s in sides[0]])
    cand_all = np.concatenate([s[2] for s in sides[1]])
    res = _decide(ratio, lo, hi, p, min_effect, confidence, rule_out)
    how = (f"; {len(baseline_runs)} baseline / {len(candidate_runs)} candidate run(s), "
           f"run-to-run sd {math.sqrt(tau2) * 100:.2f} %"
           + (" (estimated)" if use_t else " (given)" if run_sd else " (not measured)"))
    return RegressionResult(res[0], ratio, (lo, hi), p, min_effect, confidence,
                            int(base_all.size), int(cand_all.size),
                            float(np.median(base_all)), float(np.median(cand_all)),
                            res[1] + how)


def _t_two_sided_p(t: float, df: int) -> float:
    from harness.stats import t_cdf

    if not math.isfinite(t):
        return 0.0
    return max(0.0, 2.0 * (1.0 - t_cdf(abs(t), df)))


def _decide(ratio: float, lo: float, hi: float, p: float, min_effect: float,
            confidence: float, rule_out: float | None) -> tuple[str, str]:
    """The verdict rule shared by compare() and compare_runs() (module docstring)."""
    alpha = 1.0 - confidence
    margin = 2.0 * min_effect if rule_out is None else rule_out
    if margin < min_effect:
        raise ValueError(f"rule_out {margin} must be >= min_effect {min_effect}")
    up, down = 1.0 + min_effect, 1.0 / (1.0 + min_effect)
    eq_up, eq_down = 1.0 + margin, 1.0 / (1.0 + margin)
    pct = f"{(ratio - 1) * 100:+.2f} %"
    band = f"+/-{min_effect * 100:g} %"
    if lo > 1.0 and p < alpha and ratio >= up:
        return "regressed", f"median {pct} (CI {_pct(lo)}..{_pct(hi)}, p={p:.2g}) beyond {band}"
    if hi < 1.0 and p < alpha and ratio <= down:
        return "improved", f"median {pct} (CI {_pct(lo)}..{_pct(hi)}, p={p:.2g}) beyond {band}"
    if lo >= eq_down and hi <= eq_up:
        return "unchanged", (f"median {pct} (CI {_pct(lo)}..{_pct(hi)}): no change beyond "
                             f"{band} shown, and one beyond +/-{margin * 100:g} % ruled out")
    return "inconclusive", (f"median {pct}, CI {_pct(lo)}..{_pct(hi)} (p={p:.2g}) cannot rule "
                            f"out a change beyond +/-{margin * 100:g} %: collect more samples "
                            "or runs on both sides")
