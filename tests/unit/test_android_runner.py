"""[run] android_runner: choosing LiteRT's benchmark_model instead of the agent,
checked when the profile loads; and the summary-only record it produces."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import ConfigError
from harness.platforms.android import AndroidPlatform
from harness.platforms.android_benchmark_model import op_placement, parse_output, to_agent_output
from harness.profiles import parse_profile
from harness.summary_record import explain_inconclusive, is_summary_only, summary_fields

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data" / "android"
STANDIN = DATA / "benchmark_model_standin.sh"


def profile_with_runner(tmp_path: Path, run_keys: str, runtime: str = "litert"):
    text = (REPO / "targets" / "pixel6-emulated.toml").read_text()
    text = text.replace('runtime = "onnxruntime"', f'runtime = "{runtime}"')
    text = text.replace("[run]\n", "[run]\n" + run_keys, 1)
    path = tmp_path / "pixel6-emulated.toml"
    path.write_text(text)
    return parse_profile(path)


def test_default_runner_is_the_agent(tmp_path):
    plat = AndroidPlatform(profile_with_runner(tmp_path, ""))
    assert plat.runner_settings.runner == "agent" and plat.bench_tool() is None


def test_benchmark_model_runner_resolves_its_path(tmp_path):
    keys = f'android_runner = "benchmark_model"\nandroid_benchmark_model = "{STANDIN}"\n'
    plat = AndroidPlatform(profile_with_runner(tmp_path, keys))
    assert plat.bench_tool() == "benchmark_model"
    assert plat.runner_settings.benchmark_model == str(STANDIN)


def test_missing_binary_is_a_load_error_naming_file_key_and_path(tmp_path):
    missing = tmp_path / "no" / "benchmark_model"
    keys = f'android_runner = "benchmark_model"\nandroid_benchmark_model = "{missing}"\n'
    with pytest.raises(ConfigError, match=r"pixel6-emulated.toml: \[run\] android_benchmark_model"
                       rf".*{missing} does not exist.*firmware/android/README.md"):
        profile_with_runner(tmp_path, keys)


def test_runner_without_a_path_says_which_key_to_set(tmp_path):
    with pytest.raises(ConfigError, match=r"\[run\] android_benchmark_model.*needs the binary"):
        profile_with_runner(tmp_path, 'android_runner = "benchmark_model"\n')


def test_benchmark_model_needs_the_litert_runtime(tmp_path):
    keys = f'android_runner = "benchmark_model"\nandroid_benchmark_model = "{STANDIN}"\n'
    with pytest.raises(ConfigError, match=r'\[run\] android_runner.*runtime = "litert"'):
        profile_with_runner(tmp_path, keys, runtime="onnxruntime")


def test_unknown_runner_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="android_runner"):
        profile_with_runner(tmp_path, 'android_runner = "adb-shell"\n')


def test_summary_fields_never_invent_percentiles():
    out = to_agent_output(parse_output((DATA / "benchmark_model_output.txt").read_text()))
    assert is_summary_only(out)
    f = summary_fields(out, "tflite-benchmark_model")
    assert f["latency_ms"] is None and f["parity"] is None
    s = f["latency_summary_ms"]
    assert s["count"] == 58 and s["mean_ms"] == pytest.approx(17.2834)
    assert s["min_ms"] == 16.802 and s["std_ms"] == 0.512 and s["samples"] is None
    assert "p95_ms" not in s and s["warmup"]["count"] == 27
    assert f["validity"]["valid"] is False and "raw samples absent" in f["validity"]["reasons"][0]
    assert f["memory"]["peak_rss_mb"] == pytest.approx(21.3047, abs=1e-3)
    assert f["cold_start_ms"]["total_ms"] == pytest.approx(42.117 + 31.245)
    verdicts = explain_inconclusive(
        [{"metric": "latency_p95_ms", "verdict": "inconclusive", "reason": "not measured"},
         {"metric": "top1_agreement", "verdict": "inconclusive", "reason": "not measured"},
         {"metric": "peak_rss_mb", "verdict": "pass", "reason": ""}], "benchmark_model")
    assert "needs raw samples" in verdicts[0]["reason"]
    assert "reference parity not checked" in verdicts[1]["reason"]
    assert verdicts[2]["reason"] == ""


def test_op_placement_from_the_xnnpack_line():
    full = to_agent_output(parse_output((DATA / "benchmark_model_output.txt").read_text()))
    assert op_placement(full)["delegate"] == "XNNPACK"
    assert op_placement(full)["delegated_partitions"] == 1
    partial_text = (DATA / "benchmark_model_output.txt").read_text().replace(
        "will be completely executed by the delegate.",
        "will be partially executed by the delegate w/ 3 delegate kernels.")
    part = op_placement(to_agent_output(parse_output(partial_text)))
    assert part["delegated_partitions"] == 3 and "3 partition(s)" in part["note"]
    assert part["accelerator"] is None and part["cpu_fallback_ops"] == 0
