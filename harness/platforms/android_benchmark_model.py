"""TFLite/LiteRT `benchmark_model` on Android: command line and output parser.

The stock tool prints a summary, not raw samples: init time, first inference,
the warmup and timed runs as ``count= first= curr= min= max= avg= std=``
(microseconds), and memory footprint in MB. parse_output() reads all of it;
to_agent_output() maps it onto the on-device agent's JSON contract so the
engine builds the same result record either way. Raw per-inference samples
do not exist in this output: latency_samples_ns is left empty and the summary
is carried in ``latency_summary_us`` (the engine must use it for p50/p95 only
as "not available", never invent percentiles from mean/std).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from harness.sensors.android_memory import AndroidParseError

_PREFIX = r"^(?:INFO: |I\S* |)"
_STATS_RE = re.compile(_PREFIX + r"count=(\d+)(?: first=(\d+))?(?: curr=(\d+))? min=(\d+) "
                       r"max=(\d+) avg=([\d.e+]+) std=(\d+)", re.M)
_TIMINGS_RE = re.compile(r"Inference timings in us: Init: ([\d.]+), First inference: ([\d.]+), "
                         r"Warmup \(avg\): ([\d.e+]+), Inference \(avg\): ([\d.e+]+)")
_INIT_RE = re.compile(r"Initialized session in ([\d.]+)ms")
_FOOT_RE = re.compile(r"Memory footprint delta from the start of the tool \(MB\): "
                      r"init=([\d.]+) overall=([\d.]+)")
_PEAK_RE = re.compile(r"Overall peak memory footprint \(MB\) via periodic monitoring: ([\d.]+)")
_ERR_RE = re.compile(r"^(?:ERROR: |E\S* )(.*)$", re.M)
_XNN_FULL_RE = re.compile(r"XNNPACK delegate, and the model graph will be completely executed")
_XNN_PART_RE = re.compile(r"XNNPACK delegate, and the model graph will be partially executed "
                          r"by the delegate w/ (\d+) delegate kernels")


@dataclass(frozen=True)
class RunStats:
    count: int
    first_us: int | None
    min_us: int
    max_us: int
    avg_us: float
    std_us: int


@dataclass(frozen=True)
class BenchmarkModelResult:
    init_ms: float
    first_inference_us: float
    warmup: RunStats | None
    inference: RunStats
    footprint_init_mb: float | None
    footprint_overall_mb: float | None
    peak_memory_mb: float | None
    #: XNNPACK: True = the whole graph ran in the delegate, False = partly, None = not said
    xnnpack_full: bool | None = None
    xnnpack_partitions: int | None = None


def parse_output(text: str, command: str = "benchmark_model") -> BenchmarkModelResult:
    errors = _ERR_RE.findall(text)
    if "Benchmarking failed" in text or (errors and not _TIMINGS_RE.search(text)):
        raise AndroidParseError(command, "benchmark_model reported failure: "
                                + "; ".join(errors[-3:]), text)
    runs = [RunStats(int(c), int(f) if f else None, int(mn), int(mx), float(avg), int(sd))
            for c, f, _cur, mn, mx, avg, sd in _STATS_RE.findall(text)]
    timings = _TIMINGS_RE.search(text)
    if not runs or not timings:
        raise AndroidParseError(command, "no 'count=.. min=.. max=.. avg=.. std=..' rows or no "
                                "'Inference timings in us:' line", text)
    init_us = float(timings.group(1))
    init = _INIT_RE.search(text)
    foot = _FOOT_RE.search(text)
    peak = _PEAK_RE.search(text)
    full, part = _XNN_FULL_RE.search(text), _XNN_PART_RE.search(text)
    return BenchmarkModelResult(
        init_ms=float(init.group(1)) if init else init_us / 1000.0,
        first_inference_us=float(timings.group(2)),
        warmup=runs[0] if len(runs) > 1 else None,
        inference=runs[-1],
        footprint_init_mb=float(foot.group(1)) if foot else None,
        footprint_overall_mb=float(foot.group(2)) if foot else None,
        peak_memory_mb=float(peak.group(1)) if peak else None,
        xnnpack_full=True if full else False if part else None,
        xnnpack_partitions=int(part.group(1)) if part else 1 if full else None,
    )


def build_argv(binary: str, model: str, threads: int, warmup_count: int, min_count: int,
               min_duration_s: float, max_duration_s: float,
               extra: Sequence[str] = ()) -> list[str]:
    """benchmark_model flags matching the harness's stopping rule."""
    return [binary, f"--graph={model}", f"--num_threads={threads}",
            f"--warmup_runs={warmup_count}", "--warmup_min_secs=0",
            f"--num_runs={min_count}", f"--min_secs={min_duration_s:g}",
            f"--max_secs={max_duration_s:g}", "--report_peak_memory_footprint=true", *extra]


def input_flags(signature: str, input_name: str, low: int, high: int) -> list[str]:
    """Run one signature (one sequence bucket) with integer inputs drawn from
    [low, high] (both inclusive): benchmark_model's own random input, which for
    token ids must stay inside the vocabulary."""
    return [f"--signature_to_run_for={signature}",
            f"--input_layer_value_range={input_name},{low},{high}"]


def op_placement(out: dict[str, Any]) -> dict[str, Any]:
    """Where benchmark_model ran the graph, from what it printed: XNNPACK is a CPU
    delegate, so nothing runs on an accelerator and nothing can fall back to the
    CPU; the tool names no per-op placement (ops_total unknown)."""
    full, parts = out.get("xnnpack_full"), out.get("xnnpack_partitions")
    note = ("benchmark_model: XNNPACK (CPU) ran the whole graph" if full else
            f"benchmark_model: XNNPACK (CPU) ran {parts} partition(s), the rest on TFLite's "
            "builtin CPU kernels" if full is False else
            "benchmark_model did not say how the graph was delegated")
    return {"accelerator": None, "delegate": "XNNPACK" if full is not None else None,
            "delegated_partitions": parts, "ops_total": None, "ops_accelerator": 0,
            "ops_cpu": None, "cpu_fallback_ops": 0, "fallback_op_names": [], "note": note}


def to_agent_output(res: BenchmarkModelResult, runtime_version: str | None = None
                    ) -> dict[str, Any]:
    """The agent contract's fields that benchmark_model can honestly fill."""
    inf = res.inference
    peak_kb = int(res.peak_memory_mb * 1024) if res.peak_memory_mb is not None else None
    return {
        "ok": True,
        "agent_version": 1,
        "runner": "tflite-benchmark_model",
        "runtime": {"name": "litert", "version": runtime_version},
        "latency_samples_ns": [],
        "warmup_samples_ns": [],
        "latency_summary_us": {"count": inf.count, "min": inf.min_us, "max": inf.max_us,
                               "mean": inf.avg_us, "std": inf.std_us},
        "warmup_summary_us": (None if res.warmup is None else
                              {"count": res.warmup.count, "min": res.warmup.min_us,
                               "max": res.warmup.max_us, "mean": res.warmup.avg_us,
                               "std": res.warmup.std_us}),
        "cold_start": {"session_create_ms": res.init_ms,
                       "first_inference_ms": res.first_inference_us / 1000.0},
        "peak_rss_kb": peak_kb,
        "memory_footprint_mb": {"init": res.footprint_init_mb,
                                "overall": res.footprint_overall_mb,
                                "peak": res.peak_memory_mb},
        "parity": None,
        "run": {"count": inf.count, "duration_s": inf.avg_us * inf.count / 1e6,
                "min_count_met": None, "min_duration_met": None, "stopped_by": None},
        "xnnpack_full": res.xnnpack_full,
        "xnnpack_partitions": res.xnnpack_partitions,
    }
