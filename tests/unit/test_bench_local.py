"""The bench engine end to end on the `local` transport with a real ONNX artifact."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import pytest

from harness.bench import DeviceSession
from harness.errors import AgentError
from harness.profiles import load_profile, parse_profile
from harness.record import schema_errors
from tests.support.profiles import LENIENT

REPO = Path(__file__).resolve().parents[2]


def local_profile(**run):
    p = load_profile("local", REPO / "targets")
    fast = dict(min_count=20, min_duration_s=0.05, warmup_count=2, max_duration_s=5.0,
                max_count=10**7)
    fast.update(run)
    # the fixture model runs in microseconds: scheduler noise dominates its CV
    return replace(p, run=replace(p.run, **fast), validity=dict(LENIENT))


def test_record_is_written_valid_and_gated(fixture_artifact, local_home, tmp_path):
    prof = replace(local_profile(), budgets={"default": {"latency_p95_ms": 1000.0,
                                                         "top1_agreement": 1.0}})
    with DeviceSession(prof) as dev:
        out = dev.run_benchmark(fixture_artifact, report_dir=tmp_path / "r")
    rec = out.record
    assert schema_errors(rec) == []
    assert out.path and json.loads(out.path.read_text())["record_id"] == rec["record_id"]
    assert rec["overall_verdict"] == "pass"
    assert rec["parity"]["passed"] and rec["parity"]["n_reference"] == 3
    assert len(rec["latency_ms"]["samples_ms"]) >= 20
    assert rec["harness"]["push_skipped"] is False
    assert rec["environment"]["runtime_version"]
    assert (local_home / "gem-hil" / "agent" / "gem_agent.py").is_file()


def test_tiny_budget_fails_with_a_readable_verdict(fixture_artifact, local_home, tmp_path):
    with DeviceSession(local_profile()) as dev:
        out = dev.run_benchmark(fixture_artifact, budget_overrides={"latency_p95_ms": 0.00001},
                                report_dir=tmp_path)
    failed = out.failed_verdicts
    assert [v["metric"] for v in failed] == ["latency_p95_ms"]
    v = failed[0]
    assert v["source"] == "cli" and v["ci_low"] > v["limit"]
    assert out.record["overall_verdict"] == "fail"


def test_second_session_skips_pushes(fixture_artifact, local_home, tmp_path):
    for expected_skip in (False, True):
        with DeviceSession(local_profile()) as dev:
            out = dev.run_benchmark(fixture_artifact, report_dir=tmp_path)
        assert out.record["harness"]["push_skipped"] is expected_skip


def test_agent_crash_is_recorded_with_stderr_tail(fixture_artifact, local_home, tmp_path):
    """A device-side crash (no JSON at all) fails the run; the record keeps the stderr tail."""
    crasher = tmp_path / "crashing-python"
    crasher.write_text("#!/bin/sh\necho 'Fatal Python error: Segmentation fault' >&2\n"
                       "kill -SEGV $$\n")
    crasher.chmod(0o755)
    prof = local_profile(python=str(crasher))
    reports = tmp_path / "reports"
    with DeviceSession(prof) as dev, pytest.raises(AgentError) as exc:
        dev.run_benchmark(fixture_artifact, report_dir=reports)
    assert "Segmentation fault" in str(exc.value)
    (path,) = reports.glob("*.json")
    rec = json.loads(path.read_text())
    assert rec["overall_verdict"] == "error"
    assert "Segmentation fault" in rec["error"]["stderr_tail"]
    assert schema_errors(rec) == []


def test_corrupt_model_gives_agent_error_record(fixture_artifact, local_home, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in fixture_artifact.folder.iterdir():
        (broken / f.name).write_bytes(f.read_bytes())
    (broken / "model.onnx").write_bytes(b"\x08garbage" * 10)
    manifest = json.loads((broken / "manifest.json").read_text())
    import hashlib

    manifest["files"][0]["sha256"] = hashlib.sha256((broken / "model.onnx").read_bytes()
                                                    ).hexdigest()
    manifest["sha256"] = "1" * 64
    (broken / "manifest.json").write_text(json.dumps(manifest))
    from harness.artifacts import load_artifact

    with DeviceSession(local_profile()) as dev, pytest.raises(AgentError) as exc:
        dev.run_benchmark(load_artifact(broken), report_dir=tmp_path / "r")
    assert "model_load" in str(exc.value)


def test_timeout_kills_the_agent(fixture_artifact, local_home, tmp_path):
    from harness.errors import CommandTimeout

    slow = tmp_path / "slow-python"
    slow.write_text("#!/bin/sh\nexec sleep 30\n")
    slow.chmod(0o755)
    prof = local_profile(python=str(slow), timeout_s=1.0)
    with DeviceSession(prof) as dev, pytest.raises(CommandTimeout, match="did not finish"):
        dev.run_benchmark(fixture_artifact, report_dir=tmp_path)


def test_profile_errors_name_file_and_key(tmp_path):
    from harness.errors import ConfigError, UnknownMetricError

    bad = tmp_path / "board.toml"
    bad.write_text('name = "board"\ntransport = "local"\nplatform = "linux"\n'
                   'runtime = "onnxruntime"\n[run]\nthreads = "four"\n')
    with pytest.raises(ConfigError, match=r"board.toml: \[run\] threads: expected an integer"):
        parse_profile(bad)
    bad.write_text('name = "board"\ntransport = "local"\nplatform = "linux"\n'
                   'runtime = "onnxruntime"\n[budgets.default]\nlatency_p42_ms = 3\n')
    with pytest.raises(UnknownMetricError, match="latency_p42_ms.*known metrics"):
        parse_profile(bad)
    assert os.path.exists(bad)


def test_interleaved_ab_run_records_both_arms(fixture_artifact, local_home, tmp_path):
    """An A/B of an artifact against itself: both arms timed in one session, paired."""
    prof = replace(local_profile(min_count=200), budgets={"default": {"latency_p95_ms": 1000.0}})
    with DeviceSession(prof) as dev:
        out = dev.run_benchmark(fixture_artifact, report_dir=tmp_path, ab_baseline=fixture_artifact)
    rec = out.record
    assert schema_errors(rec) == []
    ab = rec["ab"]
    assert len(ab["baseline_samples_ms"]) == len(rec["latency_ms"]["samples_ms"]) >= 200
    assert ab["baseline_parity"]["passed"] and ab["baseline_artifact"]["sha256"] == \
        fixture_artifact.sha256
    assert ab["comparison"]["verdict"] != "regressed"  # the same artifact on both arms
    assert rec["stopping"]["rule"] is None  # A/B runs to the minimums
