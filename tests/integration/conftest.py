"""Fixtures for integration tests against real components.

``sshd_board``: a real OpenSSH sshd on loopback (see tests/support/sshd_board.py),
started once per session. Needs root and /usr/sbin/sshd; otherwise every test
using it is skipped with the reason.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.profiles import parse_profile
from harness.transports.ssh import SshTransport
from tests.support.sshd_board import SshdBoard


@pytest.fixture(scope="session")
def sshd_board() -> Iterator[SshdBoard]:
    """A running sshd: host, port, user, key_file, known_hosts, log_path, make_targets_dir()."""
    reason = SshdBoard.unavailable_reason()
    if reason:
        print(f"\nsshd_board unavailable: {reason}", file=sys.stderr)
        pytest.skip(f"real sshd board unavailable: {reason}")
    board = SshdBoard()
    try:
        board.start()
    except Exception as exc:  # root and sshd are here, so a start failure is a real failure
        board.cleanup()
        pytest.fail(f"could not start the sshd board: {exc}")
    for note in board.notes:
        print(f"\nsshd_board: {note}", file=sys.stderr)
    try:
        yield board
    finally:
        board.cleanup()


@pytest.fixture
def ssh_board_profile_path(sshd_board: SshdBoard, tmp_path: Path) -> Path:
    """A targets/ssh-board.toml aimed at the running sshd."""
    return sshd_board.make_targets_dir(tmp_path / "targets") / "ssh-board.toml"


@pytest.fixture
def ssh(sshd_board: SshdBoard, ssh_board_profile_path: Path) -> Iterator[SshTransport]:
    """An SshTransport built the way the engine builds it: from the profile."""
    transport = SshTransport.from_profile(parse_profile(ssh_board_profile_path))
    try:
        yield transport
    finally:
        transport.close()


@pytest.fixture(scope="session")
def postgres() -> Iterator[object]:
    """A real PostgreSQL server (Debian's binaries, private port and data folder)."""
    from tests.support.postgres import PostgresServer

    reason = PostgresServer.unavailable_reason()
    if reason:
        pytest.skip(f"real PostgreSQL unavailable: {reason}")
    server = PostgresServer()
    try:
        server.start()
    except Exception as exc:
        server.stop()
        pytest.fail(f"could not start PostgreSQL: {exc}")
    try:
        yield server
    finally:
        server.stop()
