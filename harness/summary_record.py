"""The record of a run whose runner kept summary statistics only, no raw samples.

LiteRT's benchmark_model (the second Android runner) times its loop into a
running count/min/max/mean/std and prints that; none of its flags give the
per-run times (its op profiling is per operator, averaged). So such a run's
record says what was measured and no more: ``latency_ms`` is null (its
schema demands raw samples and percentiles with intervals),
``latency_summary_ms`` carries the tool's summary, the validity checks that
need samples are reported as not done (so the run is not valid and cannot
pass), and budgets that need raw samples or our reference inputs are
inconclusive with that reason -- never a percentile guessed from a mean.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: budget metrics a summary-only run cannot decide, and why
NEEDS_RAW_SAMPLES = ("latency_p50_ms", "latency_p90_ms", "latency_p95_ms", "latency_p99_ms",
                     "latency_mean_ms", "energy_per_inference_mj")
NEEDS_REFERENCE_INPUTS = ("parity_max_abs_diff", "top1_agreement")


def is_summary_only(out: Mapping[str, Any]) -> bool:
    return not out.get("latency_samples_ns") and bool(out.get("latency_summary_us"))


def _ms(summary: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not summary:
        return None
    return {"count": int(summary["count"]), "mean_ms": summary["mean"] / 1000.0,
            "std_ms": summary["std"] / 1000.0, "min_ms": summary["min"] / 1000.0,
            "max_ms": summary["max"] / 1000.0}


def summary_fields(out: Mapping[str, Any], runner: str) -> dict[str, Any]:
    """The measurement fields of the record for a summary-only runner's output."""
    lat = _ms(out["latency_summary_us"])
    assert lat is not None
    warm = _ms(out.get("warmup_summary_us"))
    run = out.get("run") or {}
    cold = dict(out["cold_start"])
    cold["total_ms"] = cold["session_create_ms"] + cold["first_inference_ms"]
    peak_kb = out.get("peak_rss_kb")
    reason = (f"raw samples absent: {runner} prints summary statistics only (count/min/max/"
              "mean/std), so the minimums, warm-up drift and stability checks cannot run")
    return {
        "latency_ms": None,
        "latency_summary_ms": {
            **lat, "warmup": warm, "source": runner, "samples": None,
            "note": f"{runner}'s own summary of its timed loop; no raw samples, so no "
                    "percentiles and no confidence intervals"},
        "cold_start_ms": cold,
        "memory": {"peak_rss_mb": peak_kb / 1024 if peak_kb is not None else None,
                   "source": f"{runner} --report_peak_memory_footprint (periodic monitoring; "
                             "the tool calls it approximate)" if peak_kb is not None else None,
                   "footprint_mb": out.get("memory_footprint_mb")},
        "parity": None,
        "validity": {"valid": False, "reasons": [reason], "count": lat["count"],
                     "duration_s": run.get("duration_s"), "stopped_by": None},
        "stopping": {"rule": None, "stopped_by": None, "stopped_at_count": lat["count"],
                     "why_not_sequential": f"{runner} runs its own loop (--num_runs = "
                                           "min_count, --min_secs, --max_secs)"},
        "generation": None,
        "contention": None,
        "error": None,
    }


def summary_measurement_notes(runner: str) -> dict[str, str]:
    """Why each undecidable budget is inconclusive for a summary-only run."""
    notes = {m: f"needs raw samples: {runner} prints summary statistics only"
             for m in NEEDS_RAW_SAMPLES}
    notes.update({m: f"{runner} feeds its own random input: reference parity not checked"
                  for m in NEEDS_REFERENCE_INPUTS})
    return notes


def explain_inconclusive(verdicts: list[dict[str, Any]], runner: str) -> list[dict[str, Any]]:
    """Replace the generic 'not measured' reason of the budgets this runner cannot
    decide with the precise one (the verdict itself stays inconclusive)."""
    notes = summary_measurement_notes(runner)
    for v in verdicts:
        if v["verdict"] == "inconclusive" and v["metric"] in notes:
            v["reason"] = notes[v["metric"]]
    return verdicts
