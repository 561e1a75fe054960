"""`gem-hil farm` end to end on `local` devices (this host, one process each):
records into the store and reports/<campaign>/, health and quarantine, leases
(busy, lost mid-run, released), status / release / return, the dashboard."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("sqlalchemy", reason="needs the farm extra: pip install gem-hil[farm]")

from harness.farm import leases  # noqa: E402
from harness.history.store import open_store  # noqa: E402
from tests.support.farm_targets import inventory, local_device  # noqa: E402
from tests.support.procs import processes  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def gem_hil(tmp_path: Path, *argv: str, timeout: float = 900) -> subprocess.CompletedProcess:
    env = dict(os.environ, GEM_HIL_LOCAL_HOME=str(tmp_path / "device-home"))
    return subprocess.run([sys.executable, "-m", "harness.cli", *argv], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def agents_of(tmp_path: Path) -> list[int]:
    """Agents running for this test's local devices (their cwd is the device home)."""
    home = str(tmp_path / "device-home")
    out = []
    for p in processes():
        if not any("gem_agent" in a for a in p.argv):
            continue
        try:
            cwd = os.readlink(f"/proc/{p.pid}/cwd")
        except OSError:
            continue
        if cwd.startswith(home) or any(home in a for a in p.argv):
            out.append(p.pid)
    return out


@pytest.fixture
def farm(tmp_path):
    targets = tmp_path / "targets"
    for name in ("loc-a", "loc-b"):
        local_device(targets, name)
    local_device(targets, "loc-broken", python="/bin/false")  # the runtime cannot load
    return inventory(tmp_path / "farm.toml", ["loc-a", "loc-b", "loc-broken"],
                     farm="quarantine_after = 2\nheartbeat_s = 0.5\nlease_expiry_s = 5")


def test_campaign_records_failures_quarantine_and_dashboard(farm, tmp_path):
    res = gem_hil(tmp_path, "farm", "run", "--inventory", str(farm))
    assert res.returncode == 1, res.stdout + res.stderr  # loc-broken failed its health check
    camp_dir = next((tmp_path / "reports").glob("test-*"))
    summary = json.loads((camp_dir / "campaign.json").read_text())
    devs = summary["devices"]
    assert devs["loc-a"]["verdict"] in ("pass", "inconclusive")
    assert len(devs["loc-a"]["records"]) == 1 and len(devs["loc-b"]["records"]) == 1
    assert devs["loc-broken"]["verdict"] == "error"
    assert "runtime" in devs["loc-broken"]["failures"][0]["reason"]
    for name in ("loc-a", "loc-b"):
        [rec_file] = (camp_dir / name).glob("*.json")
        assert (camp_dir / name / "device.log").read_text().count("health: good") == 1
        rec = json.loads(rec_file.read_text())
        assert rec["device"]["name"] == name and rec["latency_ms"]["samples_ms"]
    store = open_store(str(tmp_path / "reports" / "history.sqlite"))
    try:
        runs = store.runs(campaign_id=summary["campaign"], with_records=True)
        assert sorted(r.device for r in runs) == ["loc-a", "loc-b"]
        assert all(r.record["latency_ms"]["samples_ms"] for r in runs)
        [f] = store.failures(campaign_id=summary["campaign"])
        assert (f.device, f.stage) == ("loc-broken", "health")
        assert store.device("loc-broken").health == "unknown"  # 1 of 2 failures
        assert all(leases.state(store, d).holder is None for d in ("loc-a", "loc-b",
                                                                    "loc-broken"))
    finally:
        store.close()
    assert not agents_of(tmp_path)

    # a second night: loc-broken fails again and is quarantined
    res = gem_hil(tmp_path, "farm", "run", "--inventory", str(farm), "--device", "loc-broken")
    assert res.returncode == 1
    status = gem_hil(tmp_path, "farm", "status", "--inventory", str(farm))
    line = next(ln for ln in status.stdout.splitlines() if ln.startswith("loc-broken"))
    assert " bad " in line and "quarantined after 2" in line
    # third: not run at all, and that is a recorded failure, not a silent gap
    res = gem_hil(tmp_path, "farm", "run", "--inventory", str(farm), "--device", "loc-broken")
    assert res.returncode == 1 and "quarantined" in res.stdout
    res = gem_hil(tmp_path, "farm", "return", "loc-broken", "--inventory", str(farm))
    assert res.returncode == 0
    status = gem_hil(tmp_path, "farm", "status", "--inventory", str(farm))
    assert " unknown " in next(ln for ln in status.stdout.splitlines()
                               if ln.startswith("loc-broken"))

    res = gem_hil(tmp_path, "report", "--inventory", str(farm))
    assert res.returncode == 0, res.stderr
    html = (tmp_path / "reports" / "index.html").read_text()
    assert 'data-device="loc-a"' in html and 'data-device="loc-broken"' in html
    assert "did not run: health/quarantined" in html


def test_busy_and_lost_leases(tmp_path):
    targets = tmp_path / "targets"
    local_device(targets, "loc-slow", min_duration_s=20, max_duration_s=30)
    local_device(targets, "loc-held")
    farm = inventory(tmp_path / "farm.toml", ["loc-slow", "loc-held"],
                     farm="heartbeat_s = 0.5\nlease_expiry_s = 3")
    url = str(tmp_path / "reports" / "history.sqlite")
    store = open_store(url)
    try:
        assert leases.acquire(store, "loc-held", "another-host:123", expiry_s=600)

        def release_when_running():
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline:
                if agents_of(tmp_path):  # the slow device's agent is measuring
                    time.sleep(1.0)
                    assert leases.release(store, "loc-slow")  # gem-hil farm release
                    return
                time.sleep(0.2)

        t = threading.Thread(target=release_when_running, daemon=True)
        t.start()
        t0 = time.monotonic()
        res = gem_hil(tmp_path, "farm", "run", "--inventory", str(farm))
        wall = time.monotonic() - t0
        t.join(5)
        assert res.returncode == 1, res.stdout + res.stderr
        fails = {f.device: f for f in store.failures()}
        assert fails["loc-held"].stage == "lease" and fails["loc-held"].kind == "busy"
        assert "another-host:123" in fails["loc-held"].reason
        assert fails["loc-slow"].kind == "lease_lost"
        # the run stopped at the next heartbeat, not after its 20 s window, and its
        # agent was stopped with it; the interrupted run is still a record
        assert wall < 60
        assert not agents_of(tmp_path)
        [run] = store.runs(device="loc-slow", with_records=True)
        assert run.record["error"]["kind"] == "interrupted"
        # the other host's lease is untouched
        assert leases.state(store, "loc-held").holder == "another-host:123"
    finally:
        store.close()
