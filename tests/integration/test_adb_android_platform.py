"""The Android platform (conditioning, fingerprint, sensors) and the bench
engine through the ADB peer: an emulated Pixel 6 answering with recorded
Pixel 6 dumpsys/sysfs output, processes running for real on this host."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("adb_shell", reason="the ADB tests need adb-shell==0.4.4")

from harness.platforms import get_platform  # noqa: E402
from harness.platforms.android import AndroidPlatform  # noqa: E402
from harness.profiles import parse_profile  # noqa: E402
from harness.transports.adb import AdbTransport  # noqa: E402
from tests.adb_peer import fixtures as peer_fixtures  # noqa: E402
from tests.adb_peer.fixtures import make_targets_dir  # noqa: E402

adb_key = peer_fixtures.adb_key  # pytest fixture, shared with the other ADB tests
adb_peer = peer_fixtures.adb_peer  # pytest fixture, shared with the other ADB tests

pytestmark = [pytest.mark.adb]

FAKE_AGENT = """import sys, time
block = bytearray(40 * 1024 * 1024)  # 40 MiB touched: VmHWM must see it
for i in range(0, len(block), 4096):
    block[i] = 1
time.sleep(float(sys.argv[1]))
print('{"ok": true}')
"""


@pytest.fixture
def emulated(adb_peer, adb_key, tmp_path):
    targets = make_targets_dir(tmp_path / "targets", adb_peer, adb_key)
    profile = parse_profile(targets / "pixel6-emulated.toml")
    t = AdbTransport.from_profile(profile)
    yield profile, t, adb_peer
    t.close()


def test_get_platform_gives_android(emulated):
    profile, _, _ = emulated
    assert isinstance(get_platform(profile), AndroidPlatform)


def test_prepare_run_finish_records_conditioning_and_sensors(emulated, tmp_path):
    profile, t, peer = emulated
    plat = AndroidPlatform(profile)
    agent = tmp_path / "gem_agent.py"
    agent.write_text(FAKE_AGENT)
    t.push(agent, "/data/local/tmp/gem-hil/agent/gem_agent.py")
    done = plat.prepare(t)
    assert done["fingerprint"]["build_fingerprint"].startswith("google/oriole/oriole:14/")
    assert done["fingerprint"]["sdk_level"] == 34
    assert done["steps"]["force_idle"] == "Now forced in to deep idle mode"
    assert done["steps"]["cooldown"]["reached"] and done["steps"]["cooldown"]["skin_c"] == 31.112
    argv = plat.agent_argv("/data/local/tmp/gem-hil/agent/gem_agent.py", ["2.0"])
    assert argv[:2] == ["taskset", "c0"]
    res = t.run(argv, timeout_s=60)
    assert res.ok, res.stdout
    out = plat.finish(t)
    s = out["sensors"]
    assert s["samples"] >= 3
    assert s["agent_vm_hwm_kb"] > 40 * 1024  # real VmHWM of the running agent, in kB
    assert s["agent_meminfo_total_pss_max_kb"] == 68064  # recorded dumpsys answer
    assert s["thermal_max_c"]["BIG"] == 38.0 and s["cpufreq_mean_khz"]["cpu6"] == 2802000
    assert s["energy"]["source"].startswith("odpm")
    assert s["energy"]["total_mj"] > 0 and "S2M_VDD_CPUCL2:CPU(BIG)" in s["energy"]["rails_mj"]
    assert s["battery"]["current_sign"] == -1 and s["battery"]["mean_power_mw"] > 0
    assert set(out["undone"]) == {"force_idle", "screen_off"}
    log = peer.sandbox.log_lines()
    assert "dumpsys deviceidle force-idle" in log and "dumpsys deviceidle unforce" in log
    assert any(line.startswith("taskset c0") for line in log)


def test_malformed_dumpsys_is_recorded_not_a_crash(emulated):
    profile, t, peer = emulated
    peer.sandbox.override("dumpsys_power_stats.txt", "Error: HAL died\n")
    plat = AndroidPlatform(profile)
    plat.prepare(t)
    out = plat.finish(t)
    energy = out["sensors"]["energy"]
    note = " ".join(out["sensors"]["notes"])
    assert "`dumpsys android.hardware.power.stats.IPowerStats/default`" in note
    assert energy["source"] in (None, "battery current_now x voltage_now")


def test_gem_bench_through_adb_gives_a_valid_record(emulated, fixture_artifact, tmp_path):
    from harness.bench import DeviceSession
    from harness.record import schema_errors

    profile, _, _ = emulated
    with DeviceSession(profile) as session:
        outcome = session.run_benchmark(fixture_artifact, report_dir=tmp_path / "reports")
        again = session.run_benchmark(fixture_artifact)
    rec = outcome.record
    assert schema_errors(rec) == []
    assert rec["device"]["transport"] == "adb" and rec["device"]["platform"] == "android"
    assert rec["parity"]["passed"] and rec["latency_ms"]["count"] >= 20
    cond = rec["environment"]["conditioning"]
    assert cond["fingerprint"]["product_model"] == "Pixel 6"
    assert rec["platform_sensors"]["energy"]["total_mj"] > 0
    # the ODPM reading spans the whole agent process: kept as process energy, with
    # no per-inference figure derived from it
    assert rec["energy"]["process_energy_mj"] == rec["platform_sensors"]["energy"]["total_mj"]
    assert rec["energy"]["energy_per_inference_mj"] is None and rec["energy"]["note"]
    assert again.record["harness"]["push_skipped"] is True


def test_benchmark_model_runner_pushes_runs_and_parses(emulated, tmp_path):
    """A stand-in benchmark_model (prints the recorded Pixel 6 output) run
    through the real push/run path, parsed into the agent contract."""
    profile, t, peer = emulated
    sample = Path(__file__).resolve().parents[1] / "data" / "android" / \
        "benchmark_model_output.txt"
    fake = tmp_path / "benchmark_model"
    fake.write_text(f"#!/bin/sh\necho \"$@\" > bm_args\ncat {sample}\n")  # cwd: /data/local/tmp
    fake.chmod(0o755)
    plat = AndroidPlatform(profile)
    out = plat.run_benchmark_model(t, AndroidPlatform.find_benchmark_model(str(fake)),
                                   "/data/local/tmp/gem-hil/m.tflite")
    assert out["latency_summary_us"]["count"] == 58
    assert out["cold_start"]["session_create_ms"] == 42.117
    # arguments reached the process sandbox-mapped; map back to device paths
    args = peer.sandbox.map_path("/data/local/tmp/bm_args").read_text().replace(
        str(peer.sandbox.root), "")
    assert "--graph=/data/local/tmp/gem-hil/m.tflite" in args and "--num_runs=20" in args
    assert any(line.startswith("taskset c0") for line in peer.sandbox.log_lines())


def test_drop_mid_benchmark_is_recorded_as_failure(emulated, fixture_artifact, tmp_path):
    """The phone vanishes while the agent runs: a failure record with the
    reason, and no silent retry into a different number."""
    import json
    import threading
    from dataclasses import replace

    from harness.bench import DeviceSession
    from harness.errors import ConnectError

    profile, _, peer = emulated
    settings = replace(profile.run, min_duration_s=8.0, max_duration_s=10.0, max_count=10**6)
    reports = tmp_path / "reports"
    with DeviceSession(profile) as session:
        session.ensure_agent()
        session.push_artifact(fixture_artifact)
        threading.Timer(2.5, peer.vanish, kwargs={"seconds": 0.5}).start()
        with pytest.raises(ConnectError, match="NOT retried"):
            session.run_benchmark(fixture_artifact, report_dir=reports, settings=settings)
    (path,) = reports.rglob("*.json")
    rec = json.loads(path.read_text())
    assert rec["overall_verdict"] == "error" and rec["latency_ms"] is None
    assert rec["error"]["kind"] == "transport" and "link dropped" in rec["error"]["message"]
