"""The agent's sequential stopping rule, pinned exactly (issue 11; mutation target
"agent-stopping" in tests/benchmarks/mutation.py).

test_stats_ci.py shows the boundaries keep their error rates; these tests pin
what an error-rate check cannot see: that the boundaries are the *exact* ones
(a slip in the support bookkeeping only makes them more conservative, so every
alpha check still holds), that the timed loop judges milliseconds, merges the
planned looks a late start passed, times each A/B arm as a duration, and says
why it stopped.
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import pytest

from harness.stats import agent_module

AGENT = agent_module()


def _pmf(n: int, p: float) -> np.ndarray:
    k = np.arange(n + 1)
    lg = np.array([math.lgamma(i + 1) for i in range(n + 1)])
    return np.exp(lg[n] - lg[k] - lg[n - k] + k * math.log(p) + (n - k) * math.log1p(-p))


def _reference_boundaries(looks: list[int], pi0: float, alpha: float,
                          total: int | None = None, spend_at: list[int] | None = None
                          ) -> tuple[list[int], list[int]]:
    """The same spending rule on the FULL count distribution (0..n at every look, no
    support window, no offset): what exceedance_boundaries must equal."""
    total = len(looks) if total is None else total
    dist = np.array([1.0])
    prev = 0
    spent_pass = spent_fail = 0.0
    passes, fails = [], []
    for j, m in enumerate(looks, 1):
        if m > prev:
            dist = np.convolve(dist, _pmf(m - prev, pi0))
        prev = m
        budget = alpha * ((spend_at[j - 1] + 1) if spend_at else j) / total + 1e-12
        a, cum = -1, 0.0
        for k in range(m + 1):
            cum += dist[k]
            if spent_pass + cum > budget:
                break
            a = k
        b, cum = m + 1, 0.0
        for k in range(m, -1, -1):
            cum += dist[k]
            if spent_fail + cum > budget:
                break
            b = k
        if a >= 0:
            spent_pass += float(dist[:a + 1].sum())
            dist[:a + 1] = 0.0
        if b <= m:
            spent_fail += float(dist[b:].sum())
            dist[b:] = 0.0
        passes.append(a)
        fails.append(b)
    return passes, fails


@pytest.mark.parametrize("looks, pi0, alpha, total, spend_at", [
    # p95, ten looks to 2000: the window cuts the upper tail of the count
    ([117, 300, 500, 800, 1100, 1400, 1700, 2000], 0.05, 0.025, None, None),
    # p50 to 5000 samples: the window cuts the lower tail too (offset > 0)
    ([500, 2000, 5000], 0.5, 0.05, None, None),
    # first looks too small for any verdict (a = -1, b = n + 1), a repeated look
    ([1, 2, 50, 50, 300], 0.2, 0.05, None, None),
    # p99, late looks that spend the error of the planned looks they cover
    ([150, 400, 1200], 0.01, 0.05, 10, [0, 3, 7]),
])
def test_boundaries_are_exactly_the_full_distributions(looks, pi0, alpha, total, spend_at):
    got = AGENT.exceedance_boundaries(np, looks, pi0, alpha, total, spend_at)
    want = _reference_boundaries(looks, pi0, alpha, total, spend_at)
    assert (list(got[0]), list(got[1])) == want


def test_impossible_verdicts_are_marked_as_such():
    passes, fails = AGENT.exceedance_boundaries(np, [1, 2], 0.05, 0.025)
    # one sample decides nothing (b = n + 1); two, both over the limit, are a fail
    # (P = 0.05² = 0.25 % <= the 2.5 % spent by then), and no count passes that soon
    assert passes == [-1, -1] and fails == [2, 2]


@pytest.mark.parametrize("pi0, alpha", [(0.05, 0.0), (0.05, -0.1), (0.05, 1.0), (0.0, 0.025),
                                       (-0.05, 0.025), (1.0, 0.025)])
def test_degenerate_error_rates_are_refused(pi0, alpha):
    with pytest.raises(ValueError, match="need 0 < pi0 < 1 and 0 < alpha < 1"):
        AGENT.exceedance_boundaries(np, [100], pi0, alpha)


def _rule(limit_ms: float, looks: list[int], alpha: float = 0.05) -> dict:
    return {"looks": looks, "alpha": alpha,
            "budgets": [{"metric": "latency_p95_ms", "quantile": 0.95, "limit_ms": limit_ms}]}


def test_a_look_that_cannot_fail_says_so_and_one_that_can_gives_its_count():
    rule = _rule(100.0, [1, 400])
    d = AGENT.sequential_decision(np, [5.0], rule, 0)
    b = d["budgets"]["latency_p95_ms"]
    assert not d["decided"] and b["pass_if_at_most"] is None and b["fail_if_at_least"] is None
    x = np.random.default_rng(3).lognormal(math.log(20.0), 0.1, 400)
    d = AGENT.sequential_decision(np, x, rule, 1, [(1, 0)])
    b = d["budgets"]["latency_p95_ms"]
    f = d["variance_inflation"]
    assert b["fail_if_at_least"] is not None and 0 < b["fail_if_at_least"] <= 400 * f
    assert b["pass_if_at_most"] is not None and b["pass_if_at_most"] >= 0


def test_a_fail_boundary_at_the_last_sample_is_still_a_boundary():
    """Two samples, both over the limit: the fail boundary is K >= 2 = the count
    itself (possible, so reported), and the verdict is fail."""
    d = AGENT.sequential_decision(np, [200.0, 200.0], _rule(100.0, [1, 2]), 1, [(1, 0)])
    b = d["budgets"]["latency_p95_ms"]
    assert b["verdict"] == "fail"
    assert b["fail_if_at_least"] == pytest.approx(2 * d["variance_inflation"])


def _args(**kw) -> argparse.Namespace:
    base = {"seed": 0, "min_duration_s": 0.0, "max_duration_s": 30.0, "min_count": 1,
            "max_count": 1000}
    return argparse.Namespace(**{**base, **kw})


def _noop() -> None:
    return None


def test_the_loop_judges_milliseconds_and_stops_on_a_decided_pass():
    """~1 µs calls against a 50 ms limit: a pass at the first look (a loop that
    judged nanoseconds, or anything but ms, would see every sample over 50)."""
    out = AGENT.timed_loop(np, [[_noop]], _args(min_count=300, max_count=600),
                           _rule(50.0, [300, 600]), None)
    assert out["stopping"]["stopped_by"] == "decided", out["stopping"]
    (look,) = out["stopping"]["looks"]
    assert look["count"] == 300 and look["budgets"]["latency_p95_ms"]["verdict"] == "pass"
    assert out["stopping"]["reason"] == "every gated budget was decided at look 0 (300 samples)"


@pytest.mark.parametrize("min_count, looks, index", [
    (35, [10, 20, 30, 40, 1000], 2),  # past planned looks 10, 20, 30: index 2
    (30, [10, 20, 40, 50, 1000], 1),  # past 10 and 20 only: index 1
    (60, [10, 20, 30], 2),  # past every planned look: the last one
])
def test_a_late_first_look_covers_the_planned_looks_it_passed(min_count, looks, index):
    """min_count delays the first look past some planned looks: one look, at
    min_count samples, with the planned index of the last look it passed (not 0,
    not the last), timed in seconds since the window opened."""
    out = AGENT.timed_loop(np, [[_noop]], _args(min_count=min_count, max_count=60),
                           _rule(1e-9, looks), None)
    first = out["stopping"]["looks"][0]
    assert first["count"] == min_count and first["look"] == index, first
    assert out["run"]["gc_disabled"] is True  # the window ran with the collector off
    assert 0.0 < first["elapsed_s"] < 5.0  # a fraction of a second, in seconds


def test_caps_say_whether_a_budget_was_left_undecided():
    with_rule = AGENT.timed_loop(np, [[_noop]], _args(max_count=50), _rule(50.0, [10**6]),
                                 None)
    assert with_rule["stopping"]["stopped_by"] == "max_count"
    assert with_rule["stopping"]["reason"] == "reached max_count before every budget was decided"
    no_rule = AGENT.timed_loop(np, [[_noop]], _args(min_count=10**6, max_count=50), None, None)
    assert no_rule["stopping"]["reason"] == "reached max_count"


def test_each_ab_arm_is_timed_as_a_duration():
    out = AGENT.timed_loop(np, [[_noop], [_noop]], _args(min_count=40, max_count=40), None, None)
    a, b = out["arm_samples"]
    assert len(a) == len(b) == 40
    # durations of a no-op: well under 100 ms each, never a timestamp
    assert all(0 <= s < 100_000_000 for s in a + b), (max(a), max(b))
