"""The peer against Debian's real `adb` client, so the peer is not one that
only our own client believes in. Own HOME and server port; skipped with the
reason when `adb` is not installed (apt-get install adb)."""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("adb_shell", reason="the ADB tests need adb-shell==0.4.4")

from harness.transports.adb import ensure_adb_key  # noqa: E402
from tests.adb_peer import AdbPeer  # noqa: E402

pytestmark = [pytest.mark.adb]

ADB = shutil.which("adb")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def real_adb(tmp_path: Path) -> Iterator[tuple[AdbPeer, callable]]:
    if ADB is None:
        pytest.skip("Debian's adb client is not installed (apt-get install adb)")
    home = tmp_path / "home"
    key = ensure_adb_key(home / ".android" / "adbkey")  # adb uses $HOME/.android/adbkey
    peer = AdbPeer(tmp_path / "device", [Path(str(key) + ".pub")]).start()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
           "ANDROID_ADB_SERVER_PORT": str(free_port()), "ADB_VENDOR_KEYS": ""}

    def adb(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
        return subprocess.run([ADB, *args], env=env, capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)

    try:
        adb("start-server")
        res = adb("connect", peer.serial)
        assert "connected" in res.stdout, res.stdout + res.stderr
        adb("-s", peer.serial, "wait-for-device", timeout=20)
        yield peer, adb
    finally:
        adb("kill-server")
        peer.stop()


def test_real_adb_shell_v2_exit_code_and_streams(real_adb):
    peer, adb = real_adb
    res = adb("-s", peer.serial, "shell", "echo out; echo err >&2; exit 3")
    assert res.returncode == 3  # only shell,v2 carries an exit code
    assert res.stdout == "out\n" and res.stderr == "err\n"
    assert any(s.startswith("shell,v2") for s in peer.stats.services)
    assert peer.stats.auth_ok >= 1 and peer.stats.prompts_shown == 0  # signature path


def test_real_adb_get_state_and_props(real_adb):
    peer, adb = real_adb
    assert adb("-s", peer.serial, "get-state").stdout.strip() == "device"
    out = adb("-s", peer.serial, "shell", "getprop", "ro.build.fingerprint").stdout
    assert out.startswith("google/oriole/oriole:")


def test_real_adb_push_pull_round_trip(real_adb, tmp_path):
    peer, adb = real_adb
    src = tmp_path / "blob.bin"
    src.write_bytes(os.urandom(5_000_000))
    res = adb("-s", peer.serial, "push", str(src), "/data/local/tmp/rt/blob.bin")
    assert res.returncode == 0, res.stdout + res.stderr
    on_device = peer.sandbox.map_path("/data/local/tmp/rt/blob.bin")
    assert hashlib.sha256(on_device.read_bytes()).digest() == hashlib.sha256(
        src.read_bytes()).digest()
    back = tmp_path / "back.bin"
    res = adb("-s", peer.serial, "pull", "/data/local/tmp/rt/blob.bin", str(back))
    assert res.returncode == 0, res.stdout + res.stderr
    assert back.read_bytes() == src.read_bytes()
    assert peer.stats.host_wrte_overlaps == 0  # the real client also waits for each OKAY
    res = adb("-s", peer.serial, "pull", "/data/local/tmp/rt/missing", str(tmp_path / "m"))
    assert res.returncode != 0 and "does not exist" in (res.stdout + res.stderr)
