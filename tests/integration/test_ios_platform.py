"""The iOS platform end to end against a stand-in Mac: a REAL sshd board whose
`xcrun` is a fake replaying recorded devicectl / coremlcompiler / bench-app
output (tests/support/fake_xcrun.py, tests/data/ios/).

Real here: SSH (host key verified, key 0600), the push of the artifact folder,
unzip, mkdir/cp/cat on the "Mac", quoting of every argument (the workdir and
the app path have a space and a quote), the engine turning the bench record
into a result record, and the processes that must not be left running. Only
recordings: what devicectl, coremlcompiler and the bench app print (no Mac or
iPhone exists here; docs/ios.md says which parts that leaves unproven).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.artifacts import LocalArtifact, load_artifact
from harness.bench import DeviceSession
from harness.errors import AgentError
from harness.profiles import parse_profile
from harness.record import schema_errors
from tests.support.coreml_artifact import make_placeholder_artifact
from tests.support.fake_mac import RECORDED_UDID, RECORDINGS, FakeMac
from tests.support.sshd_board import SshdBoard

REPO = Path(__file__).resolve().parents[2]
BUNDLE = "dev.gemhil.GemBench"

pytestmark = [pytest.mark.ssh]


@pytest.fixture(scope="module")
def coreml_artifact(tmp_path_factory: pytest.TempPathFactory) -> LocalArtifact:
    return load_artifact(make_placeholder_artifact(tmp_path_factory.mktemp("coreml")))


@pytest.fixture
def mac(sshd_board: SshdBoard) -> Iterator[FakeMac]:
    fake = FakeMac(sshd_board).install()
    try:
        yield fake
    finally:
        fake.cleanup()


def run_bench(mac: FakeMac, tmp_path: Path, artifact: LocalArtifact, **profile_kw):
    """One benchmark through the engine; (outcome or the raised error, the record)."""
    targets = mac.make_targets(tmp_path / "targets", **profile_kw)
    profile = parse_profile(targets / "iphone13.toml")
    reports = tmp_path / "reports"
    result: object
    with DeviceSession(profile) as session:
        try:
            result = session.run_benchmark(artifact, report_dir=reports, run_id="ios-test")
        except AgentError as exc:
            result = exc
    (path,) = reports.glob("*.json")
    record = json.loads(path.read_text())
    assert schema_errors(record) == []
    return result, record


def expected_sequence(mac: FakeMac, art: LocalArtifact, token: str) -> list[list[str]]:
    """The xcrun calls of one clean run, in order, exactly as the fake must see them."""
    key = art.sha256[:16]
    w = mac.workdir
    js = f"{w}/ios/devicectl"
    app_dir = f"Documents/gem-hil/{key}"
    record = f"Documents/gem-hil/records/{token}.json"
    dev = ["--device", RECORDED_UDID]
    container = ["--domain-type", "appDataContainer", "--domain-identifier", BUNDLE]
    return [
        ["devicectl", "list", "devices", "--json-output", f"{js}/001-list-devices.json"],
        ["coremlcompiler", "compile", f"{w}/ios/packages/{key}/model.mlpackage",
         f"{w}/ios/compiled/{key}"],
        ["devicectl", "device", "install", "app", *dev, f"{w}/{mac.app}", "--json-output",
         f"{js}/002-device-install-app.json"],
        ["devicectl", "device", "copy", "to", *dev, *container, "--source",
         f"{w}/ios/compiled/{key}", "--destination", app_dir, "--json-output",
         f"{js}/003-device-copy-to.json"],
        ["devicectl", "device", "process", "launch", *dev, "--console", "--terminate-existing",
         "--json-output", f"{js}/004-device-process-launch.json", "--", BUNDLE,
         "--artifact-dir", app_dir, "--seq-len-tokens", "128", "--threads", "1",
         "--warmup-count", "10", "--min-count", "100", "--min-duration-s", "1.0",
         "--max-count", "2000", "--max-duration-s", "120.0", "--input-pool-size", "8",
         "--compute-units", "cpu_and_ne", "--record", record, "--model-file",
         "model.mlmodelc"],
        ["devicectl", "device", "copy", "from", *dev, *container, "--source", record,
         "--destination", f"{w}/ios/records/{token}.json", "--json-output",
         f"{js}/005-device-copy-from.json"],
    ]


def launch_token(calls: list[list[str]]) -> str:
    (launch,) = [c for c in calls if c[1:4] == ["device", "process", "launch"]]
    record = launch[launch.index("--record") + 1]
    return Path(record).stem


def test_a_run_comes_back_as_a_schema_valid_record(mac, tmp_path, coreml_artifact):
    outcome, rec = run_bench(mac, tmp_path, coreml_artifact,
                            coreml={"compute_units": "cpu_and_ne"})
    assert not isinstance(outcome, Exception), outcome
    calls = mac.calls()
    assert calls == expected_sequence(mac, coreml_artifact, launch_token(calls))
    # quoting: the paths with a space and a quote arrived as single arguments, and
    # the fake saw the real files behind them (the app bundle, the compiled model)
    assert all(c["cwd"] == str(mac.board.home) for c in mac.call_records())
    key = coreml_artifact.sha256[:16]
    assert mac.phone_file(BUNDLE, f"Documents/gem-hil/{key}/model.mlmodelc/weights/"
                                  "weight.bin").is_file()
    assert mac.phone_file(BUNDLE, f"Documents/gem-hil/{key}/manifest.json").is_file()
    recorded = json.loads((RECORDINGS / "bench_record.json").read_text())
    assert rec["latency_ms"]["samples_ms"] == [s / 1e6 for s in recorded["latency_samples_ns"]]
    assert rec["op_placement"] == recorded["op_placement"]
    assert rec["parity"] == recorded["parity"]
    assert rec["device"]["platform"] == "ios" and rec["device"]["runtime"] == "coreml"
    assert rec["artifact"]["format"] == "coreml"
    env = rec["environment"]
    assert env["os"] == "iOS 17.5.1" and env["machine"] == "iPhone14,5"
    assert env["runtime_detail"]["compute_units"] == "cpu_and_ne"
    fp = env["conditioning"]["fingerprint"]
    assert fp["model"] == "iPhone 13" and fp["udid"] == RECORDED_UDID
    assert fp["os_version"] == "17.5.1" and fp["developer_mode"] == "enabled"
    assert rec["memory"]["peak_rss_mb"] == pytest.approx(187392 / 1024)
    assert "phys_footprint" in rec["memory"]["source"]
    assert rec["stopping"]["why_not_sequential"].startswith("the iOS bench app stops")
    assert rec["error"] is None and rec["overall_verdict"] == "pass"
    assert mac.running_apps() == []


def test_second_run_in_a_session_skips_install_and_copy(mac, tmp_path, coreml_artifact):
    targets = mac.make_targets(tmp_path / "targets")
    profile = parse_profile(targets / "iphone13.toml")
    with DeviceSession(profile) as session:
        for i in range(2):
            session.run_benchmark(coreml_artifact, report_dir=tmp_path / "r", run_id=f"r{i}")
    verbs = [" ".join(a for a in c[1:4] if not a.startswith("-")) for c in mac.calls()
             if c[0] == "devicectl"]
    assert verbs.count("device install app") == 1 and verbs.count("device copy to") == 1
    assert verbs.count("device process launch") == 2 and verbs.count("list devices") == 2
    assert len(list((tmp_path / "r").glob("*.json"))) == 2


def test_unknown_udid_is_a_recorded_failure_naming_device_and_step(mac, tmp_path,
                                                                   coreml_artifact):
    wrong = "00008110-0000000000FFFF1E"
    err, rec = run_bench(mac, tmp_path, coreml_artifact, udid=wrong)
    assert isinstance(err, AgentError)
    msg = str(err)
    assert msg.startswith(f"iphone13: step 'find the iPhone': no device with UDID {wrong}")
    assert f"gem-hil iPhone 13 ({RECORDED_UDID})" in msg  # what the Mac does see
    assert rec["error"]["kind"] == "agent" and wrong in rec["error"]["message"]
    assert rec["overall_verdict"] == "error" and rec["latency_ms"] is None
    assert [c[:3] for c in mac.calls()] == [["devicectl", "list", "devices"]]


def test_compile_failure_stops_before_the_phone(mac, tmp_path, coreml_artifact):
    mac.scenario(compile="error")
    err, rec = run_bench(mac, tmp_path, coreml_artifact)
    assert isinstance(err, AgentError)
    assert f"iphone13 (iPhone {RECORDED_UDID}): step 'compile the model': coremlcompiler " \
           "failed (exit code 1)" in str(err)
    assert "validator error: Model input 'input_ids'" in str(err)
    assert rec["error"]["kind"] == "agent" and rec["overall_verdict"] == "error"
    assert [c[0] for c in mac.calls()] == ["devicectl", "coremlcompiler"]


def test_locked_phone_is_a_launch_failure(mac, tmp_path, coreml_artifact):
    mac.scenario(launch="locked")
    err, rec = run_bench(mac, tmp_path, coreml_artifact)
    assert isinstance(err, AgentError)
    assert "step 'run the bench app': the launch failed: The application failed to launch." \
        in str(err)
    assert "could not be, unlocked" in str(err)
    assert not any(c[1:4] == ["device", "copy", "from"] for c in mac.calls())


def test_app_crash_mid_run_is_a_recorded_failure(mac, tmp_path, coreml_artifact):
    mac.scenario(launch="crash")
    err, rec = run_bench(mac, tmp_path, coreml_artifact)
    assert isinstance(err, AgentError)
    msg = str(err)
    assert "step 'collect the record': the bench app ended without writing its record" in msg
    assert "crashed or was killed mid-run" in msg and "No such file or directory" in msg
    assert "terminated due to signal 9 (SIGKILL)" in msg  # the console tail says why
    assert rec["error"]["kind"] == "agent" and rec["overall_verdict"] == "error"
    assert "signal 9" in rec["error"]["stderr_tail"]
    assert mac.running_apps() == []


def test_overrunning_app_is_stopped_on_the_phone(mac, tmp_path, coreml_artifact):
    mac.scenario(launch="hang")
    t0 = time.monotonic()
    err, rec = run_bench(mac, tmp_path, coreml_artifact, timeout_s=3.0)
    assert time.monotonic() - t0 < 30
    assert isinstance(err, AgentError)
    msg = str(err)
    assert "step 'run the bench app'" in msg and "did not finish within its timeout of 3 s" \
        in msg
    assert "terminated the bench app on the iPhone" in msg
    verbs = [c[1:4] for c in mac.calls()]
    assert ["device", "info", "processes"] in verbs
    assert ["device", "process", "terminate"] in verbs
    assert mac.running_apps() == []


RUNNER = r"""
import sys
from pathlib import Path

from harness import interrupts
from harness.artifacts import load_artifact
from harness.bench import DeviceSession
from harness.profiles import parse_profile

profile = parse_profile(sys.argv[1])
artifact = load_artifact(sys.argv[2])
with interrupts.signals_as_exceptions():
    try:
        with DeviceSession(profile) as s:
            s.run_benchmark(artifact, report_dir=Path(sys.argv[3]), run_id="interrupted")
    except KeyboardInterrupt as exc:
        print(interrupts.describe(exc), flush=True)
        sys.exit(interrupts.exit_code(exc))
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_interrupt_terminates_the_app_on_the_phone(mac, tmp_path, coreml_artifact, sig):
    mac.scenario(launch="hang")
    targets = mac.make_targets(tmp_path / "targets")
    reports = tmp_path / "reports"
    proc = subprocess.Popen([sys.executable, "-c", RUNNER, str(targets / "iphone13.toml"),
                             str(coreml_artifact.folder), str(reports)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ))
    try:
        deadline = time.monotonic() + 60
        while not mac.running_apps() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        (app_pid,) = mac.running_apps()
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 128 + sig, out + err
    assert f"interrupted by {signal.Signals(sig).name} while running the bench app" in out
    assert f"terminated the bench app on the iPhone {RECORDED_UDID} (PID {app_pid})" in out
    assert mac.running_apps() == []
    terminate = [c for c in mac.calls() if c[1:4] == ["device", "process", "terminate"]]
    assert terminate == [["devicectl", "device", "process", "terminate", "--device",
                          RECORDED_UDID, "--pid", str(app_pid), "--json-output",
                          terminate[0][-1]]]
    (path,) = reports.glob("*.json")
    rec = json.loads(path.read_text())
    assert schema_errors(rec) == []
    assert rec["error"]["kind"] == "interrupted" and rec["overall_verdict"] == "error"
    assert f"PID {app_pid}" in rec["error"]["message"]


def test_devices_check_asks_the_mac_for_the_iphone(mac, tmp_path):
    """`gem-hil devices --check` reaches the Mac over SSH and then the phone behind it."""
    def check(udid: str) -> subprocess.CompletedProcess:
        targets = mac.make_targets(tmp_path / udid, udid=udid)
        return subprocess.run([sys.executable, "-m", "harness.cli", "devices", "--check",
                               "iphone13", "--targets-dir", str(targets)], cwd=REPO,
                              capture_output=True, text=True, timeout=120)

    ok = check(RECORDED_UDID)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.splitlines()[2].split() == ["iphone13", "ssh", "ios", "coreml", "coreml",
                                                 "edge-int8", "reachable"]
    gone = check("00008110-0000000000FFFF1E")
    assert gone.returncode == 3 and "UNREACHABLE" in gone.stdout
    assert "no device with UDID 00008110-0000000000FFFF1E" in gone.stderr
