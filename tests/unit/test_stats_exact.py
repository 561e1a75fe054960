"""harness/stats.py on closed-form cases: values a coverage simulation cannot pin
(test_stats_ci.py checks error rates; a wrong t quantile or a wrong rank
stretch can still cover). Found by the sampled mutation run of the stats
target (docs/testing.md): these spots survived it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.stats import quantile_ranks, replay_stopping, summarize, t_cdf, t_quantile


@pytest.mark.parametrize("x", [-3.0, -1.0, -0.2, 0.0, 0.7, 2.5])
def test_t_cdf_matches_the_closed_forms_on_both_sides(x: float) -> None:
    # df = 1 is the Cauchy distribution, df = 2 has an algebraic CDF
    assert t_cdf(x, 1) == pytest.approx(0.5 + math.atan(x) / math.pi, abs=1e-6)
    assert t_cdf(x, 2) == pytest.approx(0.5 + x / (2 * math.sqrt(2 + x * x)), abs=1e-6)


@pytest.mark.parametrize("p, df, want", [(0.975, 2, 4.302652730), (0.975, 10, 2.228138852),
                                         (0.95, 4, 2.131846786), (0.025, 10, -2.228138852),
                                         (0.5, 7, 0.0)])
def test_t_quantile_matches_the_tables(p: float, df: float, want: float) -> None:
    assert t_quantile(p, df) == pytest.approx(want, abs=1e-6)


def test_dependent_samples_get_the_ranks_of_n_eff_stretched_to_n() -> None:
    """999 samples worth 99 independent ones: the median's band is the ranks 99
    samples give, scaled by (n + 1) / (n_eff + 1) = 10 (floor low, ceil high)."""
    lo99, hi99 = quantile_ranks(99, 0.5, 0.95)
    lo, hi = quantile_ranks(999, 0.5, 0.95, n_eff=99)
    assert (lo, hi) == (math.floor(lo99 * 10), math.ceil(hi99 * 10))
    assert quantile_ranks(999, 0.5, 0.95) != (lo, hi)  # wider than the iid band


def test_one_sample_has_no_spread() -> None:
    s = summarize([5.0])
    assert s["std_ms"] == 0.0 and s["mean_ms"] == 5.0 and s["count"] == 1


def test_replay_disagrees_with_a_device_that_stopped_before_the_decision() -> None:
    """The record claims a stop at the first look, but its samples decide only at
    the second: the replay must not agree (nor when the device ran on)."""
    from harness.stats import stop_rule

    rule, _ = stop_rule({"latency_p95_ms": 100.0}, 50, 2000)
    assert rule is not None
    looks = rule["looks"]
    clear = np.random.default_rng(6).lognormal(math.log(20.0), 0.1, 2000)
    stopping = {"rule": rule, "looks": [{"count": looks[0], "look": 0},
                                        {"count": looks[1], "look": 1}]}
    replay = replay_stopping(clear, stopping, looks[1])
    assert replay["decided_at_count"] == looks[1] and replay["agrees"]
    assert not replay_stopping(clear, stopping, looks[0])["agrees"]  # claimed too early
    assert not replay_stopping(clear, stopping, 2000)["agrees"]  # ran on


def test_the_mean_interval_is_students_on_the_effective_count() -> None:
    """iid normal samples: the mean's band is t(0.975, n_eff - 1) · s · √(IF / n)
    around the mean (≈ ±1.97 s / √n here), and cv is s / mean."""
    x = np.random.default_rng(11).normal(10.0, 1.0, 400)
    s = summarize(x)
    lo, hi = s["mean_ci_ms"]
    assert (lo + hi) / 2 == pytest.approx(float(x.mean()))
    want = t_quantile(0.975, s["effective_sample_size"] - 1) * s["std_ms"] * \
        math.sqrt(s["variance_inflation"] / 400)
    assert (hi - lo) / 2 == pytest.approx(want)
    assert 0.7 < (hi - lo) / 2 / (1.97 * float(x.std(ddof=1)) / 20) < 1.5
    assert s["cv"] == pytest.approx(float(x.std(ddof=1) / x.mean()))


def test_a_stretched_lowest_rank_can_stay_the_first() -> None:
    """p1 of 500 samples worth 400: the 400-sample band starts at rank 1, and the
    stretch by 501/401 keeps it there (floor(1.25) = 1)."""
    assert quantile_ranks(400, 0.01, 0.95)[0] == 1
    assert quantile_ranks(500, 0.01, 0.95, n_eff=400)[0] == 1
