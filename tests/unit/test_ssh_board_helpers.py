"""Helpers of the loopback sshd board (tests/support/sshd_board.py) that tests rely on."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import tomllib
from pathlib import Path

import pytest

from tests.support.sshd_board import _grant_search, set_toml_keys

TEXT = """name = "x"
[ssh]
host = "placeholder"   # comment
port = 22

[run]
threads = 1
"""


def test_set_toml_keys_replaces_and_inserts_within_the_table() -> None:
    out = set_toml_keys(TEXT, "ssh", {"host": 'we"ird\\host', "port": 2222, "user": "u"})
    out = set_toml_keys(out, "run", {"python": "/opt/py/bin/python3", "threads": 2})
    data = tomllib.loads(out)
    assert data["ssh"] == {"host": 'we"ird\\host', "port": 2222, "user": "u"}
    assert data["run"] == {"threads": 2, "python": "/opt/py/bin/python3"}
    assert out.startswith('name = "x"\n[ssh]\n')


def test_set_toml_keys_adds_a_missing_table() -> None:
    data = tomllib.loads(set_toml_keys(TEXT, "hardware", {"cores": 4, "emulated": True}))
    assert data["hardware"] == {"cores": 4, "emulated": True}


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
def test_grant_search_lets_only_that_user_traverse() -> None:
    # not pytest's tmp_path: its parent is 0700 root, nobody could enter anyway
    base = Path(tempfile.mkdtemp(prefix="gem-hil-acl-"))
    base.chmod(0o755)
    locked = base / "locked"
    (locked / "inner").mkdir(parents=True)
    locked.chmod(0o700)
    try:
        _check_grant(locked)
    finally:
        shutil.rmtree(base)


def _check_grant(locked: Path) -> None:

    def can_enter(uid: int) -> bool:
        res = subprocess.run(["test", "-d", str(locked / "inner")], user=uid, group=uid,
                             extra_groups=[], capture_output=True)
        return res.returncode == 0

    nobody = 65534
    assert not can_enter(nobody)
    how = _grant_search(locked, nobody)
    assert can_enter(nobody)
    if how.startswith("POSIX ACL"):
        assert locked.stat().st_mode & 0o001 == 0  # others still shut out
