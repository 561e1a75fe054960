"""The sshd board undoes the permissions it granted its login user, exactly.

A board started by hand creates a user and may open /root (pyenv) to it with
a POSIX ACL; on exit that grant must go and nothing else may change: not
another user's entry, not the directory's mode.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.sshd_board import _grant_search, _read_acl, _revoke_search

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to set ACLs of root's files")
NOBODY, OTHER = 65534, 65533


@pytest.fixture
def locked() -> Iterator[Path]:
    base = Path(tempfile.mkdtemp(prefix="gem-hil-acl-"))
    path = base / "locked"
    path.mkdir(mode=0o700)
    path.chmod(0o700)
    try:
        yield path
    finally:
        shutil.rmtree(base)


def _acl_users(path: Path) -> set[int]:
    return {e[2] for e in _read_acl(path) or [] if e[0] == 0x02}


def test_revoke_restores_a_directory_that_had_no_acl(locked: Path) -> None:
    how = _grant_search(locked, NOBODY)
    if not how.startswith("POSIX ACL"):
        pytest.skip(f"this file system has no POSIX ACLs ({how})")
    assert _acl_users(locked) == {NOBODY}
    _revoke_search(locked, NOBODY, how)
    assert _read_acl(locked) is None
    assert stat.S_IMODE(locked.stat().st_mode) == 0o700
    with pytest.raises(OSError) as exc:
        os.getxattr(locked, "system.posix_acl_access")
    assert exc.value.errno == errno.ENODATA


def test_revoke_keeps_the_other_users_entries(locked: Path) -> None:
    how = _grant_search(locked, OTHER)
    if not how.startswith("POSIX ACL"):
        pytest.skip(f"this file system has no POSIX ACLs ({how})")
    _grant_search(locked, NOBODY)
    assert _acl_users(locked) == {OTHER, NOBODY}
    _revoke_search(locked, NOBODY, how)
    assert _acl_users(locked) == {OTHER}
    assert stat.S_IMODE(locked.stat().st_mode) & 0o007 == 0  # others still shut out


def test_revoke_of_the_chmod_fallback_closes_other_again(locked: Path) -> None:
    locked.chmod(0o701)
    _revoke_search(locked, NOBODY, "chmod o+x (no ACL support)")
    assert stat.S_IMODE(locked.stat().st_mode) == 0o700
