"""`pytest --device=pixel6-emulated`: the GEM device suite through ADB."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("adb_shell", reason="the ADB tests need adb-shell==0.4.4")

from harness.record import schema_errors  # noqa: E402
from tests.adb_peer import fixtures as peer_fixtures  # noqa: E402
from tests.adb_peer.fixtures import make_targets_dir  # noqa: E402
from tests.support.profiles import make_steady  # noqa: E402

adb_key = peer_fixtures.adb_key  # pytest fixture, shared with the other ADB tests
adb_peer = peer_fixtures.adb_peer  # pytest fixture, shared with the other ADB tests

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.adb, pytest.mark.slow]


def test_gem_suite_passes_on_emulated_pixel6(adb_peer, adb_key, tmp_path):
    targets = make_targets_dir(tmp_path / "targets", adb_peer, adb_key)
    make_steady(targets / "pixel6-emulated.toml")  # about the ADB path, not this host's noise
    argv = [sys.executable, "-m", "pytest", "tests/device", "-q", "-p", "no:cacheprovider",
            "--device=pixel6-emulated", f"--targets-dir={targets}",
            "--report-dir", str(tmp_path / "reports")]
    res = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=600,
                         stdin=subprocess.DEVNULL, env=dict(os.environ))
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    records = [json.loads(p.read_text()) for p in (tmp_path / "reports").rglob("*.json")]
    assert records
    for rec in records:
        assert schema_errors(rec) == []
        assert rec["device"]["name"] == "pixel6-emulated" and rec["device"]["transport"] == "adb"
    assert any(s.startswith("sync:") for s in adb_peer.stats.services)


def test_litert_artifact_runs_on_emulated_pixel6(adb_peer, adb_key, tmp_path):
    """The LiteRT path end to end over ADB: the .tflite pushed through the sync
    service, run by the agent's litert adapter, compared with the host's references."""
    pytest.importorskip("litert_torch", reason="the LiteRT path needs the litert extra")
    targets = make_targets_dir(tmp_path / "targets", adb_peer, adb_key)
    argv = [sys.executable, "-m", "pytest", "tests/device", "-q", "-p", "no:cacheprovider",
            "--device=pixel6-emulated", f"--targets-dir={targets}", "--gem-format", "tflite",
            "--report-dir", str(tmp_path / "reports")]
    res = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=1500,
                         stdin=subprocess.DEVNULL, env=dict(os.environ))
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    (rec,) = [json.loads(p.read_text()) for p in (tmp_path / "reports").rglob("*.json")]
    assert schema_errors(rec) == []
    assert rec["artifact"]["format"] == "tflite" and rec["environment"]["runtime"] == "litert"
    assert rec["device"]["transport"] == "adb" and rec["device"]["emulated"] is True
    # pixel6-emulated asks for 32 tokens: exactly the seq_32 signature, unpadded
    assert rec["environment"]["runtime_detail"]["bucket"]["signature"] == "seq_32"
    assert rec["parity"]["passed"]
    assert rec["op_placement"]["cpu_fallback_ops"] == 0
