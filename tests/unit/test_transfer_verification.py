"""Transport's shared push/pull verification, against an in-memory device.

The real transports are exercised end to end in tests/integration; this pins
down the contract they all inherit (what is compared, what is removed, what
each error says) exactly, so a changed comparison or a skipped cleanup in
harness/transports/base.py fails here whatever transport would have hidden it.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from harness.errors import TransferError
from harness.transports.base import CommandResult, Transport, parse_sha256sum


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class MemoryDevice(Transport):
    """A device whose files live in a dict; it can be told to damage transfers."""

    kind = "memory"

    def __init__(self, hashes_while_streaming: bool = False) -> None:
        self.device_name = "memdev"
        self.files: dict[str, bytes] = {}
        self.commands: list[tuple[str, ...]] = []
        self.uploads: list[str] = []
        self.hashes_while_streaming = hashes_while_streaming
        self.corrupt_upload = False
        self.corrupt_download: bytes | None = None  # the first byte a download gets instead
        self.fail_mv = False
        self.upload_makes_parent = False

    def run(self, argv, timeout_s=None, env=None, cwd=None) -> CommandResult:
        argv = tuple(argv)
        self.commands.append(argv)
        if argv[0] == "mv":
            if self.fail_mv:
                return CommandResult(argv, 1, "", "mv: read-only file system", 0.0)
            self.files[argv[-1]] = self.files.pop(argv[-2])
        elif argv[0] == "rm":
            self.files.pop(argv[-1], None)
        return CommandResult(argv, 0, "", "", 0.0)

    def remote_sha256(self, remote: str) -> str | None:
        data = self.files.get(remote)
        return None if data is None else sha(data)  # lower-case hex, as the contract says

    def _upload(self, local: Path, remote_tmp: str) -> str | None:
        data = local.read_bytes()
        if self.corrupt_upload:
            data = b"X" + data[1:]
        self.files[remote_tmp] = data
        self.uploads.append(remote_tmp)
        return sha(data) if self.hashes_while_streaming else None

    def _download(self, remote: str, local_tmp: Path) -> None:
        data = self.files[remote]
        local_tmp.write_bytes(self.corrupt_download + data[1:] if self.corrupt_download
                              else data)

    def close(self) -> None:
        pass


@pytest.fixture
def src(tmp_path: Path) -> Path:
    p = tmp_path / "model.onnx"
    p.write_bytes(b"model bytes " * 100)
    return p


@pytest.mark.parametrize("streaming", [False, True])
def test_push_uploads_to_a_unique_temporary_name_and_renames_once_verified(src, streaming):
    dev = MemoryDevice(hashes_while_streaming=streaming)
    res = dev.push(src, "w/a/model.onnx")
    want = sha(src.read_bytes())
    assert (res.remote, res.sha256, res.size_bytes, res.skipped) == \
        ("w/a/model.onnx", want, src.stat().st_size, False)
    assert 0 <= res.duration_s < 0.5  # this call's own wall time, in seconds
    (tmp,) = dev.uploads
    assert re.fullmatch(rf"w/a/model\.onnx\.part-{want[:12]}-[0-9a-f]{{8}}", tmp), tmp
    assert dev.files == {"w/a/model.onnx": src.read_bytes()}  # the .part is gone
    assert ("mkdir", "-p", "--", "w/a") in dev.commands
    assert ("mv", "-f", "--", tmp, "w/a/model.onnx") in dev.commands
    again = dev.push(src, "w/a/model.onnx")
    assert again.skipped and again.sha256 == want and len(dev.uploads) == 1
    assert 0 <= again.duration_s < 0.5


def test_a_second_upload_gets_another_temporary_name(src):
    dev = MemoryDevice()
    dev.push(src, "w/m.onnx")
    dev.files.clear()
    dev.push(src, "w/m.onnx")
    assert len(set(dev.uploads)) == 2


def test_push_with_a_known_hash_in_capitals_still_skips(src):
    dev = MemoryDevice()
    dev.files["w/m.onnx"] = src.read_bytes()
    res = dev.push(src, "w/m.onnx", sha256=sha(src.read_bytes()).upper())
    assert res.skipped and res.sha256 == sha(src.read_bytes()) and dev.uploads == []


def test_push_makes_no_folder_when_the_upload_does_or_there_is_none(src):
    dev = MemoryDevice()
    dev.upload_makes_parent = True
    dev.push(src, "w/m.onnx")
    dev.upload_makes_parent = False
    dev.push(src, "top.onnx")
    assert not [c for c in dev.commands if c[0] == "mkdir"]


@pytest.mark.parametrize("streaming", [False, True])
def test_corrupted_push_is_removed_and_named(src, streaming):
    dev = MemoryDevice(hashes_while_streaming=streaming)
    dev.corrupt_upload = True
    with pytest.raises(TransferError) as exc:
        dev.push(src, "w/m.onnx")
    msg = str(exc.value)
    assert msg.startswith("memdev: model.onnx arrived corrupted at 'w/m.onnx'")
    assert f"!= local {sha(src.read_bytes())}" in msg and "partial file was removed" in msg
    assert dev.files == {}
    (tmp,) = dev.uploads
    assert ("rm", "-f", "--", tmp) in dev.commands
    assert not [c for c in dev.commands if c[0] == "mv"]


def test_a_failed_rename_is_an_error_naming_both_paths(src):
    dev = MemoryDevice()
    dev.fail_mv = True
    with pytest.raises(TransferError, match=r"memdev: cannot rename 'w/m\.onnx\.part-.*' to "
                                            r"'w/m\.onnx': mv: read-only file system$"):
        dev.push(src, "w/m.onnx")


def test_pull_verifies_against_the_devices_hash(tmp_path):
    dev = MemoryDevice()
    dev.files["w/result.json"] = b'{"ok": true}'
    out = dev.pull("w/result.json", tmp_path / "out")
    assert out == (tmp_path / "out" / "result.json").resolve()
    assert out.read_bytes() == b'{"ok": true}'
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["result.json"]


def _corruptions(data: bytes) -> list[bytes]:
    """Two first bytes whose corrupted copies hash below and above the original:
    a comparison that only looked one way would pass one of them."""
    want = sha(data)
    below = next(bytes([b]) for b in range(256) if sha(bytes([b]) + data[1:]) < want)
    above = next(bytes([b]) for b in range(256) if sha(bytes([b]) + data[1:]) > want)
    return [below, above]


@pytest.mark.parametrize("which", [0, 1], ids=["hash-below", "hash-above"])
def test_corrupted_pull_keeps_nothing_and_names_both_hashes(tmp_path, which):
    data = b'{"ok": true}'
    dev = MemoryDevice()
    dev.files["w/result.json"] = data
    dev.corrupt_download = _corruptions(data)[which]
    with pytest.raises(TransferError) as exc:
        dev.pull("w/result.json", tmp_path / "out")
    msg = str(exc.value)
    assert msg.startswith("memdev: pulling 'w/result.json': it arrived corrupted")
    got, want = sha(dev.corrupt_download + data[1:]), sha(data)
    assert f"(sha256 here {got} != on the device {want})" in msg
    assert list((tmp_path / "out").iterdir()) == []


def test_pull_makes_the_whole_local_folder(tmp_path):
    dev = MemoryDevice()
    dev.files["w/log.txt"] = b"hello"
    assert dev.pull("w/log.txt", tmp_path / "a" / "b" / "c").read_bytes() == b"hello"


@pytest.mark.parametrize("outside", ["a-outside", "z-outside"])  # sorts before / after
def test_pull_refuses_a_local_name_that_is_a_symlink_out_of_the_folder(tmp_path, outside):
    dest = tmp_path / "m-dest"
    dest.mkdir()
    (tmp_path / outside).mkdir()
    (dest / "log.txt").symlink_to(tmp_path / outside / "log.txt")
    dev = MemoryDevice()
    dev.files["w/log.txt"] = b"hello"
    with pytest.raises(TransferError, match="would land outside"):
        dev.pull("w/log.txt", dest)
    assert not (tmp_path / outside / "log.txt").exists()


def test_pull_of_a_missing_file_says_so_and_downloads_nothing(tmp_path):
    dev = MemoryDevice()
    with pytest.raises(TransferError, match=r"^memdev: cannot pull 'w/nope': no such file on "
                                            r"the device$"):
        dev.pull("w/nope", tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.parametrize("name", ["w/..", "..", "/", "w/.", "a\\b", "a\x00b"])
def test_pull_refuses_names_that_would_escape(name, tmp_path):
    dev = MemoryDevice()
    with pytest.raises(TransferError, match="refusing to pull"):
        dev.pull(name, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def _res(rc: int, out: str = "", err: str = "") -> CommandResult:
    return CommandResult(("sha256sum", "--", "f"), rc, out, err, 0.0)


def test_parse_sha256sum_reads_the_hash_in_lower_case():
    h = "AB" * 32
    assert parse_sha256sum("dev", "f", _res(0, f"{h}  f\n")) == h.lower()


@pytest.mark.parametrize("err", ["sha256sum: f: No such file or directory",
                                 "f: not found", "sha256sum: can't open 'f': cannot open"])
def test_parse_sha256sum_missing_file_is_none(err):
    assert parse_sha256sum("dev", "f", _res(1, "", err)) is None
    assert parse_sha256sum("dev", "f", _res(1, err, "")) is None  # legacy adb merges streams


def test_parse_sha256sum_other_failures_and_garbage_are_errors():
    with pytest.raises(TransferError, match=r"failed \(rc=-9\)"):  # killed by a signal
        parse_sha256sum("dev", "f", _res(-9, "ab" * 32 + "  f\n", ""))
    with pytest.raises(TransferError, match=r"^dev: sha256sum 'f' failed \(rc=127\): "
                                            r"sh: sha256sum: inaccessible; the device needs"):
        parse_sha256sum("dev", "f", _res(127, "", "sh: sha256sum: inaccessible\n"))
    for out in ("", "\n", "abc  f\n", "a" * 63 + "  f", "a" * 65 + "  f"):
        with pytest.raises(TransferError, match="unexpected sha256sum output"):
            parse_sha256sum("dev", "f", _res(0, out))
