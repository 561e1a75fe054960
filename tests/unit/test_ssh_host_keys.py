"""The SSH transport's host-key and key-file code, and the upload answer it trusts.

The real sshd tests (tests/integration/test_ssh_faults.py) show the policy at
work on a live connection; these pin down its pieces exactly: the fingerprint
is OpenSSH's, the known_hosts line and file modes are what ssh writes, a
refusal writes nothing and says how to fix it, and a device's upload answer is
accepted only when it is exactly what the upload script prints.
"""

from __future__ import annotations

import shutil
import stat
import subprocess
from pathlib import Path
from types import SimpleNamespace

import paramiko
import pytest

from harness.errors import ConfigError, HostKeyError
from harness.transports.ssh import (
    KnownHostsPolicy,
    _final_name,
    _parse_stream_answer,
    fingerprint,
    known_hosts_name,
    load_private_key,
)
from tests.support.sshd_board import fingerprint_of_pub, write_ed25519_key


@pytest.fixture
def key(tmp_path: Path) -> tuple[paramiko.PKey, str]:
    pub = write_ed25519_key(tmp_path / "id")
    return paramiko.PKey.from_path(str(tmp_path / "id")), pub


def test_fingerprint_is_openssh_sha256(key, tmp_path):
    pkey, pub = key
    fp = fingerprint(pkey)
    assert fp == fingerprint_of_pub(pub) and fp.startswith("SHA256:") and "=" not in fp
    if shutil.which("ssh-keygen"):  # the reference itself, when installed
        (tmp_path / "id.pub").write_text(pub + "\n")
        out = subprocess.run(["ssh-keygen", "-lf", str(tmp_path / "id.pub")],
                             capture_output=True, text=True, check=True).stdout
        assert out.split()[1] == fp


def test_known_hosts_name_brackets_other_ports():
    assert known_hosts_name("board.local", 22) == "board.local"
    assert known_hosts_name("10.0.0.5", 2222) == "[10.0.0.5]:2222"
    assert known_hosts_name("10.0.0.5", 21) == "[10.0.0.5]:21"


def _transport(tmp_path: Path, accept: bool) -> SimpleNamespace:
    return SimpleNamespace(device_name="pi4", host="10.0.0.5", port=2222,
                           known_hosts=tmp_path / "home" / ".ssh" / "known_hosts",
                           accept_new_host_key=accept, where="targets/pi4.toml")


def test_unknown_host_is_refused_with_the_fix_and_nothing_written(key, tmp_path):
    pkey, _ = key
    t = _transport(tmp_path, accept=False)
    with pytest.raises(HostKeyError) as exc:
        KnownHostsPolicy(t).missing_host_key(None, "[10.0.0.5]:2222", pkey)
    msg = str(exc.value)
    assert msg.startswith(f"pi4: the host key of 10.0.0.5:2222 (ssh-ed25519 {fingerprint(pkey)})"
                          f" is not in {t.known_hosts}; refusing")
    assert f"ssh-keyscan -p 2222 10.0.0.5 >> {t.known_hosts}" in msg
    assert "accept_new_host_key = true in [ssh] of targets/pi4.toml" in msg
    assert not t.known_hosts.parent.exists()


def test_opt_in_records_the_key_like_ssh_and_appends(key, tmp_path):
    pkey, pub = key
    t = _transport(tmp_path, accept=True)
    policy = KnownHostsPolicy(t)
    policy.missing_host_key(None, "[10.0.0.5]:2222", pkey)
    line = f"[10.0.0.5]:2222 ssh-ed25519 {pub.split()[1]}\n"
    assert t.known_hosts.read_text() == line
    assert stat.S_IMODE(t.known_hosts.stat().st_mode) == 0o600
    assert stat.S_IMODE(t.known_hosts.parent.stat().st_mode) == 0o700
    write_ed25519_key(tmp_path / "id2")
    policy.missing_host_key(None, "board", paramiko.PKey.from_path(str(tmp_path / "id2")))
    lines = t.known_hosts.read_text().splitlines(keepends=True)
    assert lines[0] == line and lines[1].startswith("board ssh-ed25519 ") and len(lines) == 2


@pytest.mark.parametrize(("out", "size", "want"), [
    ("sha256 " + "ab" * 32 + " 10", 10, "ab" * 32),
    ("sha256 " + "AB" * 32 + " 10\n", 10, "ab" * 32),
    ("sha256 " + "ab" * 32 + " 11", 10, None),  # not all the bytes arrived
    ("sha256 " + "ab" * 31 + " 10", 10, None),
    ("sha256 " + "ab" * 32 + "0 10", 10, None),
    ("sha256 " + "xy" * 32 + " 10", 10, None),
    ("sha1 " + "ab" * 32 + " 10", 10, None),
    ("sha512 " + "ab" * 32 + " 10", 10, None),
    ("sha256 " + "ab" * 32 + " 1", 10, None),
    ("sha256 " + "ab" * 32 + " 10 extra", 10, None),
    ("sha256 " + "ab" * 32, 10, None),
    ("", 0, None),
])
def test_upload_answer_is_accepted_only_when_exact(out, size, want):
    assert _parse_stream_answer(out, size) == want


def test_final_name_strips_only_the_last_temporary_suffix():
    assert _final_name("w/a/model.onnx.part-0123456789ab-deadbeef") == "w/a/model.onnx"
    assert _final_name("w/x.part-1.part-0123456789ab-deadbeef") == "w/x.part-1"
    assert _final_name("w/plain.onnx") == "w/plain.onnx"


def test_private_key_checks(tmp_path):
    good = tmp_path / "good"
    write_ed25519_key(good)
    assert isinstance(load_private_key(good, "p.toml"), paramiko.PKey)
    loose = tmp_path / "loose"
    write_ed25519_key(loose, mode=0o644)
    with pytest.raises(ConfigError, match=r"^p\.toml: .*loose is accessible by others"):
        load_private_key(loose, "p.toml")
    locked = tmp_path / "locked"
    write_ed25519_key(locked, passphrase=b"secret")
    with pytest.raises(ConfigError, match=r"^p\.toml: .*locked is protected by a passphrase"):
        load_private_key(locked, "p.toml")
    junk = tmp_path / "junk"
    junk.write_text("not a key\n")
    junk.chmod(0o600)
    with pytest.raises(ConfigError, match=r"^p\.toml: .*junk is not a private key paramiko "
                                          r"can read"):
        load_private_key(junk, "p.toml")
