"""LiteRT's benchmark_model as the Android runner, end to end through the ADB
peer: the engine pushes the .tflite artifact and the runner binary, runs it
pinned, parses its output and writes the same record the agent's runs get --
with its summary and no invented samples. The binary is a stand-in replaying
recorded Pixel 6 output (tests/data/android/benchmark_model_standin.sh): the
real one is an Android arm64 build this machine cannot fetch or run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("adb_shell", reason="the ADB tests need adb-shell==0.4.4")

from harness.bench import DeviceSession  # noqa: E402
from harness.errors import AgentError  # noqa: E402
from harness.profiles import parse_profile  # noqa: E402
from harness.record import schema_errors  # noqa: E402
from tests.adb_peer import fixtures as peer_fixtures  # noqa: E402
from tests.adb_peer.fixtures import make_targets_dir  # noqa: E402

adb_key = peer_fixtures.adb_key  # pytest fixture, shared with the other ADB tests
adb_peer = peer_fixtures.adb_peer  # pytest fixture, shared with the other ADB tests

STANDIN = Path(__file__).resolve().parents[1] / "data" / "android" / \
    "benchmark_model_standin.sh"
pytestmark = [pytest.mark.adb]


@pytest.fixture
def bm_profile(adb_peer, adb_key, tmp_path):
    targets = make_targets_dir(tmp_path / "targets", adb_peer, adb_key)
    path = targets / "pixel6-emulated.toml"
    text = path.read_text().replace('runtime = "onnxruntime"', 'runtime = "litert"')
    text = text.replace("[run]\n", f'[run]\nandroid_runner = "benchmark_model"\n'
                                   f'android_benchmark_model = "{STANDIN}"\n', 1)
    # gate the timing budget against an emulator limit so it is decided, not just recorded
    text += "\n[budgets.emulator]\nlatency_p95_ms = 1000.0\n"
    path.write_text(text)
    return parse_profile(path)


def test_benchmark_model_run_gives_a_summary_record(bm_profile, adb_peer, tflite_artifact,
                                                     tmp_path):
    reports = tmp_path / "reports"
    with DeviceSession(bm_profile) as session:
        outcome = session.run_benchmark(tflite_artifact, report_dir=reports)
    rec = outcome.record
    assert schema_errors(rec) == []
    assert json.loads(outcome.path.read_text())["record_id"] == rec["record_id"]
    assert rec["environment"]["runner"] == "tflite-benchmark_model"
    assert rec["environment"]["runtime"] == "litert"
    # the tool's summary, recorded as such; no samples, no percentiles
    assert rec["latency_ms"] is None
    s = rec["latency_summary_ms"]
    assert s["count"] == 58 and s["mean_ms"] == pytest.approx(17.2834) and s["samples"] is None
    assert rec["cold_start_ms"]["session_create_ms"] == 42.117
    assert rec["memory"]["peak_rss_mb"] == pytest.approx(21.3047, abs=1e-3)
    assert rec["parity"] is None and rec["validity"]["valid"] is False
    bucket = rec["environment"]["runtime_detail"]["bucket"]
    assert bucket["signature"] == "seq_32" and bucket["requested_tokens"] == 32
    assert rec["op_placement"]["delegate"] == "XNNPACK"
    # the tool's own loop, said as such (not "the run failed before the agent started")
    why = rec["stopping"]["why_not_sequential"]
    assert "benchmark_model runs its own loop" in why, why
    verdicts = {v["metric"]: v for v in rec["verdicts"]}
    assert verdicts["latency_p95_ms"]["verdict"] == "inconclusive"
    assert "needs raw samples" in verdicts["latency_p95_ms"]["reason"]
    assert verdicts["top1_agreement"]["verdict"] == "inconclusive"
    assert verdicts["peak_rss_mb"]["verdict"] == "pass"  # 21 MB measured by the tool, <= 1800
    assert rec["overall_verdict"] == "inconclusive"
    from harness.report import summary_lines

    assert any("inconclusive" in line.lower() for line in summary_lines([rec]))
    # what reached the device: the pushed artifact's file, the profile's stopping rule,
    # token ids inside the vocabulary, pinned to the big cores
    args = peer_sandbox_text(adb_peer, "/data/local/tmp/gem-hil/bin/benchmark_model.args")
    remote_model = f"/data/local/tmp/gem-hil/artifacts/{tflite_artifact.sha256[:16]}/model.tflite"
    assert f"--graph={remote_model}" in args.splitlines()
    for flag in ("--num_runs=20", "--min_secs=0.5", "--max_secs=10", "--num_threads=1",
                 "--signature_to_run_for=seq_32", "--input_layer_value_range=input_ids,0,255",
                 "--report_peak_memory_footprint=true"):
        assert flag in args.splitlines(), (flag, args)
    log = adb_peer.sandbox.log_lines()
    assert any(line.startswith("taskset c0") and "benchmark_model" in line for line in log)
    assert not any("gem_agent.py" in line for line in log)  # the agent was not pushed or run


@pytest.mark.parametrize("kwargs, what", [({"name": "eval"}, "the eval benchmark"),
                                           ({"ab": True}, "an interleaved A/B run")])
def test_what_needs_the_agent_is_refused_with_the_fix(bm_profile, tflite_artifact, tmp_path,
                                                      kwargs, what):
    """benchmark_model cannot return predictions or interleave two artifacts: the run
    says so and how to fix it, and is a recorded failure, not a record without them."""
    reports = tmp_path / "reports"
    if kwargs.pop("ab", False):
        kwargs["ab_baseline"] = tflite_artifact
    with DeviceSession(bm_profile) as session, \
            pytest.raises(AgentError, match=rf"{what} needs the project's agent; platform "
                                            r"'android' runs benchmark_model \("):
        session.run_benchmark(tflite_artifact, report_dir=reports, **kwargs)
    (path,) = reports.rglob("*.json")
    assert json.loads(path.read_text())["overall_verdict"] == "error"


def test_onnx_artifact_with_benchmark_model_is_a_recorded_failure(bm_profile, fixture_artifact,
                                                                   tmp_path):
    reports = tmp_path / "reports"
    with DeviceSession(bm_profile) as session, \
            pytest.raises(AgentError, match=r"runs \.tflite artifacts, this one is 'onnx'"):
        session.run_benchmark(fixture_artifact, report_dir=reports)
    (path,) = reports.rglob("*.json")
    rec = json.loads(path.read_text())
    assert rec["overall_verdict"] == "error" and rec["latency_ms"] is None
    assert schema_errors(rec) == []


def test_tool_failure_is_an_agent_error_with_its_message(bm_profile, tflite_artifact):
    from harness.platforms.android import AndroidPlatform

    with DeviceSession(bm_profile) as session:
        plat = session.platform
        assert isinstance(plat, AndroidPlatform)
        with pytest.raises(AgentError, match=r"benchmark_model failed \(rc=1\).*Could not open"):
            plat.run_tool(session.transport, tflite_artifact,
                          "/data/local/tmp/gem-hil/artifacts/missing", bm_profile.run,
                          lambda *_: None)


def peer_sandbox_text(peer, device_path: str) -> str:
    return peer.sandbox.map_path(device_path).read_text().replace(str(peer.sandbox.root), "")
