"""The local transport keeps the remote contract: argv verbatim, verified push, safe pull."""

from __future__ import annotations

import json
import sys

import pytest

from harness.errors import CommandTimeout, TransferError
from harness.transports.local import LocalTransport


@pytest.fixture
def t(tmp_path):
    return LocalTransport("local", home=tmp_path / "home")


def test_arguments_arrive_verbatim(t):
    tricky = ["a b", "'q'", '"dq"', "$(touch /tmp/pwned)", "x;y", "new\nline", "*"]
    res = t.run([sys.executable, "-c", "import sys,json;print(json.dumps(sys.argv[1:]))",
                 *tricky])
    assert res.ok and json.loads(res.stdout) == tricky


def test_nonzero_exit_is_a_result_not_an_exception(t):
    res = t.run(["sh", "-c", "echo out; echo err >&2; exit 7"])
    assert (res.rc, res.stdout, res.stderr) == (7, "out\n", "err\n")


def test_missing_program_gives_rc_127(t):
    assert t.run(["/nonexistent/program"]).rc == 127


def test_timeout_kills_the_process_tree(t, tmp_path):
    marker = tmp_path / "alive"
    with pytest.raises(CommandTimeout, match="did not finish within 0.5 s"):
        t.run(["sh", "-c", f"(sleep 2; touch {marker}) & sleep 30"], timeout_s=0.5)
    import time

    time.sleep(2.5)
    assert not marker.exists(), "a grandchild survived the timeout kill"


def test_push_verifies_and_skips(t, tmp_path):
    src = tmp_path / "blob.bin"
    src.write_bytes(b"x" * 100_000)
    first = t.push(src, "w/blob.bin")
    second = t.push(src, "w/blob.bin")
    assert not first.skipped and second.skipped and first.sha256 == second.sha256
    assert (t.home / "w" / "blob.bin").read_bytes() == src.read_bytes()
    assert not list((t.home / "w").glob("*.part-*"))


def test_corrupted_upload_is_detected_and_removed(t, tmp_path, monkeypatch):
    src = tmp_path / "model.onnx"
    src.write_bytes(b"\x00" * 4096)
    real = LocalTransport._upload

    def flip(self, local, remote_tmp):
        real(self, local, remote_tmp)
        p = self._path(remote_tmp)
        data = bytearray(p.read_bytes())
        data[100] ^= 0xFF
        p.write_bytes(bytes(data))

    monkeypatch.setattr(LocalTransport, "_upload", flip)
    with pytest.raises(TransferError, match="arrived corrupted"):
        t.push(src, "w/model.onnx")
    assert not (t.home / "w" / "model.onnx").exists()
    assert not list((t.home / "w").iterdir())


@pytest.mark.parametrize("name", ["w/..", "/", "..", "w/."])
def test_pull_never_escapes_its_folder(t, tmp_path, name):
    (t.home / "w").mkdir(parents=True)
    with pytest.raises(TransferError, match="not a plain name"):
        t.pull(name, tmp_path / "dest")
    assert not (tmp_path / "dest").exists() or not any((tmp_path / "dest").iterdir())


def test_pull_of_a_directory_is_a_clear_error(t, tmp_path):
    (t.home / "w").mkdir(parents=True)
    (tmp_path / "dest").mkdir()
    with pytest.raises(TransferError, match="cannot pull 'w/'"):
        t.pull("w/", tmp_path / "dest")


def test_pull_round_trip(t, tmp_path):
    (t.home / "w").mkdir(parents=True)
    (t.home / "w" / "log.txt").write_text("hello")
    dest = tmp_path / "dest"
    dest.mkdir()
    assert t.pull("w/log.txt", dest).read_text() == "hello"


def test_pull_that_arrives_corrupted_is_refused(t, tmp_path, monkeypatch):
    (t.home / "w").mkdir(parents=True)
    (t.home / "w" / "log.txt").write_text("hello world")
    real = LocalTransport._download

    def flip(self, remote, local_tmp):
        real(self, remote, local_tmp)
        local_tmp.write_text("hellO world")

    monkeypatch.setattr(LocalTransport, "_download", flip)
    dest = tmp_path / "dest"
    with pytest.raises(TransferError, match="arrived corrupted"):
        t.pull("w/log.txt", dest)
    assert list(dest.iterdir()) == []
