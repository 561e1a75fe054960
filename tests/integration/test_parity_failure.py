"""A reference the device's outputs do not match fails the run, on every transport.

The host-built references of the other suites come from the same runtime on
the same host, so their parity can only pass: a harness that reported parity
"passed" whatever the outputs would go unnoticed there. Here the artifact's
reference outputs are perturbed (the manifest still verifies, so only the
device-side comparison can notice) and the run goes through the real engine
over `local`, a real sshd and the ADB protocol peer. The record must carry the
measured mismatch, the parity verdict must fail, and `gem-hil gate` on the
record folder must exit 1 (a budget failure).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from harness.bench import DeviceSession
from harness.profiles import DeviceProfile, parse_profile
from harness.record import schema_errors
from tests.support.onnx_artifact import perturb_reference
from tests.support.profiles import LENIENT, make_steady, steady_local

REPO = Path(__file__).resolve().parents[2]
FAST = dict(min_count=20, min_duration_s=0.05, warmup_count=2, max_duration_s=10.0,
            max_count=10**7)

pytestmark = pytest.mark.slow


def _targets(request: pytest.FixtureRequest, transport: str, tmp_path: Path) -> tuple[Path, str]:
    """A targets folder holding a profile for the transport, and the profile's name."""
    if transport == "local":
        return steady_local(tmp_path / "targets"), "local"
    if transport == "ssh":
        board = request.getfixturevalue("sshd_board")
        targets = board.make_targets_dir(tmp_path / "targets")
        name = "ssh-board"
    else:
        peer = request.getfixturevalue("adb_peer")
        targets = peer_fixtures.make_targets_dir(tmp_path / "targets", peer,
                                                 request.getfixturevalue("adb_key"))
        name = "pixel6-emulated"
    make_steady(targets / f"{name}.toml")  # a noisy shared host must not make it invalid
    return targets, name


def _profile(targets: Path, name: str) -> DeviceProfile:
    p = parse_profile(targets / f"{name}.toml")
    # no parity budget in the profile: the artifact's own tolerance must gate it
    budgets = {"default": {"peak_rss_mb": 8000.0}}
    return replace(p, run=replace(p.run, **FAST), budgets=budgets,
                   validity=dict(LENIENT))


try:  # the ADB peer's fixtures, shared with the other ADB tests
    from tests.adb_peer import fixtures as peer_fixtures

    adb_key = peer_fixtures.adb_key
    adb_peer = peer_fixtures.adb_peer
except ImportError as exc:  # adb-shell missing: only the ADB case skips (fails in CI)
    ADB_MISSING: str | None = str(exc)
else:
    ADB_MISSING = None


@pytest.fixture(params=["local", "ssh", "adb"])
def transport(request: pytest.FixtureRequest) -> str:
    if request.param == "adb" and ADB_MISSING:
        pytest.skip(f"needs adb-shell==0.4.4 for the ADB peer: {ADB_MISSING}")
    return request.param


@pytest.mark.parametrize("how", ["offset", "flip"])
def test_perturbed_reference_fails_parity_and_the_gate(request, transport, how,
                                                       fixture_artifact, local_home, tmp_path):
    from harness.artifacts import load_artifact

    art_dir = tmp_path / "perturbed"
    expect = perturb_reference(fixture_artifact.folder, art_dir, how)
    artifact = load_artifact(art_dir)
    targets, name = _targets(request, transport, tmp_path)
    reports = tmp_path / "reports"
    with DeviceSession(_profile(targets, name)) as dev:
        out = dev.run_benchmark(artifact, report_dir=reports)
    rec = out.record
    assert schema_errors(rec) == []
    assert rec["device"]["transport"] == transport
    par = rec["parity"]
    assert par["passed"] is False, par
    assert par["top1_agreement"] == pytest.approx(expect["top1_agreement"])
    assert par["max_abs_diff"] == pytest.approx(expect["max_abs_diff"], abs=1e-4)
    verdicts = {v["metric"]: v for v in rec["verdicts"]}
    pv = verdicts["parity_max_abs_diff"]
    assert (pv["verdict"], pv["source"], pv["limit"]) == ("fail", "artifact", par["atol"])
    assert rec["overall_verdict"] == "fail"
    assert rec["validity"]["valid"], rec["validity"]["reasons"]  # so the gate's word is 1
    gate = subprocess.run([sys.executable, "-m", "harness.cli", "gate", "--results",
                           str(reports), "--targets-dir", str(targets)], cwd=REPO,
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
                          env={**os.environ, "GEM_HIL_LOCAL_HOME": str(local_home)})
    assert gate.returncode == 1, gate.stdout + gate.stderr
    assert "parity_max_abs_diff" in gate.stdout
    written = json.loads(out.path.read_text())
    assert written["parity"] == par
