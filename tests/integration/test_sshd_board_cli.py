"""The sshd board's command line, as a person starts it by hand (python -m).

The board must come up in its own process, hand out a targets folder the
harness can use as is, and leave nothing behind when CI (or a person) sends
SIGTERM: no sshd, no login of its user, no temporary folder, no user it made.
"""

from __future__ import annotations

import os
import pwd
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from harness.profiles import parse_profile
from harness.transports.ssh import SshTransport
from tests.support.sshd_board import READY, SshdBoard, _is_sshd, _processes_of, _read_acl

REPO = Path(__file__).resolve().parents[2]
MODULE = "tests.support.sshd_board"


def test_help_says_how_to_use_it() -> None:
    res = subprocess.run([sys.executable, "-m", MODULE, "--help"], cwd=REPO,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith(f"usage: python -m {MODULE}")
    for words in ("--targets-dir", "--user", "SIGTERM", "needs", "root", READY):
        assert words in res.stdout, words


class _Lines:
    """Collects a child's output lines in a thread, so a hung child cannot hang the test."""

    def __init__(self, stream) -> None:
        self.lines: list[str] = []
        self.ready = threading.Event()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream) -> None:
        for line in stream:
            self.lines.append(line.rstrip("\n"))
            if line.strip() == READY:
                self.ready.set()
        self.ready.set()  # EOF: the child is gone

    def join(self) -> None:
        self._thread.join(timeout=10)


def test_board_started_by_hand_serves_the_harness_and_cleans_up(tmp_path: Path) -> None:
    reason = SshdBoard.unavailable_reason()
    if reason:
        pytest.skip(f"real sshd board unavailable: {reason}")
    user = f"gemhilcli{os.getpid() % 100000}"  # its own user: removing it harms nobody
    with pytest.raises(KeyError):
        pwd.getpwnam(user)
    proc = subprocess.Popen([sys.executable, "-m", MODULE, "--user", user], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = _Lines(proc.stdout), _Lines(proc.stderr)
    try:
        assert out.ready.wait(60), f"no {READY} within 60 s: {out.lines} {err.lines}"
        assert proc.poll() is None, f"board exited early ({proc.returncode}): {err.lines}"
        info = dict(line.split(": ", 1) for line in out.lines
                    if ": " in line and not line.startswith("#"))
        assert info["user"] == user and info["host"] == "127.0.0.1"
        sshd_pid, base = int(info["sshd_pid"]), Path(info["key_file"]).parent
        uid = pwd.getpwnam(user).pw_uid
        profile = parse_profile(Path(info["targets_dir"]) / "ssh-board.toml")
        assert profile.path == Path(info["profile"])
        transport = SshTransport.from_profile(profile)
        try:
            res = transport.run(["sh", "-c", "id -un; sleep 300 >/dev/null 2>&1 &"])
            assert res.ok and res.stdout.split() == [user], res
        finally:
            transport.close()
        assert _processes_of(uid), "the login's background job should be running"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, err.lines
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        out.join()
        err.join()
    assert not _is_sshd(sshd_pid), f"sshd {sshd_pid} still running"
    assert not base.exists(), f"{base} left behind"
    with pytest.raises(KeyError):
        pwd.getpwnam(user)
    assert _processes_of(uid) == [], "a process of the removed user is still running"
    granted = [Path(line.rsplit(" on ", 1)[1].split(" (")[0]) for line in err.lines
               if line.startswith(f"# granted {user}")]
    for path in granted:
        entries = _read_acl(path) or []
        assert all(e[2] != uid for e in entries if e[0] == 0x02), f"{path} keeps {user}'s ACL"
    assert err.lines[-1] == "# sshd board stopped"
