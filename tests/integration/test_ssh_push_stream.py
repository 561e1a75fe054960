"""The streaming verified push against a real OpenSSH sshd.

The device hashes the bytes while they stream in (python3 on the board, or
tee into openssl / sha256sum without it); these tests drive each of those
device paths and check what is left on the board when the stream is
corrupted, cut short, or the link drops halfway.
"""

from __future__ import annotations

import io
import os
import shlex
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest

from harness.errors import TransferError
from harness.transports.base import sha256_file
from harness.transports.ssh import SshTransport
from tests.support.sshd_board import SshdBoard

pytestmark = pytest.mark.ssh

#: Tools the upload script may call; a PATH made of links to these (and
#: without python3) sends it down its tee path.
SHELL_TOOLS = ("sh", "mkdir", "dirname", "head", "tee", "wc", "rm", "mv", "stat", "cat")
#: device paths: name -> extra tools (None: the board's own PATH, with python3)
DEVICE_PATHS = {"python3": None, "tee+openssl": ("openssl",), "tee+sha256sum": ("sha256sum",)}


class RecordingSsh(SshTransport):
    """Records every command run() sends, and can run the push script under
    another PATH (to take the tee path) or tamper with the stream."""

    path_dir: str | None = None
    tamper: str | None = None  # None, "flip" (one byte changed), "short" (half sent, then EOF)

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.commands: list[tuple[str, ...]] = []
        self.streams = 0

    def run(self, argv, timeout_s=None, env=None, cwd=None):  # noqa: ANN001, ANN201
        self.commands.append(tuple(str(a) for a in argv))
        return super().run(argv, timeout_s=timeout_s, env=env, cwd=cwd)

    def _stream_command(self, remote_tmp: str, size: int) -> str:
        self.streams += 1
        cmd = super()._stream_command(remote_tmp, size)
        return f"PATH={shlex.quote(self.path_dir)}; export PATH; {cmd}" if self.path_dir else cmd

    def _stream_file(self, chan: paramiko.Channel, src: io.FileIO) -> int:
        if self.tamper is None:
            return super()._stream_file(chan, src)
        data = bytearray(src.read())
        if self.tamper == "flip":
            data[len(data) // 2] ^= 0xFF
        elif self.tamper == "short":
            data = data[: len(data) // 2]
        chan.sendall(bytes(data))
        if self.tamper == "short":
            chan.shutdown_write()  # the stream ends early, as when the sender dies
        # claim the whole file went, so the device's own check is what catches it
        return os.fstat(src.fileno()).st_size


def transport(board: SshdBoard, cls: type[SshTransport] = RecordingSsh) -> SshTransport:
    return cls("ssh-board", board.host, board.user, board.key_file, port=board.port,
               known_hosts=board.known_hosts)


@pytest.fixture(params=list(DEVICE_PATHS))
def t(request: pytest.FixtureRequest, sshd_board: SshdBoard) -> Iterator[RecordingSsh]:
    """A transport whose pushes take one of the device's hashing paths."""
    tr = transport(sshd_board)
    extra = DEVICE_PATHS[request.param]
    if extra is not None:
        folder = f"/tmp/gem-hil-path-{request.param}"
        links = " && ".join(f'ln -sf "$(command -v {tool})" {folder}/{tool}'
                            for tool in (*SHELL_TOOLS, *extra))
        res = tr.run(["sh", "-c", f"rm -rf {folder} && mkdir -p {folder} && {links}"])
        assert res.ok, res.stderr
        tr.path_dir = folder
        probe = tr.run(["sh", "-c", f"PATH={folder}; command -v python3 || echo none"])
        assert probe.stdout.strip() == "none"
    try:
        yield tr
    finally:
        tr.close()


def listing(tr: SshTransport, folder: str) -> list[str]:
    res = tr.run(["ls", "-A", "--", folder])
    return res.stdout.split() if res.ok else []


def fresh_folder(tr: SshTransport, name: str) -> str:
    """A folder no earlier test used: an upload left pending by one test is cleaned
    up by the board when its transport closes, which may be while the next runs."""
    folder = f"gem-hil-test/stream/{name}-{uuid.uuid4().hex[:8]}"
    assert tr.run(["rm", "-rf", "--", folder]).ok
    return folder


def payload(tmp_path: Path, size: int = 3 * 1024 * 1024 + 11) -> Path:
    local = tmp_path / "model.bin"
    local.write_bytes(os.urandom(size))
    return local


def test_hash_comes_from_the_stream_in_one_pass(t: RecordingSsh, tmp_path: Path) -> None:
    local = payload(tmp_path)
    want = sha256_file(local)
    folder = fresh_folder(t, "one-pass")
    t.commands.clear()
    res = t.push(local, f"{folder}/model.bin", sha256=want)
    assert not res.skipped and res.sha256 == want and res.size_bytes == local.stat().st_size
    assert t.streams == 1
    # the check before, nothing after: the rename and the record happen on the
    # upload's own channel; no mkdir, no second hash of the .part file
    assert len(t.commands) == 1, t.commands
    assert not any(".part-" in arg for arg in t.commands[0])
    assert listing(t, folder) == [".model.bin.gem-hil-sha256", "model.bin"]
    plain = transport_plain(t)
    try:  # recomputed by a transport with no record trust involved
        assert plain.run(["sha256sum", f"{folder}/model.bin"]).stdout.split()[0] == want
    finally:
        plain.close()


def transport_plain(t: SshTransport) -> SshTransport:
    return SshTransport("ssh-board", t.host, t.user, t.key_file, port=t.port,
                        known_hosts=t.known_hosts)


def test_upload_returns_the_devices_hash_of_what_arrived(t: RecordingSsh,
                                                         tmp_path: Path) -> None:
    local = payload(tmp_path, 1)  # also the smallest non-empty file
    folder = fresh_folder(t, "direct")
    assert t._upload(local, f"{folder}/x.part") == sha256_file(local)
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    assert t.push(empty, f"{folder}/empty.bin").sha256 == sha256_file(empty)
    assert t.run(["wc", "-c", f"{folder}/empty.bin"]).stdout.split()[0] == "0"


@pytest.mark.parametrize("tamper", ["flip", "short"])
def test_corrupted_or_short_stream_leaves_nothing(t: RecordingSsh, tmp_path: Path,
                                                  tamper: str) -> None:
    local = payload(tmp_path)
    folder = fresh_folder(t, f"tamper-{tamper}")
    remote = f"{folder}/model.bin"
    t.tamper = tamper
    with pytest.raises(TransferError) as exc:
        t.push(local, remote)
    msg = str(exc.value)
    assert "ssh-board" in msg and remote in msg
    if tamper == "flip":
        assert "arrived corrupted" in msg and "partial file was removed" in msg
    else:
        assert "short upload" in msg and "no file was left" in msg
    assert listing(t, folder) == []  # no file at the final name, no .part, no record
    t.tamper = None
    assert not t.push(local, remote).skipped  # and a clean push afterwards works
    assert listing(t, folder) == [".model.bin.gem-hil-sha256", "model.bin"]


def test_link_dropped_mid_stream_the_board_removes_the_part_file(
        sshd_board: SshdBoard, tmp_path: Path) -> None:
    class Dropping(SshTransport):
        drops = 1

        def _stream_file(self, chan: paramiko.Channel, src: io.FileIO) -> int:
            if self.drops:
                self.drops -= 1
                chan.sendall(src.read(1 << 20))
                time.sleep(0.2)  # let the first MiB land on the board
                chan.get_transport().sock.close()  # the cable is pulled
            return super()._stream_file(chan, src)

    local = payload(tmp_path, 8 << 20)
    t = transport(sshd_board, Dropping)
    checker = transport(sshd_board)
    folder = fresh_folder(checker, "dropped")
    try:
        with pytest.raises(TransferError, match="connection to .* broke while pushing"):
            t.push(local, f"{folder}/model.bin")
        deadline = time.monotonic() + 10
        while listing(checker, folder) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert listing(checker, folder) == []
        assert t.push(local, f"{folder}/model.bin").sha256 == sha256_file(local)  # reconnects
    finally:
        t.close()
        checker.close()


def test_push_into_a_missing_folder(t: RecordingSsh, tmp_path: Path) -> None:
    local = payload(tmp_path, 4096)
    base = fresh_folder(t, "deep")
    remote = f"{base}/a/b c/d/model.bin"
    res = t.push(local, remote)
    assert t.remote_sha256(remote) == res.sha256 == sha256_file(local)
    assert not any(c[0] == "mkdir" for c in t.commands)  # the upload script made it


@pytest.mark.parametrize("name", [
    "it's a \"model\" $(touch gem-hil-pwned).bin `touch gem-hil-pwned`",
    "-leading dash.bin", "tab\there; rm -rf ~.bin", "ünï ☃.bin", "x.part-0123456789ab.bin"])
def test_odd_names_are_quoted(t: RecordingSsh, tmp_path: Path, name: str) -> None:
    local = payload(tmp_path, 10_000)
    folder = fresh_folder(t, "names")
    remote = f"{folder}/{name}"
    res = t.push(local, remote)
    assert not res.skipped
    got = t.run(["sh", "-c", 'cd "$1" && for f in * .*; do printf "%s\\n" "$f"; done', "sh",
                 folder]).stdout.splitlines()
    assert sorted(f for f in got if f not in (".", "..")) == sorted(
        [name, f".{name}.gem-hil-sha256"])  # the file and its record, no .part left
    assert t.remote_sha256(remote) == sha256_file(local)
    for where in (folder, "."):  # neither where the script ran nor beside the file
        assert t.run(["test", "-e", f"{where}/gem-hil-pwned"]).rc == 1
    assert t.push(local, remote).skipped


def test_unchanged_repush_is_one_round_trip(t: RecordingSsh, tmp_path: Path) -> None:
    local = payload(tmp_path)
    want = sha256_file(local)
    folder = fresh_folder(t, "repush")
    t.push(local, f"{folder}/model.bin", sha256=want)
    t.commands.clear()
    streams = t.streams
    again = t.push(local, f"{folder}/model.bin", sha256=want)
    assert again.skipped and again.sha256 == want
    assert len(t.commands) == 1 and t.streams == streams


def test_unwritable_destination_is_a_clear_error(t: RecordingSsh, tmp_path: Path) -> None:
    local = payload(tmp_path, 2 << 20)
    t0 = time.monotonic()
    with pytest.raises(TransferError) as exc:
        t.push(local, "/gem-hil-no-permission/model.bin")
    assert time.monotonic() - t0 < 10  # refused at once, not a stall timeout
    msg = str(exc.value)
    assert "ssh-board" in msg and "/gem-hil-no-permission/model.bin" in msg
    assert "ermission denied" in msg


def test_the_record_written_on_the_device_is_what_the_next_check_trusts(
        t: RecordingSsh, tmp_path: Path) -> None:
    """The upload script writes the hash record itself (python or shell); the
    next session's check must accept it without re-reading the file. Proof:
    a record whose hash is swapped (stat fields kept) is believed."""
    local = payload(tmp_path, 5000)
    folder = fresh_folder(t, "record")
    remote = f"{folder}/model.bin"
    t.push(local, remote)
    record = f"{folder}/.model.bin.gem-hil-sha256"
    line = t.run(["cat", record]).stdout
    stat = t.run(["stat", "-c", "%s %i %.9Y %.9Z", remote]).stdout.strip()
    assert line == f"{sha256_file(local)} {stat}\n"
    fake = "f" * 64
    assert t.run(["sh", "-c", 'printf "%s %s\\n" "$1" "$2" > "$3"', "sh", fake, stat,
                  record]).ok
    assert t.remote_sha256(remote) == fake  # the record was used, not a fresh hash


def test_a_chatty_login_shell_does_not_confuse_the_push(sshd_board: SshdBoard,
                                                        tmp_path: Path) -> None:
    """Some boards' shell start-up files print a banner even for commands."""
    class Chatty(SshTransport):
        def _stream_command(self, remote_tmp: str, size: int) -> str:
            return "echo 'Welcome to the board!'; echo; " + super()._stream_command(remote_tmp,
                                                                                    size)

    local = payload(tmp_path, 70_000)
    t = transport(sshd_board, Chatty)
    try:
        folder = fresh_folder(t, "chatty")
        res = t.push(local, f"{folder}/model.bin")
        assert res.sha256 == sha256_file(local) == t.remote_sha256(f"{folder}/model.bin")
        assert listing(t, folder) == [".model.bin.gem-hil-sha256", "model.bin"]
    finally:
        t.close()
