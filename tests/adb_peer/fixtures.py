"""Pytest fixtures and helpers around the ADB peer.

Import the fixtures into a test module with
``from tests.adb_peer import fixtures`` and ``adb_key = fixtures.adb_key`` (the
peer goes by that one name everywhere, as ``python -m tests.adb_peer`` too).
make_targets_dir() writes targets/pixel6-emulated.toml aimed at a running
peer (its dynamic port and the test key), the way tests/support/sshd_board.py does
for the SSH board, so `--targets-dir` runs the suite through ADB.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.transports.adb import ensure_adb_key

from .server import AdbPeer

REPO = Path(__file__).resolve().parents[2]
EMULATED_PROFILE = REPO / "targets" / "pixel6-emulated.toml"


def make_targets_dir(dest: Path, peer: AdbPeer, key_path: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    text = EMULATED_PROFILE.read_text()
    text = re.sub(r'(?m)^address = ".*"$', f'address = "{peer.host}:{peer.port}"', text)
    text = re.sub(r'(?m)^key_path = ".*"$', f'key_path = "{key_path}"', text)
    (dest / "pixel6-emulated.toml").write_text(text)
    return dest


@pytest.fixture(scope="session")
def adb_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh adbkey pair (created by the transport's own first-use code)."""
    return ensure_adb_key(tmp_path_factory.mktemp("adbkey") / "adbkey")


@pytest.fixture
def adb_peer(tmp_path: Path, adb_key: Path) -> Iterator[AdbPeer]:
    """A running emulated Pixel 6 that trusts adb_key."""
    peer = AdbPeer(tmp_path / "device", [Path(str(adb_key) + ".pub")]).start()
    try:
        yield peer
    finally:
        peer.stop()
