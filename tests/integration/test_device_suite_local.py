"""`pytest --device=local` and `gem-hil bench` as a user runs them (subprocesses)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from harness.record import schema_errors
from tests.support.profiles import steady_local

REPO = Path(__file__).resolve().parents[2]


def run(argv: list[str], tmp_path: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env=_env(tmp_path), stdin=subprocess.DEVNULL)


def _env(tmp_path: Path) -> dict:
    import os

    env = dict(os.environ)
    env["GEM_HIL_LOCAL_HOME"] = str(tmp_path / "device-home")
    return env


def pytest_argv(tmp_path: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "pytest", "tests/device", "-q", "-p", "no:cacheprovider",
            "--report-dir", str(tmp_path / "reports"), *extra]


@pytest.mark.slow
def test_broken_budget_fails_the_run_with_a_readable_message(tmp_path):
    junit = tmp_path / "junit.xml"
    targets = steady_local(tmp_path / "targets")  # this noisy host must not make it invalid
    res = run(pytest_argv(tmp_path, "--device=local", "--budget", "latency_p95_ms=0.001",
                          f"--targets-dir={targets}", f"--junitxml={junit}"), tmp_path)
    out = res.stdout + res.stderr
    assert res.returncode == 1, out
    line = next(ln for ln in out.splitlines() if "FAIL: device local" in ln)
    # device, artifact, metric, measured value, limit and confidence interval
    for part in ("artifact tiny-int8", "latency_p95_ms measured", "95% CI [", "limit <= 0.001"):
        assert part in line, line
    assert "gem-hil budgets" in out  # the terminal summary table
    records = list((tmp_path / "reports").rglob("*.json"))
    assert len(records) == 1
    rec = json.loads(records[0].read_text())
    assert rec["overall_verdict"] == "fail" and schema_errors(rec) == []
    # the record is attached to the tests as JUnit properties for CI dashboards
    import xml.etree.ElementTree as ET

    props = {p.get("name"): p.get("value") for p in ET.parse(junit).iter("property")}
    assert props["gem_record_path"] == str(records[0])
    assert props["gem_overall_verdict"] == "fail"


def test_unknown_device_lists_available_names(tmp_path):
    res = run(pytest_argv(tmp_path, "--device=nosuchboard"), tmp_path)
    assert res.returncode != 0
    assert "unknown device 'nosuchboard'" in res.stderr
    assert "local" in res.stderr and "pi4" in res.stderr


def test_unknown_budget_metric_is_a_usage_error(tmp_path):
    res = run(pytest_argv(tmp_path, "--budget", "latency_p97_ms=3"), tmp_path)
    assert res.returncode == 4  # pytest's usage-error exit code
    assert "unknown budget metric 'latency_p97_ms'" in res.stderr
    assert "latency_p95_ms" in res.stderr  # and it says what is known


@pytest.mark.slow
def test_cli_bench_json_prints_a_valid_record(tmp_path):
    targets = steady_local(tmp_path / "targets")
    res = run([sys.executable, "-m", "harness.cli", "bench", "--device", "local", "--json",
               "--targets-dir", str(targets), "--report-dir", str(tmp_path / "reports")],
              tmp_path)
    assert res.returncode == 0, res.stderr
    rec = json.loads(res.stdout)
    assert schema_errors(rec) == []
    assert rec["device"]["name"] == "local" and rec["overall_verdict"] == "pass"
    # local.toml asks for SCHED_FIFO 10: the record says whether the agent got it
    # (root or CAP_SYS_NICE), never that it did when it did not
    cond = rec["environment"]["conditioning"]
    assert cond["realtime_priority_requested"] == 10
    sched = cond["scheduling"]
    assert sched["policy"] == "SCHED_FIFO" and sched["priority"] == 10
    if os.geteuid() == 0 and (os.cpu_count() or 1) >= 2:
        assert sched["applied"] is True and sched["reason"] is None, sched
    else:
        assert sched["applied"] is False and sched["reason"], sched
    written = list((tmp_path / "reports").rglob("*.json"))
    assert [json.loads(p.read_text())["record_id"] for p in written] == [rec["record_id"]]


def test_cli_devices_lists_every_profile(tmp_path, monkeypatch):
    """Every shipped profile is listed with its format and loads: every platform a
    shipped profile names is implemented (a missing one would be marked invalid)."""
    from tests.support.sshd_board import write_ed25519_key

    home = tmp_path / "home"  # the keys the shipped SSH profiles name, so only that one fails
    (home / ".ssh").mkdir(parents=True)
    for key in ("id_ed25519", "gem-hil-board"):
        write_ed25519_key(home / ".ssh" / key)
    monkeypatch.setenv("HOME", str(home))
    res = run([sys.executable, "-m", "harness.cli", "devices"], tmp_path)
    rows = {line.split()[0]: line for line in res.stdout.splitlines()[2:]}
    expected = {p.stem for p in (REPO / "targets").glob("*.toml")}
    assert set(rows) == expected
    invalid = {name for name, row in rows.items() if row.rstrip().endswith("INVALID")}
    assert invalid == set(), res.stdout + res.stderr
    assert rows["iphone13"].split()[1:5] == ["ssh", "ios", "coreml", "coreml"]
    assert rows["rk3588-npu"].split()[3:5] == ["rknn", "rknn"]  # runtime, format
    assert res.returncode == 0  # a plain listing reports; naming devices makes it strict


def test_cli_devices_check_reports_reachable_and_not(tmp_path):
    """--check runs one command on each named device; a dead board is reported,
    not crashed on. Only loopback is contacted: a closed local port stands in for
    a board that is off."""
    import socket

    from tests.support.sshd_board import write_ed25519_key

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    key = tmp_path / "id_ed25519"
    write_ed25519_key(key)
    targets = tmp_path / "targets"
    targets.mkdir()
    (targets / "local.toml").write_text((REPO / "targets" / "local.toml").read_text())
    (targets / "deadboard.toml").write_text(
        'name = "deadboard"\ntransport = "ssh"\nplatform = "linux"\nruntime = "onnxruntime"\n'
        f'[ssh]\nhost = "127.0.0.1"\nport = {closed_port}\nuser = "nobody"\n'
        f'key_file = "{key}"\nknown_hosts = "{tmp_path / "known_hosts"}"\n'
        "connect_timeout_s = 3\n")
    res = run([sys.executable, "-m", "harness.cli", "--targets-dir", str(targets), "devices",
               "--check", "local", "deadboard"], tmp_path)
    rows = {ln.split()[0]: ln for ln in res.stdout.splitlines()[2:]}
    assert rows["local"].rstrip().endswith("reachable")
    assert rows["deadboard"].rstrip().endswith("UNREACHABLE")
    # a named device that does not answer fails the command, with the whole reason
    assert res.returncode == 3
    assert f"deadboard: unreachable: deadboard: cannot connect to 127.0.0.1:{closed_port}" \
        in res.stderr
    assert "raise connect_timeout_s in" in res.stderr  # the fix, at the end, not cut off
    res = run([sys.executable, "-m", "harness.cli", "devices", "--targets-dir", str(targets),
               "--check", "local"], tmp_path)
    assert res.returncode == 0, res.stderr
    res = run([sys.executable, "-m", "harness.cli", "devices", "nosuchboard"], tmp_path)
    assert res.returncode == 3 and "unknown device(s) nosuchboard" in res.stderr


@pytest.mark.slow
def test_invalid_run_exits_2_like_the_gate(tmp_path):
    """A run that cannot meet LoadGen's minimum duration is invalid: pytest and
    `gem-hil gate` both say 2 (not a pass, not a budget failure)."""
    targets = tmp_path / "targets"
    targets.mkdir()
    text = (REPO / "targets" / "local.toml").read_text()
    for key, value in (("min_duration_s", "30.0"), ("max_count", "50"), ("min_count", "20"),
                       ("max_duration_s", "60.0")):
        text, n = re.subn(rf"(?m)^{key} = .*$", f"{key} = {value}", text, count=1)
        assert n == 1, key
    (targets / "local.toml").write_text(text)
    res = run(pytest_argv(tmp_path, "--device=local", f"--targets-dir={targets}"), tmp_path)
    assert res.returncode == 2, res.stdout[-3000:]
    assert "is below min_duration_s" in res.stdout
    gate = run([sys.executable, "-m", "harness.cli", "gate", "--results",
                str(tmp_path / "reports"), "--no-profiles"], tmp_path)
    assert gate.returncode == 2, gate.stdout + gate.stderr
    # the gate's own word, not argparse's exit 2 for an unwired sub-command or bad flag
    assert "usage:" not in gate.stderr, gate.stderr
    assert "(exit 2)" in gate.stdout and "invalid" in gate.stdout, gate.stdout
    assert "is below min_duration_s" in gate.stdout, gate.stdout  # the reason, in the table
