"""SSH faults against real peers: each must fail with a message a user can act on."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.errors import AuthError, CommandTimeout, ConnectError, HostKeyError, TransferError
from harness.transports.base import sha256_file
from harness.transports.ssh import SshTransport
from tests.support.procs import processes
from tests.support.sshd_board import SshdBoard, fingerprint_of_pub, write_ed25519_key

pytestmark = pytest.mark.ssh


def transport_for(board: SshdBoard, key_file: Path | None = None,
                  **overrides: object) -> SshTransport:
    kwargs: dict = {"port": board.port, "known_hosts": board.known_hosts,
                    "connect_timeout_s": 5.0, **overrides}
    return SshTransport("ssh-board", board.host, board.user, key_file or board.key_file,
                        **kwargs)


# -- host keys ------------------------------------------------------------

@pytest.mark.parametrize("opt_in", [False, True])
def test_changed_host_key_is_refused_even_with_opt_in(sshd_board: SshdBoard, tmp_path: Path,
                                                      opt_in: bool) -> None:
    impostor_pub = write_ed25519_key(tmp_path / "other_host_key")
    kh = tmp_path / "known_hosts"
    kh.write_text(f"[{sshd_board.host}]:{sshd_board.port} {impostor_pub}\n")
    before = kh.read_text()
    t = transport_for(sshd_board, known_hosts=kh, accept_new_host_key=opt_in)
    with pytest.raises(HostKeyError) as exc:
        t.run(["true"])
    msg = str(exc.value)
    assert "HOST KEY CHANGED" in msg and f"{sshd_board.host}:{sshd_board.port}" in msg
    assert sshd_board.host_key_fingerprint in msg          # what the server offers
    assert fingerprint_of_pub(impostor_pub) in msg          # what we expected
    assert "ssh-keygen -f" in msg and "never overrides" in msg
    assert kh.read_text() == before  # nothing was "fixed" behind the user's back
    assert t._client is None


def test_unknown_host_is_refused_without_opt_in(sshd_board: SshdBoard, tmp_path: Path) -> None:
    kh = tmp_path / "known_hosts"  # does not exist
    t = transport_for(sshd_board, known_hosts=kh)
    with pytest.raises(HostKeyError) as exc:
        t.run(["true"])
    msg = str(exc.value)
    assert f"not in {kh}" in msg and sshd_board.host_key_fingerprint in msg
    assert f"ssh-keyscan -p {sshd_board.port} {sshd_board.host} >> {kh}" in msg
    assert "accept_new_host_key = true" in msg and "--accept-new-host-key" in msg
    assert not kh.exists()


def test_unknown_host_is_recorded_with_opt_in(sshd_board: SshdBoard, tmp_path: Path,
                                              caplog: pytest.LogCaptureFixture) -> None:
    kh = tmp_path / "ssh" / "known_hosts"
    t = transport_for(sshd_board, known_hosts=kh, accept_new_host_key=True)
    with caplog.at_level("WARNING", logger="harness.transports.ssh"):
        assert t.run(["echo", "hello"]).stdout == "hello\n"
    t.close()
    assert kh.read_text() == sshd_board.known_hosts.read_text()  # [host]:port type key
    assert oct(kh.stat().st_mode & 0o777) == "0o600"
    assert sshd_board.host_key_fingerprint in caplog.text
    # recorded, so the next session without the opt-in trusts it
    again = transport_for(sshd_board, known_hosts=kh)
    assert again.run(["true"]).ok
    again.close()
    assert len(kh.read_text().splitlines()) == 1


def test_hashed_known_hosts_entry_is_honoured(sshd_board: SshdBoard, tmp_path: Path) -> None:
    import paramiko

    name = f"[{sshd_board.host}]:{sshd_board.port}"
    kh = tmp_path / "known_hosts"
    _, keytype, b64 = sshd_board.known_hosts_line().split()
    kh.write_text(f"{paramiko.HostKeys.hash_host(name)} {keytype} {b64}\n")
    t = transport_for(sshd_board, known_hosts=kh)
    assert t.run(["true"]).ok
    t.close()


# -- authentication and reachability --------------------------------------

def test_wrong_key_is_an_auth_error(sshd_board: SshdBoard, tmp_path: Path) -> None:
    stranger = tmp_path / "id_stranger"
    write_ed25519_key(stranger)
    t = transport_for(sshd_board, key_file=stranger)
    with pytest.raises(AuthError) as exc:
        t.run(["true"])
    msg = str(exc.value)
    assert f"gemhil@{sshd_board.host}:{sshd_board.port} refused our key {stranger}" in msg
    assert "authorized_keys" in msg
    assert "PRIVATE KEY" not in msg and stranger.read_text()[40:80] not in msg


@pytest.fixture
def silent_listener() -> Iterator[int]:
    """A loopback port that completes TCP but never says a word (a hung sshd)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)  # never accept(): the kernel still completes the handshake
    try:
        yield srv.getsockname()[1]
    finally:
        srv.close()


def connect_error_within_timeout(port: int, tmp_path: Path) -> str:
    """Connect with a 1 s timeout to a port that never answers properly; the
    ConnectError must come within the timeout (plus slack). Returns its text."""
    key = tmp_path / "id"
    write_ed25519_key(key)
    t = SshTransport("ssh-board", "127.0.0.1", "gemhil", key, port=port,
                     known_hosts=tmp_path / "kh", connect_timeout_s=1.0)
    t0 = time.monotonic()
    with pytest.raises(ConnectError) as exc:
        t.run(["true"])
    elapsed = time.monotonic() - t0
    assert 0.8 < elapsed < 1.0 + 1.5, elapsed
    return str(exc.value)


def test_silent_host_fails_within_connect_timeout(silent_listener: int, tmp_path: Path) -> None:
    msg = connect_error_within_timeout(silent_listener, tmp_path)
    assert f"127.0.0.1:{silent_listener}" in msg and "connect_timeout_s=1 s" in msg


@pytest.fixture
def black_hole_port() -> Iterator[int]:
    """A loopback port whose SYNs are dropped: a listener with a full accept
    queue (Linux drops new SYNs then), i.e. an unreachable host, no nft needed."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(0)
    port = srv.getsockname()[1]
    fillers = []
    try:
        for _ in range(8):
            c = socket.socket()
            c.settimeout(0.3)
            fillers.append(c)
            try:
                c.connect(("127.0.0.1", port))
            except TimeoutError:
                break  # the queue is full: SYNs now vanish
        else:
            pytest.skip("could not fill the accept queue to make a black hole")
        yield port
    finally:
        for c in fillers:
            c.close()
        srv.close()


def test_black_hole_fails_within_connect_timeout(black_hole_port: int, tmp_path: Path) -> None:
    msg = connect_error_within_timeout(black_hole_port, tmp_path)
    assert f"cannot connect to 127.0.0.1:{black_hole_port}" in msg
    assert "no answer within connect_timeout_s=1 s" in msg


def test_refused_port_fails_fast_and_says_where(tmp_path: Path) -> None:
    key = tmp_path / "id"
    write_ed25519_key(key)
    with socket.socket() as s:  # a port that was free a moment ago: nobody listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t = SshTransport("ssh-board", "127.0.0.1", "gemhil", key, port=port,
                     known_hosts=tmp_path / "kh", connect_timeout_s=3.0)
    t0 = time.monotonic()
    with pytest.raises(ConnectError) as exc:
        t.run(["true"])
    assert time.monotonic() - t0 < 1.0
    assert f"127.0.0.1:{port}" in str(exc.value) and "refused" in str(exc.value)


# -- commands -------------------------------------------------------------

def _live_processes_of(uid: int, needle: tuple[str, ...]) -> list[int]:
    """PIDs (not zombies) of uid whose argv is needle. The board is this host,
    so /proc shows the device's processes."""
    return [p.pid for p in processes() if p.uid == uid and p.argv == needle]


def _gone_within(uid: int, needle: tuple[str, ...], seconds: float = 3.0) -> list[int]:
    """Wait until no process of uid has needle in its command line; what is left.

    A SIGKILLed process takes a moment to leave /proc; one the kill missed
    stays for its whole 29 s sleep, far beyond this wait."""
    deadline = time.monotonic() + seconds
    while (left := _live_processes_of(uid, needle)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def test_command_timeout_kills_the_remote_process(sshd_board: SshdBoard,
                                                  ssh: SshTransport) -> None:
    import pwd
    import secrets

    uid = pwd.getpwnam(sshd_board.user).pw_uid
    # a sleep length no other test or session uses: only our own processes match
    secs = f"29.{secrets.randbelow(10**6):06d}"
    marker = ("sleep", secs)
    t0 = time.monotonic()
    with pytest.raises(CommandTimeout) as exc:
        ssh.run(["sh", "-c", f"sleep {secs} & sleep {secs}"], timeout_s=1)
    elapsed = time.monotonic() - t0
    assert 1.0 <= elapsed < 4.0, elapsed
    assert f"`sh -c 'sleep {secs} & sleep {secs}'` did not finish within its timeout of 1 s" \
        in str(exc.value)
    assert "killed its process group" in str(exc.value)
    assert _gone_within(uid, marker) == []  # the child in the background too
    assert ssh.run(["echo", "still usable"]).stdout == "still usable\n"


# -- transfers ------------------------------------------------------------

class CorruptingSsh(SshTransport):
    """Flips one byte on the device after an otherwise normal upload."""

    def _upload(self, local: Path, remote_tmp: str) -> None:
        super()._upload(local, remote_tmp)
        res = self.run(["sh", "-c", 'printf Z | dd of="$1" bs=1 seek=100 conv=notrunc 2>&1',
                        "sh", remote_tmp])
        assert res.ok, res.stdout


def test_corrupted_transfer_is_caught_and_cleaned(sshd_board: SshdBoard, tmp_path: Path) -> None:
    t = CorruptingSsh("ssh-board", sshd_board.host, sshd_board.user, sshd_board.key_file,
                      port=sshd_board.port, known_hosts=sshd_board.known_hosts)
    local = tmp_path / "model.onnx"
    local.write_bytes(b"\0" * 4096)
    remote = "gem-hil-test/corrupt/model.onnx"
    t.run(["rm", "-rf", "gem-hil-test/corrupt"])
    try:
        with pytest.raises(TransferError) as exc:
            t.push(local, remote)
        assert "arrived corrupted" in str(exc.value) and "partial file was removed" in str(
            exc.value)
        assert t.run(["ls", "-A", "gem-hil-test/corrupt"]).stdout == ""  # no .part, no file
        assert t.remote_sha256(remote) is None
    finally:
        t.close()


@pytest.mark.parametrize("remote", ["gem-hil-test/..", "/", ".", "gem-hil-test/x/../.."])
def test_pull_refuses_names_that_are_not_plain(ssh: SshTransport, tmp_path: Path,
                                               remote: str) -> None:
    out = tmp_path / "pulled"
    with pytest.raises(TransferError, match="not a plain name"):
        ssh.pull(remote, out)
    assert not out.exists()


def test_pull_of_a_path_with_dotdot_lands_inside_the_folder(ssh: SshTransport,
                                                            tmp_path: Path) -> None:
    src = tmp_path / "evil.txt"
    src.write_text("payload")
    ssh.push(src, "/tmp/gem-hil-evil/evil.txt")
    out = tmp_path / "a" / "b"
    got = ssh.pull("../../../../../tmp/gem-hil-evil/evil.txt", out)
    assert got == (out / "evil.txt").resolve() and got.read_text() == "payload"
    assert not (tmp_path / "evil.txt.part").exists()
    assert sorted(os.listdir(out)) == ["evil.txt"]


def test_pull_that_arrives_corrupted_is_refused(ssh: SshTransport, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The real sshd serves the file; one byte changes between the device and the
    local disk (SSH's MAC guards the wire, not the file being rewritten while it
    is read or a failing disk here). The pull compares the device's sha256 with
    the bytes that landed and keeps nothing."""
    src = tmp_path / "result.bin"
    src.write_bytes(os.urandom(300_000))
    remote = "gem-hil-test/pull-corrupt/result.bin"
    ssh.push(src, remote)
    real = SshTransport._download

    def flip(self, remote_path, local_tmp):
        real(self, remote_path, local_tmp)
        data = bytearray(local_tmp.read_bytes())
        data[1234] ^= 0x01
        local_tmp.write_bytes(bytes(data))

    monkeypatch.setattr(SshTransport, "_download", flip)
    out = tmp_path / "pulled"
    with pytest.raises(TransferError, match="arrived corrupted") as exc:
        ssh.pull(remote, out)
    assert sha256_file(src) in str(exc.value)  # the device's hash, named
    assert list(out.iterdir()) == []
    monkeypatch.setattr(SshTransport, "_download", real)
    assert ssh.pull(remote, out).read_bytes() == src.read_bytes()
