"""What the budgets read out of a record, and the verdict at the interval's
edges: the survivors of the mutation run of harness/budgets.py
(tests/benchmarks/mutation.py --only budgets) each named here by what they
broke — a size in the wrong unit, a percentile read from the wrong field, an
energy interval lost, an unbounded end taken as bounded, a later budget
dropped after an emulated one."""

from __future__ import annotations

import json

import pytest

from harness.budgets import METRICS, MIB, Measurement, _ci, decide, evaluate, record_measurements


def full_record() -> dict:
    return {
        "latency_ms": {"p50_ms": 1.5, "p50_ci_ms": [1.4, 1.6],
                       "p90_ms": 2.5, "p90_ci_ms": [2.4, 2.6],
                       "p95_ms": 3.5, "p95_ci_ms": [3.4, 3.6],
                       "p99_ms": 4.5, "p99_ci_ms": [4.4, None],
                       "mean_ms": 1.75, "mean_ci_ms": [1.7, 1.8]},
        "cold_start_ms": {"total_ms": 120.0},
        "memory": {"peak_rss_mb": 80.0},
        "artifact": {"size_bytes": 3 * MIB + MIB // 2},
        "parity": {"max_abs_diff": 0.01, "top1_agreement": 0.75},
        "energy": {"energy_per_inference_mj": 50.0, "energy_per_inference_ci_mj": [45.0, 56.0]},
        "op_placement": {"cpu_fallback_ops": 2},
        "generation": {"prefill": {"ttft_ms": {"p95_ms": 9.0, "p95_ci_ms": [8.0, 10.0]}},
                       "decode": {"token_latency_ms": {"p95_ms": 0.5, "p95_ci_ms": [0.4, 0.6]},
                                  "tokens_per_s": {"throughput_per_s": 2000.0,
                                                   "throughput_ci_per_s": [1900.0, 2100.0],
                                                   "median_per_s": 2100.0,
                                                   "median_ci_per_s": [2000.0, 2200.0]}}},
    }


def test_every_metric_from_its_own_field():
    m = record_measurements(full_record())
    assert m["latency_p50_ms"] == Measurement(1.5, 1.4, 1.6)
    assert m["latency_p90_ms"] == Measurement(2.5, 2.4, 2.6)
    assert m["latency_p95_ms"] == Measurement(3.5, 3.4, 3.6)
    assert m["latency_p99_ms"] == Measurement(4.5, 4.4, None)  # unbounded above stays so
    assert m["latency_mean_ms"] == Measurement(1.75, 1.7, 1.8)
    assert m["cold_start_ms"] == Measurement.exact(120.0)
    assert m["peak_rss_mb"] == Measurement.exact(80.0)
    assert m["model_size_mb"] == Measurement.exact(3.5)  # bytes / MiB, not any other op
    assert m["parity_max_abs_diff"] == Measurement.exact(0.01)
    assert m["top1_agreement"] == Measurement.exact(0.75)
    assert m["energy_per_inference_mj"] == Measurement(50.0, 45.0, 56.0)
    assert m["cpu_fallback_ops"] == Measurement.exact(2.0)
    assert m["ttft_p95_ms"] == Measurement(9.0, 8.0, 10.0)
    assert m["decode_token_p95_ms"] == Measurement(0.5, 0.4, 0.6)
    assert m["decode_tokens_per_s"] == Measurement(2000.0, 1900.0, 2100.0)
    assert set(m) <= set(METRICS)


def test_older_record_rates_from_the_median():
    rec = full_record()
    del rec["generation"]["decode"]["tokens_per_s"]["throughput_per_s"]
    assert record_measurements(rec)["decode_tokens_per_s"] == Measurement(2100.0, 2000.0, 2200.0)


def test_energy_without_interval_is_exact_and_sections_may_be_null():
    rec = full_record()
    rec["energy"] = {"energy_per_inference_mj": 50.0}
    assert record_measurements(rec)["energy_per_inference_mj"] == Measurement.exact(50.0)
    rec = {"latency_ms": {"p95_ms": 1.0}, "cold_start_ms": None, "artifact": None,
           "parity": None, "energy": None, "generation": None, "memory": None}
    m = record_measurements(rec)  # a failed run's record: nothing measured, nothing invented
    assert "latency_mean_ms" not in m and "ttft_p95_ms" not in m
    for name in ("cold_start_ms", "model_size_mb", "parity_max_abs_diff", "top1_agreement",
                 "energy_per_inference_mj", "cpu_fallback_ops", "peak_rss_mb"):
        assert m[name].value is None, name
    assert m["energy_per_inference_mj"] == Measurement(None, None, None)


@pytest.mark.parametrize("pair", [[1.0], [1.0, 2.0, 3.0], None, "1,2"])
def test_malformed_interval_is_absent(pair):
    assert _ci(pair) == (None, None)


def test_interval_touching_the_limit_is_not_a_fail():
    p95 = METRICS["latency_p95_ms"]
    assert decide(p95, 10.0, Measurement(11.0, 10.0, 12.0))[0] == "inconclusive"
    assert decide(p95, 10.0, Measurement(11.0, 10.5, 12.0))[0] == "fail"
    assert decide(p95, 10.0, Measurement(10.0, 9.0, 10.0))[0] == "pass"


def test_unbounded_lower_end_never_fails_a_maximum():
    p95 = METRICS["latency_p95_ms"]
    verdict, reason = decide(p95, 10.0, Measurement(12.0, None, 13.0))
    assert verdict == "inconclusive" and "lower side" in reason, reason


def test_a_recorded_emulated_timing_keeps_the_later_budgets():
    budgets = {"latency_p95_ms": 10.0, "peak_rss_mb": 100.0, "top1_agreement": 1.0}
    meas = {"latency_p95_ms": Measurement(50.0, 40.0, 60.0),
            "peak_rss_mb": Measurement.exact(200.0), "top1_agreement": Measurement.exact(1.0)}
    out = evaluate(budgets, meas, {}, emulated=True)
    assert [(v.metric, v.verdict) for v in out] == [
        ("latency_p95_ms", "recorded"), ("peak_rss_mb", "fail"), ("top1_agreement", "pass")]


def test_command_line_limit_beats_the_emulator_budget_even_from_json():
    # sources read back from a record are fresh strings, not the interned literal
    sources = json.loads('{"latency_p95_ms": "cli"}')
    meas = {"latency_p95_ms": Measurement(50.0, 40.0, 60.0)}
    out = evaluate({"latency_p95_ms": 100.0}, meas, sources, emulated=True,
                   emulator_budgets={"latency_p95_ms": 20.0})
    assert (out[0].limit, out[0].source, out[0].verdict) == (100.0, "cli", "pass")
    out = evaluate({"latency_p95_ms": 100.0}, meas, json.loads('{"latency_p95_ms": "profile"}'),
                   emulated=True, emulator_budgets={"latency_p95_ms": 20.0})
    assert (out[0].limit, out[0].source, out[0].verdict) == (20.0, "emulator", "fail")
    out = evaluate({"latency_p95_ms": 100.0}, meas, sources, emulated=True)
    assert (out[0].limit, out[0].source, out[0].verdict) == (100.0, "cli", "pass")


def test_unstable_margin_on_a_minimum():
    """decode_tokens_per_s >= 20 from an unstable run passes only with its lower end
    at or above 20 × 1.5 = 30: the margin of a minimum lies above the limit."""
    budgets = {"decode_tokens_per_s": 20.0}

    def verdict(lo: float) -> tuple[str, str]:
        m = {"decode_tokens_per_s": Measurement(40.0, lo, 50.0)}
        v = evaluate(budgets, m, {}, unstable=True)[0]
        return v.verdict, v.reason

    assert verdict(31.0)[0] == "pass" and "within 30 tokens/s" in verdict(31.0)[1]
    assert verdict(30.0)[0] == "pass"  # the margin's edge is inside
    assert verdict(29.0)[0] == "inconclusive" and "needs the interval within 30" in verdict(29.0)[1]
    assert evaluate(budgets, {"decode_tokens_per_s": Measurement(40.0, 21.0, 50.0)}, {})[0] \
        .verdict == "pass"  # a stable run needs no margin


def test_unstable_margin_on_a_maximum_and_a_fail_stays_a_fail():
    budgets = {"latency_p95_ms": 25.0}  # margin: the upper end within 12.5 ms

    def verdict(m: Measurement) -> str:
        return evaluate(budgets, {"latency_p95_ms": m}, {}, unstable=True)[0].verdict

    assert verdict(Measurement(10.0, 9.0, 12.0)) == "pass"
    assert verdict(Measurement(10.0, 9.0, 12.5)) == "pass"
    assert verdict(Measurement(10.0, 9.0, 13.0)) == "inconclusive"
    assert verdict(Measurement(30.0, 26.0, 34.0)) == "fail"  # never softened to inconclusive


def test_an_inapplicable_budget_keeps_the_later_ones():
    budgets = {"ttft_p95_ms": 50.0, "peak_rss_mb": 100.0}
    meas = {"peak_rss_mb": Measurement.exact(200.0)}
    out = evaluate(budgets, meas, {}, inapplicable={"ttft_p95_ms": "no prefill graph"})
    assert [(v.metric, v.verdict, v.reason) for v in out] == [
        ("ttft_p95_ms", "recorded", "no prefill graph"), ("peak_rss_mb", "fail", "")]
