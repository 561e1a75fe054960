"""Is the candidate slower than the baseline? A test on raw samples, not on summaries.

Two runs of the same build never give the same p50. A regression check that
compares point estimates pages someone every night; one that only asks "is it
statistically different" flags 0.4 % changes on a quiet board. So a verdict
here needs both:

* statistical evidence: the confidence interval of the ratio of medians
  (candidate / baseline) excludes 1;
* practical size: the point estimate of the ratio is at least 1 + min_effect
  (3 % by default).

"unchanged" is also a claim that needs evidence: neither of the above, AND
the interval rules out a change of rule_out (default 2 x min_effect, i.e. 6 %)
either way. Anything else is "inconclusive": the runs are too short or too
noisy to tell, and the fix is more samples or boots, not a guess.

What the interval allows for, because simulation showed each one breaking
the error rates when ignored (docs/statistics.md):

* autocorrelation within a run: each run's sampling variance is multiplied
  by its variance inflation (harness/stats.py), so a run of n dependent
  samples counts as n / IF;
* boot-to-boot drift: a device after a reboot is not the same device
  (clocks, memory layout, temperature move the whole run by 1-2 %). The unit
  of replication is a boot, not a record: runs from one boot are pooled, the
  run-to-run sd tau is estimated from the spread of boots, and never taken
  below a per-device floor (run_sd, 1 % by default; learned from history
  where it exists). With one boot per side the floor is all there is, so a
  single pair of runs detects only large changes: take several boots per
  side, or use the interleaved A/B design (compare() on samples taken
  alternately in one session, where drift cancels).

Mann-Whitney U is computed and reported, not used: it assumes independent
samples and flagged 63 % of no-change runs at rho = 0.9.

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
    mann_whitney_p: float | None = None  # reported only: it assumes independent samples
    boots_baseline: int = 1
    boots_candidate: int = 1
    run_sd: float = 0.0  # the run-to-run sd of the log median the interval used

    @property
    def change_pct(self) -> float:
        """Signed change of the median in percent (+ = slower)."""
        return (self.ratio_median - 1.0) * 100.0

    def as_dict(self) -> dict:
        d = asdict(self)
        d["ci"] = [v if math.isfinite(v) else None for v in self.ci]  # JSON has no inf
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


#: per-device run-to-run (boot-to-boot) sd floor of the log median: 1 %
DEFAULT_RUN_SD = 0.01


def _side(runs: Sequence[Sequence[float]], rng: np.random.Generator, resamples: int,
          period: int) -> list[tuple[float, float, np.ndarray]]:
    """(log median, its sampling variance allowing for autocorrelation, samples) per run."""
    from harness.stats import variance_inflation

    out = []
    for r in runs:
        a = np.asarray(r, dtype=float)
        if a.size < 2 or np.any(a <= 0):
            raise ValueError("every run needs at least 2 positive latency samples")
        lm, var = _log_median_and_var(a, rng, resamples)
        out.append((lm, var * variance_inflation(a, period)["factor"], a))
    return out


def compare(baseline_samples_ms: Sequence[float], candidate_samples_ms: Sequence[float],
            min_effect: float = 0.03, confidence: float = 0.95, resamples: int = 2000,
            seed: int = 0, rule_out: float | None = None, period: int = 1) -> RegressionResult:
    """Compare two runs taken under the same conditions (one session, one boot), e.g.
    the two arms of an interleaved A/B run: no run-to-run term.

    See the module docstring for the decision rule. Deterministic for a seed.
    """
    return compare_runs([baseline_samples_ms], [candidate_samples_ms], min_effect, confidence,
                        run_sd=0.0, rule_out=rule_out, resamples=resamples, seed=seed,
                        period=period, same_session=True)


def compare_paired(baseline_samples_ms: Sequence[float], candidate_samples_ms: Sequence[float],
                   min_effect: float = 0.03, confidence: float = 0.95,
                   rule_out: float | None = None) -> RegressionResult:
    """Compare the two arms of an interleaved A/B run: sample i of each arm was taken
    back to back, so the device's slow state (clocks, temperature, neighbours) is
    common to the pair and cancels in d_i = log(candidate_i) - log(baseline_i).

    Estimate: exp(median d); interval: the order-statistic interval of d's median
    at d's effective sample size (its own autocorrelation). The strongest design
    for a gate, and cheap: no second boot, no history.
    """
    from harness.stats import quantile_ci_order_stat, variance_inflation

    a = np.asarray(baseline_samples_ms, dtype=float)
    b = np.asarray(candidate_samples_ms, dtype=float)
    n = min(a.size, b.size)
    if n < 2 or np.any(a[:n] <= 0) or np.any(b[:n] <= 0):
        raise ValueError(f"need at least 2 positive pairs (baseline {a.size}, candidate "
                         f"{b.size})")
    d = np.log(b[:n]) - np.log(a[:n])
    n_eff = variance_inflation(d)["effective_sample_size"]
    lo_d, hi_d = quantile_ci_order_stat(d, 0.5, confidence, n_eff)
    ratio = math.exp(float(np.median(d)))
    lo = math.exp(lo_d) if lo_d is not None else 0.0
    hi = math.exp(hi_d) if hi_d is not None else math.inf
    # sign test on the pairs, its variance inflated like the interval's
    infl = n / n_eff if n_eff > 0 else math.inf
    z = abs(float(np.count_nonzero(d > 0)) - n / 2) / math.sqrt(n / 4 * infl)
    p = 2 * (1 - NormalDist().cdf(z))
    _, mw_p = mann_whitney_u(b[:n], a[:n])
    verdict, reason = _decide(ratio, lo, hi, min_effect, rule_out)
    return RegressionResult(verdict, ratio, (lo, hi), p, min_effect,
                            confidence, int(n), int(n), float(np.median(a[:n])),
                            float(np.median(b[:n])),
                            reason + f"; interleaved A/B, {n} pairs ({n_eff:.0f} effective)",
                            mann_whitney_p=mw_p)


def _pct(ratio: float) -> str:
    return f"{(ratio - 1) * 100:+.2f} %"


def _log_median_and_var(samples: np.ndarray, rng: np.random.Generator,
                        resamples: int) -> tuple[float, float]:
    draws = np.log(bootstrap_median_draws(samples, resamples, rng))
    return float(np.log(np.median(samples))), float(draws.var(ddof=1))


def compare_runs(baseline_runs: Sequence[Sequence[float]],
                 candidate_runs: Sequence[Sequence[float]], min_effect: float = 0.03,
                 confidence: float = 0.95, run_sd: float | None = DEFAULT_RUN_SD,
                 rule_out: float | None = None, resamples: int = 2000,
                 seed: int = 0, period: int = 1, same_session: bool = False
                 ) -> RegressionResult:
    """Compare sides made of one or more boots each, counting boot-to-boot variation.

    Each element of a side is one boot's samples (pool records of one boot
    before calling: gate.boot_runs). Statistic: the mean of the boots' log
    medians per side; ratio = exp(difference). Variance of a side's mean =
    sum(within-boot variances x IF) / k**2 + tau**2 / k. tau**2 is estimated
    from the boot medians of every side with >= 2 boots (pooled, method of
    moments) and never below run_sd**2 (None = 0). The interval uses Student
    t with the pooled degrees of freedom when the estimate is what counts
    (three boots are not a normal distribution's worth of evidence).
    """
    from harness.stats import t_quantile

    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence {confidence} must be between 0 and 1")
    if min_effect < 0:
        raise ValueError(f"min_effect {min_effect} must be >= 0")
    if not baseline_runs or not candidate_runs:
        raise ValueError("need at least one run on each side")
    rng = np.random.default_rng(seed)
    sides = [_side(runs, rng, resamples, period) for runs in (baseline_runs, candidate_runs)]
    ss, df, within = 0.0, 0, []
    for side in sides:
        m = np.array([s[0] for s in side])
        within += [s[1] for s in side]
        if m.size >= 2:
            ss += float(((m - m.mean()) ** 2).sum())
            df += m.size - 1
    floor2 = (run_sd or 0.0) ** 2
    tau2_est = max(0.0, ss / df - float(np.mean(within))) if df else 0.0
    tau2 = max(tau2_est, floor2)
    means, var = [], 0.0
    for side in sides:
        k = len(side)
        means.append(float(np.mean([s[0] for s in side])))
        var += sum(s[1] for s in side) / k**2 + tau2 / k
    diff = means[1] - means[0]
    se = math.sqrt(var)
    alpha = 1.0 - confidence
    use_t = df > 0 and tau2_est >= floor2
    q = t_quantile(1 - alpha / 2, df) if use_t else float(NormalDist().inv_cdf(1 - alpha / 2))
    lo, hi = math.exp(diff - q * se), math.exp(diff + q * se)
    z = abs(diff) / se if se > 0 else math.inf
    p = _t_two_sided_p(z, df) if use_t else 2 * (1 - NormalDist().cdf(z))
    ratio = math.exp(diff)
    base_all = np.concatenate([s[2] for s in sides[0]])
    cand_all = np.concatenate([s[2] for s in sides[1]])
    _, mw_p = mann_whitney_u(cand_all, base_all)
    verdict, reason = _decide(ratio, lo, hi, min_effect, rule_out)
    if same_session:
        how = "; one session (no run-to-run term)"
    else:
        how = (f"; {len(baseline_runs)} baseline / {len(candidate_runs)} candidate boot(s), "
               f"run-to-run sd {math.sqrt(tau2) * 100:.2f} %"
               + (" (estimated)" if use_t else f" (floor {math.sqrt(floor2) * 100:g} %)"
                  if floor2 else " (not measured)"))
    return RegressionResult(verdict, ratio, (lo, hi), p, min_effect, confidence,
                            int(base_all.size), int(cand_all.size),
                            float(np.median(base_all)), float(np.median(cand_all)),
                            reason + how, mann_whitney_p=mw_p,
                            boots_baseline=len(baseline_runs),
                            boots_candidate=len(candidate_runs),
                            run_sd=math.sqrt(tau2))


def _t_two_sided_p(t: float, df: int) -> float:
    from harness.stats import t_cdf

    if not math.isfinite(t):
        return 0.0
    return max(0.0, 2.0 * (1.0 - t_cdf(abs(t), df)))


def _decide(ratio: float, lo: float, hi: float, min_effect: float,
            rule_out: float | None) -> tuple[str, str]:
    """The verdict rule (module docstring): the interval, and the size of the change."""
    margin = 2.0 * min_effect if rule_out is None else rule_out
    if margin < min_effect:
        raise ValueError(f"rule_out {margin} must be >= min_effect {min_effect}")
    up, down = 1.0 + min_effect, 1.0 / (1.0 + min_effect)
    eq_up, eq_down = 1.0 + margin, 1.0 / (1.0 + margin)
    pct = f"{(ratio - 1) * 100:+.2f} %"
    band = f"+/-{min_effect * 100:g} %"
    if lo > 1.0 and ratio >= up:
        return "regressed", f"median {pct} (CI {_pct(lo)}..{_pct(hi)}) beyond {band}"
    if hi < 1.0 and ratio <= down:
        return "improved", f"median {pct} (CI {_pct(lo)}..{_pct(hi)}) beyond {band}"
    if lo >= eq_down and hi <= eq_up:
        return "unchanged", (f"median {pct} (CI {_pct(lo)}..{_pct(hi)}): no change beyond "
                             f"{band} shown, and one beyond +/-{margin * 100:g} % ruled out")
    return "inconclusive", (f"median {pct}, CI {_pct(lo)}..{_pct(hi)} cannot rule out a "
                            f"change beyond +/-{margin * 100:g} %: collect more samples or "
                            "boots on both sides, or run an interleaved A/B")
