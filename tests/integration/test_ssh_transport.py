"""SshTransport against a real OpenSSH sshd: commands, files, connection reuse."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import pytest

from harness.errors import TransferError
from harness.profiles import parse_profile
from harness.transports import open_transport
from harness.transports.base import sha256_file
from harness.transports.ssh import SshTransport
from tests.support.sshd_board import SshdBoard

pytestmark = pytest.mark.ssh


def test_open_transport_builds_ssh_from_profile(ssh_board_profile_path: Path) -> None:
    t = open_transport(parse_profile(ssh_board_profile_path))
    try:
        assert isinstance(t, SshTransport) and t.kind == "ssh"
        assert t.run(["id", "-un"]).stdout.strip() == "gemhil"
    finally:
        t.close()


def test_run_reports_rc_stdout_stderr(ssh: SshTransport) -> None:
    res = ssh.run(["sh", "-c", "echo to-out; echo to-err >&2; exit 3"])
    assert (res.rc, res.stdout, res.stderr) == (3, "to-out\n", "to-err\n")
    assert not res.ok and res.argv == ("sh", "-c", "echo to-out; echo to-err >&2; exit 3")
    assert ssh.run(["true"]).ok


def test_login_is_the_non_root_sh_user(ssh: SshTransport) -> None:
    res = ssh.run(["sh", "-c", 'id -u; getent passwd "$(id -un)" | cut -d: -f7; echo "$HOME"'])
    uid, shell, home = res.stdout.split()
    assert uid != "0" and shell == "/bin/sh" and home == "/home/gemhil"


def test_missing_program_and_signal_deaths_are_exit_codes(ssh: SshTransport) -> None:
    missing = ssh.run(["gem-hil-no-such-program"])
    assert missing.rc == 127 and "not found" in missing.stderr
    assert ssh.run(["sh", "-c", "kill -KILL $$"]).rc == 137


def test_env_and_cwd(ssh: SshTransport) -> None:
    d = "/tmp/gem-hil ssh cwd test"
    assert ssh.run(["mkdir", "-p", d]).ok
    res = ssh.run(["sh", "-c", 'pwd; printf "%s|%s" "$GEM_A" "$GEM_B"'], cwd=d,
                  env={"GEM_A": "a b$(id)", "GEM_B": "x'y\"z"})
    assert res.ok, res.stderr
    assert res.stdout == f"{d}\na b$(id)|x'y\"z"
    bad = ssh.run(["pwd"], cwd="/nonexistent/dir")
    assert bad.rc != 0 and "nonexistent" in bad.stderr


def test_arguments_arrive_verbatim(ssh: SshTransport, sshd_board: SshdBoard) -> None:
    weird = ["two words", "it's", 'say "hi"', "$(touch /tmp/gem-hil-pwned-ssh)", "`id`",
             "a;b", "x && y | z", "line1\nline2", "*", "", "-n", "ünï ☃", "$HOME", "\\", "#c"]
    res = ssh.run([sshd_board.python, "-c",
                   "import sys,json;print(json.dumps(sys.argv[1:]))", *weird])
    assert res.ok, res.stderr
    assert json.loads(res.stdout) == weird
    assert not Path("/tmp/gem-hil-pwned-ssh").exists()


def test_push_verifies_then_skips_unchanged(ssh: SshTransport, tmp_path: Path) -> None:
    local = tmp_path / "model.onnx"
    local.write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    remote = "gem-hil-test/push/model.onnx"
    ssh.run(["rm", "-rf", "gem-hil-test/push"])
    first = ssh.push(local, remote)
    assert not first.skipped and first.sha256 == sha256_file(local)
    assert first.size_bytes == local.stat().st_size
    assert ssh.remote_sha256(remote) == first.sha256
    assert ssh.run(["ls", "gem-hil-test/push"]).stdout.split() == ["model.onnx"]  # no .part
    second = ssh.push(local, remote)
    assert second.skipped and second.sha256 == first.sha256
    assert second.duration_s < 1.0
    local.write_bytes(b"changed")
    third = ssh.push(local, remote)
    assert not third.skipped and ssh.remote_sha256(remote) == sha256_file(local)


def test_pull_round_trip(ssh: SshTransport, tmp_path: Path) -> None:
    data = os.urandom(2 * 1024 * 1024 + 5)
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    ssh.push(src, "gem-hil-test/pull/result.bin")
    got = ssh.pull("gem-hil-test/pull/result.bin", tmp_path / "out")
    assert got == (tmp_path / "out" / "result.bin").resolve()
    assert got.read_bytes() == data
    assert not (tmp_path / "out" / "result.bin.part").exists()


def test_pull_missing_file_is_a_clear_error(ssh: SshTransport, tmp_path: Path) -> None:
    with pytest.raises(TransferError, match="no such file on the device"):
        ssh.pull("gem-hil-test/definitely-missing.json", tmp_path / "pulled")
    assert list((tmp_path / "pulled").iterdir()) == []


def test_one_connection_for_the_session(sshd_board: SshdBoard, ssh: SshTransport,
                                        tmp_path: Path) -> None:
    before = sshd_board.accepted_connections()
    ssh.run(["true"])
    client = ssh._client
    for i in range(25):
        assert ssh.run(["echo", str(i)]).stdout == f"{i}\n"
    f = tmp_path / "f.txt"
    f.write_text("x")
    ssh.push(f, "gem-hil-test/reuse/f.txt")
    ssh.pull("gem-hil-test/reuse/f.txt", tmp_path / "back")
    assert ssh._client is client
    assert ssh.connections_opened == 1
    assert sshd_board.accepted_connections() - before == 1  # sshd's own count


def test_socket_has_tcp_nodelay(ssh: SshTransport) -> None:
    ssh.run(["true"])
    sock = ssh._client.get_transport().sock
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 3 * 15 * 1000
    assert ssh.keepalive_s == 15


def test_reconnects_once_after_the_link_dropped(sshd_board: SshdBoard,
                                                ssh: SshTransport) -> None:
    ssh.run(["true"])
    ssh._client.get_transport().close()  # the link dies between two commands
    assert ssh.run(["echo", "back"]).stdout == "back\n"
    assert ssh.connections_opened == 2


def test_close_is_idempotent(ssh: SshTransport) -> None:
    ssh.run(["true"])
    ssh.close()
    ssh.close()
    assert ssh._client is None


def test_recorded_hash_is_not_trusted_after_the_file_changed(ssh: SshTransport,
                                                             tmp_path: Path) -> None:
    """The quick re-push check must notice an in-place edit of the same size."""
    local = tmp_path / "weights.bin"
    local.write_bytes(b"A" * 10000)
    remote = "gem-hil-test/record/weights.bin"
    ssh.run(["rm", "-rf", "gem-hil-test/record"])
    ssh.push(local, remote)
    assert ssh.run(["ls", "-A", "gem-hil-test/record"]).stdout.split() == [
        ".weights.bin.gem-hil-sha256", "weights.bin"]
    assert ssh.push(local, remote).skipped
    # file times tick with the kernel's coarse clock (a few ms): an edit in the
    # same tick as the record would look unchanged, so step past one tick
    time.sleep(0.05)
    edit = ssh.run(["sh", "-c", 'printf B | dd of="$1" bs=1 seek=5 conv=notrunc 2>/dev/null',
                    "sh", remote])
    assert edit.ok
    assert ssh.remote_sha256(remote) != sha256_file(local)  # recomputed, not the record
    again = ssh.push(local, remote)
    assert not again.skipped
    assert ssh.remote_sha256(remote) == sha256_file(local)


def test_hashes_odd_file_names(ssh: SshTransport, tmp_path: Path) -> None:
    local = tmp_path / "x"
    local.write_bytes(b"odd")
    for remote in ("gem-hil-test/odd/-dash.bin", "gem-hil-test/odd/sp ace $(id).bin"):
        res = ssh.push(local, remote)
        assert ssh.remote_sha256(remote) == res.sha256 == sha256_file(local)
        assert ssh.push(local, remote).skipped
    assert ssh.remote_sha256("gem-hil-test/odd/missing") is None
