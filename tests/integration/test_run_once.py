"""A benchmark runs once per pytest session, failures included, and the
summary's gate line is what `gem-hil gate` says on the same folder."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from harness.record import schema_errors
from tests.support.profiles import steady_local

REPO = Path(__file__).resolve().parents[2]


def _run(argv: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    full = {**os.environ, "GEM_HIL_LOCAL_HOME": str(tmp_path / "device-home"), **env}
    return subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=600,
                          env=full, stdin=subprocess.DEVNULL)


def _broken_local(tmp_path: Path) -> Path:
    """`local`, but the agent's interpreter exits at once: every run fails on the device."""
    return steady_local(tmp_path / "targets", "broken", 'python = "/bin/false"')


def _gate_line(out: str) -> tuple[str, int, list[str]]:
    m = re.search(r"^gate: (\w+) \(exit code (\d), as `(.+)` gives\)$", out, re.M)
    assert m, out[-3000:]
    return m.group(1), int(m.group(2)), shlex.split(m.group(3))


@pytest.mark.slow
def test_one_failure_is_one_record_and_the_summary_agrees_with_the_gate(tmp_path):
    targets = _broken_local(tmp_path)
    reports = tmp_path / "reports"
    res = _run([sys.executable, "-m", "pytest", "tests/device", "-q", "-p", "no:cacheprovider",
                "--device=broken", f"--targets-dir={targets}", "--report-dir", str(reports)],
               tmp_path)
    out = res.stdout + res.stderr
    assert res.returncode == 1, out[-3000:]
    records = list(reports.rglob("*.json"))
    assert len(records) == 1, [p.name for p in records]  # 7 tests, one benchmark, one record
    rec = json.loads(records[0].read_text())
    assert schema_errors(rec) == [] and rec["overall_verdict"] == "error"
    assert "already failed in this session (not re-run)" in out
    word, code, argv = _gate_line(res.stdout)
    assert argv[:2] == ["gem-hil", "gate"]
    gate = _run([sys.executable, "-m", "harness.cli", *argv[1:]], tmp_path)
    assert gate.returncode == code == 1, gate.stdout + gate.stderr
    assert f"gate: {word}" in gate.stdout


@pytest.mark.slow
def test_passing_session_summary_agrees_with_the_gate(tmp_path):
    reports = tmp_path / "reports"
    targets = steady_local(tmp_path / "targets")
    res = _run([sys.executable, "-m", "pytest", "tests/device", "-q", "-p", "no:cacheprovider",
                "--device=local", f"--targets-dir={targets}", "--report-dir", str(reports)],
               tmp_path)
    assert res.returncode == 0, res.stdout[-3000:]
    word, code, argv = _gate_line(res.stdout)
    gate = _run([sys.executable, "-m", "harness.cli", *argv[1:]], tmp_path)
    assert (word, code) == ("PASS", 0)
    assert gate.returncode == 0 and "gate: PASS" in gate.stdout, gate.stdout


def test_a_failed_build_is_a_recorded_failure(tmp_path):
    """The artifact cache cannot be written: the build fails, and that failure is a
    record the gate counts, not a run that left nothing behind."""
    not_a_folder = tmp_path / "cache-is-a-file"
    not_a_folder.write_text("")
    reports = tmp_path / "reports"
    res = _run([sys.executable, "-m", "harness.cli", "bench", "--device", "local",
                "--report-dir", str(reports), "--artifact-cache", str(not_a_folder / "x")],
               tmp_path)
    assert res.returncode == 3, res.stderr
    assert "cannot build tiny-int8" in res.stderr and "record:" in res.stderr
    (path,) = reports.rglob("*.json")
    rec = json.loads(path.read_text())
    assert schema_errors(rec) == []
    assert rec["error"]["kind"] == "build" and rec["artifact"]["sha256"] is None
    gate = _run([sys.executable, "-m", "harness.cli", "gate", "--results", str(reports)],
                tmp_path)
    assert gate.returncode == 1, gate.stdout


def test_unknown_model_fails_before_any_build(tmp_path):
    cache = tmp_path / "cache"
    res = _run([sys.executable, "-m", "harness.cli", "bench", "--device", "local",
                "--gem-model", "huge", "--report-dir", str(tmp_path / "reports"),
                "--artifact-cache", str(cache)], tmp_path)
    assert res.returncode == 3
    assert "--gem-model: unknown GEM model 'huge'; known: " in res.stderr
    assert not cache.exists() and not (tmp_path / "reports").exists()
