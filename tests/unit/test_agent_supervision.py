"""The agent never outlives its harness, and a stale one is ended only if it is ours.

The agent runs as on a device: a copied file in a subprocess, isolated (-I).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

AGENT = Path(__file__).resolve().parents[2] / "firmware" / "agent" / "gem_agent.py"
PERIOD_S = 2.0  # gem_agent.WATCHDOG_PERIOD_S, checked below
LONG = ["--min-duration-s", "60", "--max-duration-s", "120", "--max-count", "100000000",
        "--min-count", "5", "--warmup-count", "1"]


@pytest.fixture
def device(tmp_path: Path) -> Path:
    """A device folder holding a copy of the agent (the harness's layout)."""
    folder = tmp_path / "device" / "agent"
    folder.mkdir(parents=True)
    shutil.copy(AGENT, folder / "gem_agent.py")
    return folder


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen]]:
    started: list[subprocess.Popen] = []
    yield started
    for p in started:
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=10)


def start(device: Path, procs: list, *args: str, stdin=subprocess.PIPE) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-I", str(device / "gem_agent.py"), *args],
                         stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         cwd=device.parent, start_new_session=True)
    procs.append(p)
    return p


def wait_lease(lease: Path, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if lease.exists():
            return json.loads(lease.read_text())
        time.sleep(0.02)
    raise AssertionError(f"no lease at {lease}")


def stop_stale(device: Path, lease: Path) -> tuple[int, dict]:
    res = subprocess.run([sys.executable, "-I", str(device / "gem_agent.py"), "--stop-stale",
                          "--pid-file", str(lease)], capture_output=True, text=True,
                         timeout=60, stdin=subprocess.DEVNULL)
    (line,) = [ln for ln in res.stdout.splitlines() if ln.strip()]
    return res.returncode, json.loads(line)


def test_the_documented_period_is_the_code_s():
    text = AGENT.read_text()
    assert f"WATCHDOG_PERIOD_S = {PERIOD_S}" in text
    assert f"({PERIOD_S:g} s)" in text  # the module docstring says the same


def test_watchdog_stops_the_agent_when_stdin_closes(device, procs, fixture_artifact):
    lease = device / "gem_agent.pid"
    p = start(device, procs, "--watchdog-stdin", "--pid-file", str(lease),
              "--artifact-dir", str(fixture_artifact.folder), *LONG)
    info = wait_lease(lease)
    assert info["pid"] == p.pid and info["start_ticks"] and info["boot_id"]
    time.sleep(0.5)
    t0 = time.monotonic()
    p.stdin.close()  # what the kernel does to the pipe when the harness dies
    p.stdin = None
    _, err = p.communicate(timeout=PERIOD_S + 5)
    assert time.monotonic() - t0 < PERIOD_S + 1
    assert p.returncode == 6, err
    assert b"the harness is gone (its stdin closed)" in err
    assert not lease.exists()


def test_watchdog_stops_the_agent_when_its_parent_dies(device, procs, fixture_artifact):
    """stdin is /dev/null here (not watched); the parent check still catches it."""
    lease = device / "gem_agent.pid"
    script = (f"{sys.executable} -I {device / 'gem_agent.py'} --watchdog-stdin --pid-file "
              f"{lease} --artifact-dir {fixture_artifact.folder} {' '.join(LONG)} "
              "</dev/null >/dev/null 2>&1 & echo $!; exec sleep 30")
    parent = subprocess.Popen(["sh", "-c", script], stdout=subprocess.PIPE, text=True,
                              start_new_session=True)
    procs.append(parent)
    pid = int(parent.stdout.readline().strip())
    try:
        wait_lease(lease)
        time.sleep(0.5)
        assert _alive(pid), "the agent must run while its parent lives"
        parent.kill()
        parent.wait(timeout=10)
        deadline = time.monotonic() + PERIOD_S + 3
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.05)
        assert not _alive(pid), "the orphaned agent kept running"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def test_without_the_flag_a_closed_stdin_changes_nothing(device, procs, fixture_artifact):
    p = start(device, procs, "--artifact-dir", str(fixture_artifact.folder),
              "--min-duration-s", "1.5", "--min-count", "5", "--max-count", "100000000")
    time.sleep(0.3)
    p.stdin.close()
    p.stdin = None
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    assert json.loads(out)["ok"] is True


def test_sigterm_gives_one_record_and_removes_the_lease(device, procs, fixture_artifact):
    lease = device / "gem_agent.pid"
    p = start(device, procs, "--watchdog-stdin", "--pid-file", str(lease),
              "--artifact-dir", str(fixture_artifact.folder), *LONG)
    wait_lease(lease)
    time.sleep(0.5)
    p.send_signal(signal.SIGTERM)
    p.wait(timeout=10)  # stdin stays open: the signal, not the watchdog, stops it
    out, err = p.stdout.read(), p.stderr.read()
    assert p.returncode == 128 + signal.SIGTERM, err
    (line,) = out.decode().splitlines()
    rec = json.loads(line)
    assert rec["ok"] is False and rec["error"]["kind"] == "interrupted"
    assert "SIGTERM" in rec["error"]["message"]
    assert not lease.exists()


def test_stop_stale_ends_our_agent(device, procs, fixture_artifact):
    lease = device / "gem_agent.pid"
    p = start(device, procs, "--watchdog-stdin", "--pid-file", str(lease),
              "--artifact-dir", str(fixture_artifact.folder), *LONG)
    wait_lease(lease)
    rc, res = stop_stale(device, lease)
    assert rc == 0 and res["ok"], res
    (ended,) = res["ended"]
    assert ended["pid"] == p.pid and ended["gone"] and ended["signals"][0] == "SIGTERM"
    assert p.wait(timeout=10) != 0
    assert not lease.exists()


def test_stop_stale_with_no_lease_does_nothing(device):
    rc, res = stop_stale(device, device / "gem_agent.pid")
    assert rc == 0 and res == {**res, "ok": True, "ended": [], "notes": []}


def test_stop_stale_never_signals_an_unrelated_process(device, procs):
    """A lease whose PID now belongs to someone else, with the right start time and
    boot id even: the command line gives it away, so the process lives on."""
    sleeper = subprocess.Popen(["sleep", "60"], start_new_session=True)
    procs.append(sleeper)
    ticks = int(Path(f"/proc/{sleeper.pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    lease = device / "gem_agent.pid"
    lease.write_text(json.dumps({"pid": sleeper.pid, "start_ticks": ticks, "boot_id": boot}))
    rc, res = stop_stale(device, lease)
    assert rc == 0 and res["ended"] == []
    assert "is not gem_agent.py" in res["notes"][0]
    time.sleep(0.2)
    assert sleeper.poll() is None, "an unrelated process was killed"
    assert not lease.exists()  # the lease named nobody of ours: it goes


def test_stop_stale_never_signals_an_agent_of_another_lease(device, procs, fixture_artifact):
    other = device / "other.pid"
    p = start(device, procs, "--watchdog-stdin", "--pid-file", str(other),
              "--artifact-dir", str(fixture_artifact.folder), *LONG)
    info = wait_lease(other)
    lease = device / "gem_agent.pid"
    lease.write_text(json.dumps(info))  # a copy naming the other workdir's agent
    _, res = stop_stale(device, lease)
    assert res["ended"] == [] and "holds another lease" in res["notes"][0]
    assert p.poll() is None


def test_stop_stale_ignores_a_reused_pid(device, procs):
    lease = device / "gem_agent.pid"
    me = os.getpid()
    boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    lease.write_text(json.dumps({"pid": me, "start_ticks": 1, "boot_id": boot}))
    _, res = stop_stale(device, lease)
    assert res["ended"] == [] and "reused" in res["notes"][0]


def test_stop_stale_needs_a_pid_file(device):
    res = subprocess.run([sys.executable, "-I", str(device / "gem_agent.py"), "--stop-stale"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and json.loads(res.stdout)["error"]["kind"] == "usage"
