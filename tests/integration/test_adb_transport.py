"""AdbTransport against the real-protocol ADB peer (tests/adb_peer)."""

from __future__ import annotations

import os
import stat
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("adb_shell", reason="the ADB transport needs adb-shell==0.4.4")

from harness.errors import AuthError, CommandTimeout, ConnectError, TransportError  # noqa: E402
from harness.profiles import parse_profile  # noqa: E402
from harness.transports.adb import AdbSettings, AdbTransport, ensure_adb_key  # noqa: E402
from tests.adb_peer import AdbPeer  # noqa: E402
from tests.adb_peer import fixtures as peer_fixtures  # noqa: E402
from tests.adb_peer.fixtures import make_targets_dir  # noqa: E402

adb_key = peer_fixtures.adb_key  # pytest fixture, shared with the other ADB tests
adb_peer = peer_fixtures.adb_peer  # pytest fixture, shared with the other ADB tests

pytestmark = [pytest.mark.adb]


def transport_for(peer: AdbPeer, key: Path, **kw) -> AdbTransport:
    settings = AdbSettings(address=f"127.0.0.1:{peer.port}", serial=None, key_path=key,
                           connect_timeout_s=kw.pop("connect_timeout_s", 3.0),
                           auth_timeout_s=kw.pop("auth_timeout_s", 2.0), **kw)
    t = AdbTransport("pixel6-emulated", settings)
    t.connect()
    return t


@pytest.fixture(params=["auto", "legacy"])
def adb(request, adb_peer: AdbPeer, adb_key: Path):
    """Both shell protocols: shell,v2 (auto-detected) and the legacy shell."""
    t = transport_for(adb_peer, adb_key, reconnect_attempts=4, reconnect_backoff_s=0.3,
                      shell_protocol=request.param)
    yield t
    t.close()


def test_from_profile_reads_adb_table(adb_peer, adb_key, tmp_path):
    targets = make_targets_dir(tmp_path / "targets", adb_peer, adb_key)
    t = AdbTransport.from_profile(parse_profile(targets / "pixel6-emulated.toml"))
    try:
        assert t.run(["getprop", "ro.product.model"]).stdout.strip() == "Pixel 6"
    finally:
        t.close()
    assert adb_peer.stats.auth_ok == 1 and adb_peer.stats.auth_bad_signatures == 0


def test_commands_leave_no_descriptors_behind(adb):
    """Each command's pipes close with it: the peer serves a whole test session, and
    three leaked descriptors a command once took the suite past select()'s 1024."""
    import os
    import time

    def fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    adb.run(["true"])
    time.sleep(0.2)
    before = fds()
    for _ in range(30):
        assert adb.run(["echo", "x"]).ok
    time.sleep(0.5)  # the peer's pump threads close the pipes as each command ends
    assert fds() <= before + 3, (before, fds())


def test_exit_status_and_quoting(adb):
    res = adb.run(["sh", "-c", "echo out; echo err >&2; exit 7"])
    assert res.rc == 7
    if adb.settings.shell_protocol == "legacy":
        assert res.stdout == "out\nerr\n" and res.stderr == ""  # merged, documented
    else:
        assert adb.describe()["shell_protocol"] == "shell,v2"
        assert res.stdout == "out\n" and res.stderr == "err\n"
    weird = "a b;$(touch /data/local/tmp/pwned)'\"`x`"
    res = adb.run(["echo", weird])
    assert res.ok and res.stdout == weird + "\n"
    assert adb.run(["ls", "/data/local/tmp/pwned"]).rc != 0
    res = adb.run(["printf", "no newline"])
    assert res.stdout == "no newline" and res.rc == 0


def test_env_and_cwd(adb):
    adb.mkdir("/data/local/tmp/w d")
    res = adb.run(["sh", "-c", 'echo "$FOO"; pwd'], env={"FOO": "x y"}, cwd="/data/local/tmp/w d")
    assert res.stdout.splitlines() == ["x y", "/data/local/tmp/w d"]


def test_command_timeout_kills_the_command(adb, adb_peer):
    import secrets

    # a sleep length only this test uses: the check sees our process, not the host's
    secs = f"30.{secrets.randbelow(10**6):06d}"
    t0 = time.monotonic()
    with pytest.raises(CommandTimeout, match="did not finish in 1 s"):
        adb.run(["sh", "-c", f"sleep {secs}; echo late"], timeout_s=1)
    assert time.monotonic() - t0 < 8
    assert adb_peer.stats.device_clse_answers >= 1  # the device answered our CLSE
    pattern = f"[s]leep {secs}"
    deadline = time.monotonic() + 3.0  # a killed process needs a moment to leave
    while (left := adb.run(["pgrep", "-f", pattern])).rc == 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert left.rc == 1, left.stdout  # killed, not orphaned
    assert adb.run(["echo", "still usable"]).stdout == "still usable\n"


def test_push_verifies_skips_and_pulls(adb, tmp_path):
    src = tmp_path / "model.bin"
    src.write_bytes(os.urandom(3_000_000))
    first = adb.push(src, "/data/local/tmp/gem-hil/a/model.bin")
    assert not first.skipped and first.size_bytes == 3_000_000
    again = adb.push(src, "/data/local/tmp/gem-hil/a/model.bin")
    assert again.skipped
    out = adb.pull("/data/local/tmp/gem-hil/a/model.bin", tmp_path / "back")
    assert out.read_bytes() == src.read_bytes()
    assert adb.run(["ls", "/data/local/tmp/gem-hil/a"]).stdout.split() == ["model.bin"]


def test_pull_refuses_escaping_names(adb, tmp_path):
    with pytest.raises(TransportError):
        adb.pull("/data/local/tmp/..", tmp_path)


def test_key_created_0600_and_loose_key_refused(tmp_path):
    key = ensure_adb_key(tmp_path / "k" / "adbkey")
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert Path(str(key) + ".pub").read_text().split()[0]
    key.chmod(0o644)
    with pytest.raises(Exception, match="chmod 600"):
        ensure_adb_key(key)


def test_unauthorised_key_says_accept_the_prompt(adb_peer, tmp_path):
    stranger = ensure_adb_key(tmp_path / "stranger" / "adbkey")
    with pytest.raises(AuthError, match="accept the 'Allow USB debugging\\?' prompt"):
        transport_for(adb_peer, stranger, auth_timeout_s=1.0)
    assert adb_peer.stats.prompts_shown == 1 and adb_peer.stats.auth_bad_signatures >= 1
    # The user taps "Allow": the same key now works.
    adb_peer.accept_prompt = True
    t = transport_for(adb_peer, stranger)
    assert t.run(["true"]).ok
    t.close()


def test_device_vanishes_mid_push_then_reconnects(adb, adb_peer, tmp_path):
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(8_000_000))
    adb_peer.drop_after_sync_bytes = 2_000_000
    adb_peer.vanish_for_s = 1.0
    with pytest.raises(ConnectError, match="dropped during push of big.bin.*NOT retried"):
        adb.push(src, "/data/local/tmp/gem-hil/big.bin")
    # nothing that looks complete was left behind
    assert adb_peer.sandbox.map_path("/data/local/tmp/gem-hil/big.bin").exists() is False
    res = adb.push(src, "/data/local/tmp/gem-hil/big.bin")  # reconnects (bounded retry)
    assert not res.skipped and adb.reconnects == 1
    assert adb.remote_sha256("/data/local/tmp/gem-hil/big.bin") == res.sha256


def test_drop_during_a_command_is_a_failure_not_a_retry(adb, adb_peer):
    threading.Timer(0.5, adb_peer.vanish, kwargs={"seconds": 0.5}).start()
    with pytest.raises(ConnectError, match="NOT retried"):
        adb.run(["sh", "-c", "sleep 5; echo benchmark-number"], timeout_s=20)
    assert adb.run(["echo", "back"]).stdout == "back\n"


def test_peer_gone_for_good_gives_bounded_connect_error(adb_key, tmp_path):
    peer = AdbPeer(tmp_path / "dev", [Path(str(adb_key) + ".pub")]).start()
    t = transport_for(peer, adb_key, reconnect_attempts=2, reconnect_backoff_s=0.1)
    peer.stop()
    with pytest.raises(ConnectError):
        t.run(["true"])
    t0 = time.monotonic()
    with pytest.raises(ConnectError, match="after 2 attempts"):
        t.run(["true"])
    assert time.monotonic() - t0 < 10


def test_one_write_in_flight_per_stream(adb, adb_peer, tmp_path):
    src = tmp_path / "f.bin"
    src.write_bytes(os.urandom(4_000_000))
    adb.push(src, "/data/local/tmp/f.bin")
    adb.run(["sh", "-c", "head -c 3000000 /data/local/tmp/f.bin | sha256sum"])
    assert adb_peer.stats.host_wrte_overlaps == 0


def test_old_adbd_without_shell_v2_falls_back_to_legacy(adb_key, tmp_path):
    peer = AdbPeer(tmp_path / "old", [Path(str(adb_key) + ".pub")], shell_v2=False).start()
    try:
        t = transport_for(peer, adb_key, shell_protocol="auto")
        res = t.run(["sh", "-c", "echo hi; exit 4"])
        assert (res.rc, res.stdout) == (4, "hi\n")
        assert t.describe()["shell_protocol"].startswith("legacy")
        t.close()
    finally:
        peer.stop()


def test_pull_that_arrives_corrupted_is_refused(adb, adb_peer, tmp_path):
    """The peer flips one byte of the file on the wire: the pull must compare the
    device's sha256 with what arrived, fail naming both, and keep nothing."""
    src = tmp_path / "result.json"
    src.write_bytes(os.urandom(200_000))
    adb.push(src, "/data/local/tmp/gem-hil/p/result.json")
    adb_peer.corrupt_next_pull = True
    back = tmp_path / "back"
    with pytest.raises(TransportError, match="arrived corrupted") as exc:
        adb.pull("/data/local/tmp/gem-hil/p/result.json", back)
    assert not adb_peer.corrupt_next_pull  # the fault really was on this pull's wire
    assert adb.remote_sha256("/data/local/tmp/gem-hil/p/result.json") in str(exc.value)
    assert list(back.iterdir()) == []  # no file and no .part left behind
    good = adb.pull("/data/local/tmp/gem-hil/p/result.json", back)  # the next one is intact
    assert good.read_bytes() == src.read_bytes()
