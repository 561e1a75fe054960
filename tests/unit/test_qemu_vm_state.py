"""VM bookkeeping without QEMU: pid files, stale detection, stopping, errors.

A "fake qemu" is a sleeping Python process whose argv[0] is
qemu-system-aarch64 and whose arguments carry -pidfile, which is all the
harness looks at in /proc/PID/cmdline.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.errors import TransportError
from harness.profiles import parse_profile
from harness.qemu.image import ImagePaths
from harness.qemu.transport import VmTransport
from harness.qemu.vm import (
    QemuBootError,
    RunningVm,
    VmDiedError,
    VmSettings,
    boot_vm,
    find_vm,
    is_our_qemu,
    is_stale,
    stop_vm,
)
from harness.transports.base import CommandResult

QEMU_PROFILE = Path(__file__).resolve().parents[2] / "targets" / "qemu-pi4.toml"


def fake_qemu(pidfile: Path) -> subprocess.Popen:
    proc = subprocess.Popen(
        ["qemu-system-aarch64", "-c", "import time; time.sleep(120)", "-pidfile", str(pidfile)],
        executable=sys.executable, start_new_session=True)
    pidfile.write_text(f"{proc.pid}\n")
    deadline = time.monotonic() + 10
    while not is_our_qemu(proc.pid, pidfile):  # until exec replaced the forked pytest
        assert time.monotonic() < deadline, "fake qemu did not start"
        time.sleep(0.01)
    return proc


@pytest.fixture
def state(tmp_path: Path) -> Path:
    d = tmp_path / "run" / "qemu-pi4"
    d.mkdir(parents=True)
    return d


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen]:
    """An unrelated process: must never be killed by VM cleanup."""
    proc = subprocess.Popen(["sleep", "120"])
    yield proc
    proc.kill()
    proc.wait()


def write_record(state: Path, pid: int, owner: str, owner_pid: int) -> None:
    (state / "vm.json").write_text(json.dumps({
        "pid": pid, "port": 0, "image_dir": "/nowhere", "image_key": "k", "owner": owner,
        "owner_pid": owner_pid, "started_at": 0.0}))


def dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def test_is_our_qemu_needs_name_and_pidfile(state: Path, sleeper: subprocess.Popen) -> None:
    pidfile = state / "qemu.pid"
    q = fake_qemu(pidfile)
    try:
        assert is_our_qemu(q.pid, pidfile)
        assert not is_our_qemu(q.pid, state / "other.pid")  # another VM's pid file
        assert not is_our_qemu(sleeper.pid, pidfile)  # right pid file, wrong program
        assert not is_our_qemu(dead_pid(), pidfile)
    finally:
        q.kill()
        q.wait()


def test_recycled_pid_is_forgotten_not_killed(state: Path, sleeper: subprocess.Popen) -> None:
    (state / "qemu.pid").write_text(f"{sleeper.pid}\n")
    write_record(state, sleeper.pid, "session", dead_pid())
    assert find_vm("qemu-pi4", state.parent) is None
    assert not (state / "qemu.pid").exists() and not (state / "vm.json").exists()
    assert sleeper.poll() is None, "an unrelated process was killed"


def test_stale_vm_is_found_and_stopped(state: Path) -> None:
    q = fake_qemu(state / "qemu.pid")
    try:
        write_record(state, q.pid, "session", dead_pid())
        vm = find_vm("qemu-pi4", state.parent)
        assert vm is not None and vm.pid == q.pid
        assert is_stale(vm)
        how = stop_vm(vm, grace_s=0)
        assert "SIGTERM" in how
        assert q.wait(timeout=10) is not None
        assert find_vm("qemu-pi4", state.parent) is None
    finally:
        q.kill()
        q.wait()


def test_live_owner_and_cli_vms_are_not_stale(state: Path) -> None:
    q = fake_qemu(state / "qemu.pid")
    try:
        write_record(state, q.pid, "session", os.getpid())
        vm = find_vm("qemu-pi4", state.parent)
        assert vm is not None and not is_stale(vm)
        write_record(state, q.pid, "cli", dead_pid())
        vm = find_vm("qemu-pi4", state.parent)
        assert vm is not None and not is_stale(vm)
    finally:
        q.kill()
        q.wait()


def test_settings_from_profile_and_errors(tmp_path: Path) -> None:
    s = VmSettings.from_profile(parse_profile(QEMU_PROFILE))
    assert (s.smp, s.cpu, s.memory_mb) == (4, "cortex-a72", 2048)
    bad = tmp_path / "qemu-pi4.toml"
    bad.write_text(QEMU_PROFILE.read_text().replace("smp = 4", "smp = 4\nsmpp = 2"))
    with pytest.raises(Exception, match=r"\[qemu\] unknown key\(s\) smpp"):
        VmSettings.from_profile(parse_profile(bad))
    bad.write_text(QEMU_PROFILE.read_text().replace("memory_mb = 2048\n", ""))
    assert VmSettings.from_profile(parse_profile(bad)).memory_mb == 2048  # min(4096, cap)


def test_missing_image_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    exe = fake_bin / "qemu-system-aarch64"
    exe.write_text("#!/bin/sh\nexit 1\n")
    exe.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin}:{os.environ['PATH']}")
    img = ImagePaths.in_dir(tmp_path / "pi4-0000", "0000")
    with pytest.raises(QemuBootError, match=r"kernel .*vmlinuz is missing.*gem-hil qemu build pi4"):
        boot_vm(parse_profile(QEMU_PROFILE), img, state_root=tmp_path / "run")


class _Inner:
    """Stands in for the SSH transport: fails like a dropped connection."""

    def __init__(self) -> None:
        self.calls = 0

    def run(self, argv, timeout_s=None, env=None, cwd=None) -> CommandResult:
        self.calls += 1
        raise TransportError("connection reset")

    def close(self) -> None:
        pass


def test_transport_reports_a_dead_vm_with_serial_tail(state: Path) -> None:
    q = fake_qemu(state / "qemu.pid")
    (state / "serial.log").write_text("booting\n[  9.1] Out of memory: Killed process 42\n")
    vm = RunningVm("qemu-pi4", state, q.pid, 2222, "/img", "k", "session", os.getpid(), 0.0)
    t = VmTransport(parse_profile(QEMU_PROFILE), vm, _Inner(), VmSettings())  # type: ignore[arg-type]
    try:
        with pytest.raises(TransportError, match="connection reset") as exc:
            t.run(["true"])  # VM alive: the SSH error stands as it is
        assert not isinstance(exc.value, VmDiedError)
        q.kill()
        q.wait()
        with pytest.raises(VmDiedError, match=r"(?s)is gone while running.*Out of memory"):
            t.run(["python3", "agent.py"])
    finally:
        q.kill()
        q.wait()
