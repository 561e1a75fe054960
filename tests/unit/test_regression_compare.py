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


def test_mann_whitney_exact_values_by_hand():
    """Worked by hand, no scipy: continuity AND tie corrections both show in the value."""
    import math

    # a = [1, 2, 3], b = [4, 5]: U_a = 0, mu = 3, var = 3*2/12 * (5 + 1) = 3 (no ties),
    # z = (|0 - 3| - 0.5) / sqrt(3)
    u, p = mann_whitney_u([1, 2, 3], [4, 5])
    assert u == 0.0
    assert p == pytest.approx(math.erfc((2.5 / math.sqrt(3)) / math.sqrt(2)), rel=1e-12)
    # without the continuity correction it would be erfc(3 / sqrt(3) / sqrt(2)): smaller
    assert p > math.erfc((3 / math.sqrt(3)) / math.sqrt(2)) + 0.05
    # a = [1, 2, 2], b = [2, 3]: the three 2s share rank 3, so R_a = 1 + 3 + 3 = 7 and
    # U_a = 7 - 3*4/2 = 1; tie term (3**3 - 3) / (5 * 4) = 1.2;
    # var = 3*2/12 * (6 - 1.2) = 2.4; z = (|1 - 3| - 0.5) / sqrt(2.4)
    u, p = mann_whitney_u([1, 2, 2], [2, 3])
    assert u == 1.0
    assert p == pytest.approx(math.erfc((1.5 / math.sqrt(2.4)) / math.sqrt(2)), rel=1e-12)
    # without the tie correction: var 3, a different p
    assert abs(p - math.erfc((1.5 / math.sqrt(3.0)) / math.sqrt(2))) > 0.02


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
    assert same.verdict == "unchanged" and same.ci[0] < 1.0 < same.ci[1]
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
    assert "(floor 2 %)" in given.reason and given.ci[1] - given.ci[0] > naive.ci[1] - naive.ci[0]
    # a real 12 % regression still stands out of that noise
    assert compare_runs(base, [lat(rng, 300, 44.8) for _ in range(2)]).verdict == "regressed"


def test_t_quantile_against_known_values():
    from harness.stats import t_cdf, t_quantile

    assert t_quantile(0.975, 2) == pytest.approx(4.302653, abs=1e-5)
    assert t_quantile(0.995, 4) == pytest.approx(4.604095, abs=1e-5)
    assert t_quantile(0.025, 9) == pytest.approx(-2.262157, abs=1e-5)
    assert t_cdf(0.0, 3) == pytest.approx(0.5) and t_cdf(1.0, 1) == pytest.approx(0.75)


def test_one_boot_per_side_always_carries_the_default_floor():
    """One baseline record against one candidate from another boot: the 1 % run-to-run
    floor per side is in the interval (half-width >= 1.96 x sqrt(2) x 1 %), however many
    samples the runs have; one session (compare) has no such term."""
    import math

    from harness.regression import DEFAULT_RUN_SD, compare_runs

    rng = np.random.default_rng(22)
    base, cand = lat(rng, 5000, sigma=0.03), lat(rng, 5000, 40.0 * 1.025, sigma=0.03)
    one_session = compare(base, cand)
    res = compare_runs([base], [cand])
    assert res.run_sd == DEFAULT_RUN_SD and "(floor 1 %)" in res.reason
    half = (math.log(res.ci[1]) - math.log(res.ci[0])) / 2
    assert half >= 1.96 * math.sqrt(2) * DEFAULT_RUN_SD
    assert one_session.ci[0] > 1.0 and res.ci[0] < 1.0  # 2.5 %: real in-session, not across


def test_autocorrelation_widens_the_interval():
    from tests.unit.test_stats_ci import ar1_lognormal

    rng = np.random.default_rng(23)
    iid = compare(lat(rng, 1000), lat(rng, 1000))
    dep = compare(ar1_lognormal(rng, 1000, 0.9, 0.08, 40.0),
                  ar1_lognormal(rng, 1000, 0.9, 0.08, 40.0))
    assert (dep.ci[1] - dep.ci[0]) > 3 * (iid.ci[1] - iid.ci[0])  # sqrt(19) ~ 4.4


def test_mann_whitney_is_reported_not_decisive():
    """1 % slower with 20 000 samples: Mann-Whitney is sure, the practical rule is not."""
    rng = np.random.default_rng(24)
    res = compare(lat(rng, 20000, sigma=0.02), lat(rng, 20000, 40.4, sigma=0.02))
    assert res.mann_whitney_p is not None and res.mann_whitney_p < 1e-6
    assert res.verdict == "unchanged"


def test_gate_pools_records_by_boot():
    from harness.gate import boot_runs

    recs = [{"latency_ms": {"samples_ms": [1.0, 2.0, 3.0]}, "environment": {"boot_id": b}}
            for b in ("a", "a", "b")]
    recs.append({"latency_ms": {"samples_ms": [4.0, 5.0]}, "environment": {}})
    runs = boot_runs(recs)
    assert sorted(len(r) for r in runs) == [2, 3, 6]  # boot a pooled, b, the unknown one


def test_interleaved_pairs_cancel_the_shared_slow_state():
    """One AR(1) series (rho 0.95: the device drifting) whose samples alternate between the
    arms: paired, the drift cancels and a 5 % regression is found; A vs A is unchanged."""
    from harness.regression import compare_paired
    from tests.unit.test_stats_ci import ar1_lognormal

    rng = np.random.default_rng(25)
    both = ar1_lognormal(rng, 4000, 0.95, 0.2, 40.0)
    base, cand = both[0::2], both[1::2] * 1.05
    res = compare_paired(base, cand)
    assert res.verdict == "regressed" and res.ci[0] > 1.0 and "interleaved A/B" in res.reason
    assert res.ratio_median == pytest.approx(1.05, abs=0.01)
    assert compare_paired(base, both[1::2]).verdict == "unchanged"
    # the unpaired test on the same samples cannot see past the drift
    assert compare(base, cand).verdict != "regressed"
    with pytest.raises(ValueError):
        compare_paired([1.0], [1.0])
