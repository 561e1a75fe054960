"""harness.regression: exact fast bootstrap, Mann-Whitney, verdicts on synthetic samples."""

from __future__ import annotations

import numpy as np
import pytest

from harness.regression import bootstrap_median_draws, compare, mann_whitney_u


def lat(rng, n, median=40.0, sigma=0.08):
    return median * rng.lognormal(0.0, sigma, n)


@pytest.mark.parametrize("n", [41, 40])
def test_beta_bootstrap_matches_brute_force_resampling(n):
    rng = np.random.default_rng(n)
    x = lat(rng, n)
    fast = bootstrap_median_draws(x, 20000, np.random.default_rng(1))
    idx = np.random.default_rng(2).integers(0, n, (20000, n))
    brute = np.median(x[idx], axis=1)
    qs = [0.025, 0.25, 0.5, 0.75, 0.975]
    np.testing.assert_allclose(np.quantile(fast, qs), np.quantile(brute, qs), rtol=0.01)


def test_mann_whitney_known_values():
    # Fully separated samples: U = 0 for the lower one; symmetric p-value.
    u, p = mann_whitney_u([1, 2, 3, 4, 5], [6, 7, 8, 9, 10])
    assert u == 0.0 and p < 0.02
    u2, p2 = mann_whitney_u([6, 7, 8, 9, 10], [1, 2, 3, 4, 5])
    assert u2 == 25.0 and p2 == pytest.approx(p)
    _, p_same = mann_whitney_u([1, 2, 3, 3], [1, 2, 3, 3])  # ties everywhere
    assert p_same > 0.9


def test_mann_whitney_agrees_with_scipy_when_available():
    scipy_stats = pytest.importorskip("scipy.stats", reason="scipy not installed: "
                                      "cross-check skipped (the harness itself needs no scipy)")
    rng = np.random.default_rng(4)
    a, b = np.round(lat(rng, 80), 1), np.round(lat(rng, 90, 42.0), 1)
    u, p = mann_whitney_u(a, b)
    ref = scipy_stats.mannwhitneyu(a, b, alternative="two-sided", method="asymptotic")
    assert u == pytest.approx(ref.statistic) and p == pytest.approx(ref.pvalue, rel=1e-9)


def test_verdicts_on_synthetic_runs():
    rng = np.random.default_rng(9)
    base = lat(rng, 400)
    assert compare(base, lat(rng, 400, 44.0)).verdict == "regressed"  # +10 %
    assert compare(base, lat(rng, 400, 36.0)).verdict == "improved"  # -10 %
    same = compare(base, lat(rng, 400))
    assert same.verdict == "unchanged" and same.ci[0] < 1.0 < same.ci[1] or \
        same.verdict == "unchanged"
    # 1.5 % slower: real but below the practical minimum -> never "regressed"
    small = compare(base, lat(rng, 400, 40.6))
    assert small.verdict in ("unchanged", "inconclusive")
    # 10 samples per side cannot rule out a 6 % change
    few = compare(lat(rng, 10), lat(rng, 10))
    assert few.verdict == "inconclusive" and "more samples" in few.reason


def test_result_fields_and_determinism():
    rng = np.random.default_rng(2)
    a, b = lat(rng, 200), lat(rng, 200, 46.0)
    r = compare(a, b)
    assert r == compare(a, b)
    d = r.as_dict()
    assert d["verdict"] == "regressed" and d["change_pct"] == pytest.approx(
        (r.median_candidate_ms / r.median_baseline_ms - 1) * 100)
    assert r.ci[0] < r.ratio_median < r.ci[1] and 0 <= r.p_value < 0.05


def test_bad_input_is_refused():
    with pytest.raises(ValueError):
        compare([1.0], [1.0, 2.0])
    with pytest.raises(ValueError):
        compare([1.0, -2.0], [1.0, 2.0])
    with pytest.raises(ValueError):
        compare([1.0, 2.0], [1.0, 2.0], min_effect=0.05, rule_out=0.01)


def test_compare_runs_sees_run_to_run_variation():
    from harness.regression import compare_runs

    rng = np.random.default_rng(21)
    shifts = [1.0, 1.03, 0.97, 1.02, 0.98]  # baseline nights differ by ~2.5 %
    base = [lat(rng, 300, 40.0 * s) for s in shifts]
    cand = [lat(rng, 300, 40.0 * 1.035)]
    naive = compare(base[0], cand[0])  # one night vs one run: cannot see the spread
    multi = compare_runs(base, cand)
    assert "(estimated)" in multi.reason
    assert multi.ci[1] - multi.ci[0] > 2 * (naive.ci[1] - naive.ci[0])
    assert multi.verdict != "regressed"  # +3.5 % is within the nights' own spread
    # a floor given by the user widens a single pair too
    given = compare_runs(base[:1], cand, run_sd=0.02)
    assert "(given)" in given.reason and given.ci[1] - given.ci[0] > naive.ci[1] - naive.ci[0]
    # a real 12 % regression still stands out of that noise
    assert compare_runs(base, [lat(rng, 300, 44.8) for _ in range(2)]).verdict == "regressed"


def test_t_quantile_against_known_values():
    from harness.stats import t_cdf, t_quantile

    assert t_quantile(0.975, 2) == pytest.approx(4.302653, abs=1e-5)
    assert t_quantile(0.995, 4) == pytest.approx(4.604095, abs=1e-5)
    assert t_quantile(0.025, 9) == pytest.approx(-2.262157, abs=1e-5)
    assert t_cdf(0.0, 3) == pytest.approx(0.5) and t_cdf(1.0, 1) == pytest.approx(0.75)
