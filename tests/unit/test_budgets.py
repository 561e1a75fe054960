"""Verdict logic: the interval decides, not the point estimate."""

from __future__ import annotations

import pytest

from harness.budgets import (
    METRICS,
    Measurement,
    Verdict,
    decide,
    evaluate,
    overall,
    parse_budget_override,
)
from harness.errors import ConfigError, UnknownMetricError

P95 = METRICS["latency_p95_ms"]
TOP1 = METRICS["top1_agreement"]


@pytest.mark.parametrize(("ci", "expected"), [
    ((8.0, 9.0), "pass"),      # whole interval under the limit
    ((10.5, 12.0), "fail"),    # whole interval over
    ((9.5, 10.5), "inconclusive"),
    ((9.0, 10.0), "pass"),     # at the limit counts as within
])
def test_max_metric_verdicts(ci, expected):
    verdict, _ = decide(P95, 10.0, Measurement((ci[0] + ci[1]) / 2, *ci))
    assert verdict == expected


def test_min_metric_is_mirrored():
    assert decide(TOP1, 1.0, Measurement.exact(1.0))[0] == "pass"
    assert decide(TOP1, 1.0, Measurement.exact(0.75))[0] == "fail"


@pytest.mark.parametrize(("ci", "expected"), [
    ((0.996, 0.999), "pass"),       # the whole interval at or over the 0.995 floor
    ((0.990, 0.994), "fail"),       # the whole interval under it
    ((0.993, 0.999), "inconclusive"),  # straddles: the LOWER end decides a pass
    ((0.995, 0.998), "pass"),       # at the floor counts as within
    ((0.990, 0.995), "inconclusive"),  # the upper end touching the floor is not a fail
])
def test_min_metric_uses_the_lower_end_for_a_pass_and_the_upper_for_a_fail(ci, expected):
    """A "min" budget (top1_agreement, soon decode_tokens_per_s) with real intervals on
    both sides of the limit: using the wrong end flips these."""
    verdict, _ = decide(TOP1, 0.995, Measurement((ci[0] + ci[1]) / 2, *ci))
    assert verdict == expected


def test_unbounded_end_never_passes_and_names_the_setting():
    v, reason = decide(P95, 10.0, Measurement(5.0, 4.0, None), stopped_by="max_count")
    assert v == "inconclusive" and "upper side" in reason and "max_count" in reason
    assert decide(P95, 3.0, Measurement(5.0, 4.0, None))[0] == "fail"  # lower end over
    v, reason = decide(P95, 10.0, Measurement(9.9, 9.0, 11.0), stopped_by="max_duration")
    assert v == "inconclusive" and "max_duration_s" in reason
    assert "min_count" in decide(P95, 10.0, Measurement(9.9, 9.0, 11.0))[1]


def test_unstable_run_passes_only_with_the_margin():
    from harness.budgets import UNSTABLE_MARGIN

    m = {"latency_p95_ms": Measurement(6.0, 5.0, 7.0), "peak_rss_mb": Measurement.exact(90.0)}
    budgets = {"latency_p95_ms": 10.0, "peak_rss_mb": 100.0}
    by = {x.metric: x for x in evaluate(budgets, m, {}, unstable=True)}
    assert by["latency_p95_ms"].verdict == "inconclusive"  # 7 > 10 x (1 - 0.5)
    assert "unstable run" in by["latency_p95_ms"].reason
    assert by["peak_rss_mb"].verdict == "pass"  # not a timing metric: no margin
    m["latency_p95_ms"] = Measurement(4.0, 3.0, 10.0 * (1 - UNSTABLE_MARGIN))
    by = {x.metric: x for x in evaluate(budgets, m, {}, unstable=True)}
    assert by["latency_p95_ms"].verdict == "pass" and "margin" in by["latency_p95_ms"].reason
    assert {x.verdict for x in evaluate(budgets, m, {}, unstable=False)} == {"pass"}


def test_missing_measurement_is_inconclusive_not_pass():
    verdict, reason = decide(METRICS["energy_per_inference_mj"], 5.0, Measurement(None))
    assert verdict == "inconclusive" and "not measured" in reason


def test_emulated_timing_is_recorded_not_gated():
    m = {"latency_p95_ms": Measurement(500.0, 450.0, 550.0),
         "peak_rss_mb": Measurement.exact(90.0)}
    v = evaluate({"latency_p95_ms": 100.0, "peak_rss_mb": 80.0}, m, {}, emulated=True)
    by = {x.metric: x.verdict for x in v}
    assert by == {"latency_p95_ms": "recorded", "peak_rss_mb": "fail"}
    assert overall(v) == "fail"
    v = evaluate({"latency_p95_ms": 100.0}, m, {}, emulated=True,
                 emulator_budgets={"latency_p95_ms": 1000.0})
    assert [(x.verdict, x.source) for x in v] == [("pass", "emulator")]


def test_cli_override_parsing():
    assert parse_budget_override("latency_p95_ms=40") == ("latency_p95_ms", 40.0)
    with pytest.raises(UnknownMetricError, match="known metrics: .*latency_p95_ms"):
        parse_budget_override("latency_p96_ms=40")
    with pytest.raises(ConfigError, match="expected METRIC=VALUE"):
        parse_budget_override("latency_p95_ms")
    with pytest.raises(ConfigError, match="not a number"):
        parse_budget_override("latency_p95_ms=fast")


def test_failure_message_names_everything():
    v = Verdict("latency_p95_ms", "ms", "max", 0.001, 2.5, 2.4, 2.6, "fail", "cli", "")
    msg = v.message("pi4", "edge-int8")
    for part in ("pi4", "edge-int8", "latency_p95_ms", "2.5", "0.001", "[2.4, 2.6]"):
        assert part in msg


def test_overall_precedence():
    mk = lambda verdict: {"verdict": verdict}  # noqa: E731
    assert overall([mk("pass"), mk("inconclusive"), mk("fail")]) == "fail"
    assert overall([mk("pass"), mk("inconclusive")]) == "inconclusive"
    assert overall([mk("pass"), mk("recorded")]) == "pass"


def test_generation_budgets_are_recorded_not_gated_for_a_format_without_graphs():
    from harness.budgets import not_applicable

    budgets = {"decode_tokens_per_s": 20.0, "peak_rss_mb": 100.0}
    m = {"peak_rss_mb": Measurement.exact(90.0)}
    v = {x.metric: x for x in evaluate(budgets, m, {}, inapplicable=not_applicable("tflite"))}
    assert v["decode_tokens_per_s"].verdict == "recorded" and "tflite" in \
        v["decode_tokens_per_s"].reason
    assert overall(v.values()) == "pass"
    # an ONNX artifact has the graphs: a missing measurement there is inconclusive
    v = {x.metric: x for x in evaluate(budgets, m, {}, inapplicable=not_applicable("onnx"))}
    assert v["decode_tokens_per_s"].verdict == "inconclusive"
