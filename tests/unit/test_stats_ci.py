"""harness.stats: summary keys, bootstrap CI coverage, order-statistic CI, early stopping."""

from __future__ import annotations

import numpy as np
import pytest

from harness.stats import (
    look_schedule,
    min_decisive_count,
    quantile_ci_order_stat,
    sequential_check,
    summarize,
)


def test_summarize_keeps_its_keys_and_orders_them():
    x = np.random.default_rng(0).lognormal(3.0, 0.2, 400)
    s = summarize(x)
    for q in (50, 90, 95, 99):
        lo, hi = s[f"p{q}_ci_ms"]
        assert lo <= s[f"p{q}_ms"] <= hi
    assert s["p50_ms"] < s["p90_ms"] < s["p95_ms"] < s["p99_ms"]
    assert s["count"] == 400 and s["ci_method"] == "bootstrap-percentile"
    assert s["min_ms"] <= s["mean_ci_ms"][0] < s["mean_ci_ms"][1] <= s["max_ms"]
    assert s == summarize(x)  # seeded: same samples, same interval


def test_bootstrap_p95_ci_covers_the_true_percentile_about_95_percent():
    """Seeded coverage check on a known distribution (log-normal, sigma 0.25)."""
    sigma, n, trials = 0.25, 300, 200
    true_p95 = float(np.exp(sigma * 1.6448536269514722))
    rng = np.random.default_rng(7)
    covered = 0
    for t in range(trials):
        lo, hi = summarize(rng.lognormal(0.0, sigma, n), seed=t)["p95_ci_ms"]
        covered += lo <= true_p95 <= hi
    assert 0.88 <= covered / trials <= 0.99, covered / trials


def test_order_statistic_ci_coverage_and_too_few_samples():
    rng = np.random.default_rng(3)
    true_p90 = float(np.exp(0.3 * 1.2815515655446004))
    hits = 0
    for _ in range(300):
        ci = quantile_ci_order_stat(rng.lognormal(0, 0.3, 200), 0.90, 0.95)
        assert ci is not None
        hits += ci[0] <= true_p90 <= ci[1]
    assert hits / 300 >= 0.93  # distribution-free: at least the nominal level
    # 20 samples cannot bound p95 from above at 95 %: the honest answer is None
    assert quantile_ci_order_stat(rng.random(20), 0.95, 0.95) is None
    with pytest.raises(ValueError):
        quantile_ci_order_stat([1.0, 2.0], 1.0)


def test_sequential_check_stops_only_when_certain():
    rng = np.random.default_rng(5)
    clear = rng.lognormal(np.log(20.0), 0.1, 150)  # p95 ~ 23.5 ms against a 100 ms limit
    d = sequential_check(clear, 100.0)
    assert d.stop and d.verdict == "pass" and d.ci_ms[1] <= 100.0
    bad = rng.lognormal(np.log(150.0), 0.1, 150)
    d = sequential_check(bad, 100.0)
    assert d.stop and d.verdict == "fail" and d.ci_ms[0] > 100.0
    near = rng.lognormal(np.log(100.0 / 1.18), 0.1, 150)  # p95 right at the limit
    d = sequential_check(near, 100.0)
    assert not d.stop and d.verdict is None and "straddles" in d.reason
    assert not sequential_check(clear[:10], 100.0).stop  # below min_count
    # "min" direction (higher is better) flips the logic
    assert sequential_check(clear, 10.0, percentile=50, direction="min").verdict == "pass"


def test_sequential_wrong_verdict_rate_is_bounded():
    """Across all looks, a true p95 just under the limit must rarely be declared a fail."""
    rng = np.random.default_rng(11)
    looks = look_schedule(min_decisive_count(), 1000, 10)
    assert looks[0] == min_decisive_count() == 104 and looks[-1] == 1000
    limit = float(np.exp(0.1 * 1.6448536269514722)) * 1.02  # true p95 2 % under the limit
    wrong = 0
    for _ in range(200):
        x = rng.lognormal(0.0, 0.1, 1000)
        for n in looks:
            d = sequential_check(x[:n], limit, max_looks=len(looks))
            if d.stop:
                wrong += d.verdict == "fail"
                break
    assert wrong / 200 <= 0.05


def test_look_schedule_rejects_nonsense():
    with pytest.raises(ValueError):
        look_schedule(100, 50)
    assert look_schedule(50, 50) == [50]
