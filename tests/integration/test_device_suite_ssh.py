"""The same GEM device suite over real SSH: only the profile differs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.record import schema_errors
from tests.support.profiles import make_steady

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.ssh, pytest.mark.slow]


def run_suite(targets: Path, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "pytest", "tests/device", "-q", "-p", "no:cacheprovider",
            "--device=ssh-board", f"--targets-dir={targets}",
            "--report-dir", str(tmp_path / "reports"), *extra]
    return subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=900,
                          stdin=subprocess.DEVNULL, env=dict(os.environ))


def test_gem_suite_passes_over_real_ssh(sshd_board, tmp_path):
    targets = sshd_board.make_targets_dir(tmp_path / "targets")
    make_steady(targets / "ssh-board.toml")  # about the SSH path, not this host's noise
    res = run_suite(targets, tmp_path)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    (path,) = (tmp_path / "reports").rglob("*.json")
    rec = json.loads(path.read_text())
    assert schema_errors(rec) == []
    assert rec["device"] == {**rec["device"], "name": "ssh-board", "transport": "ssh"}
    assert rec["parity"]["passed"]
    assert rec["overall_verdict"] == "pass"


def test_broken_budget_over_ssh_fails(sshd_board, tmp_path):
    targets = sshd_board.make_targets_dir(tmp_path / "targets")
    # about the budget's exit code 1: this shared host must not make the run invalid (2)
    make_steady(targets / "ssh-board.toml")
    res = run_suite(targets, tmp_path, "--budget", "latency_p95_ms=0.001")
    assert res.returncode == 1
    assert "FAIL: device ssh-board" in res.stdout
