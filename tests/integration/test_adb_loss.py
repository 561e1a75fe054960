"""A 50 MB push under 5 % packet loss (nftables in a network namespace).

Proves the bulk_write guard: adb-shell 0.4.4's stock TcpTransport drops the
tail of partial sends, so the same push over the same lossy link fails (or
arrives corrupted), while AdbTransport's GuardedTcpTransport delivers it
intact, verified by sha256 on the device.
"""

from __future__ import annotations

import hashlib
import os
import socket
import time
from pathlib import Path

import pytest

pytest.importorskip("adb_shell", reason="the ADB tests need adb-shell==0.4.4")

from adb_shell.adb_device import AdbDevice  # noqa: E402
from adb_shell.auth.sign_cryptography import CryptographySigner  # noqa: E402
from adb_shell.transport.tcp_transport import TcpTransport  # noqa: E402

from harness.transports.adb import AdbSettings, AdbTransport  # noqa: E402
from tests.adb_peer import fixtures as peer_fixtures  # noqa: E402
from tests.adb_peer import netns  # noqa: E402

adb_key = peer_fixtures.adb_key  # pytest fixture, shared with the other ADB tests

pytestmark = [pytest.mark.adb, pytest.mark.slow]

SIZE = 50 * 1024 * 1024


@pytest.fixture(scope="module")
def payload(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("payload") / "artifact-50mb.bin"
    p.write_bytes(os.urandom(SIZE))
    return p


@pytest.fixture
def lossy_peer(tmp_path, adb_key):
    reason = netns.unavailable_reason()
    if reason:
        pytest.skip(f"network namespace unavailable: {reason}")
    with netns.LossyPeerHost(tmp_path / "device", Path(str(adb_key) + ".pub"), 5) as host:
        yield host


def test_50mb_push_survives_5_percent_loss(lossy_peer, adb_key, payload):
    settings = AdbSettings(address=lossy_peer.address, serial=None, key_path=adb_key,
                           connect_timeout_s=10, auth_timeout_s=10, io_timeout_s=20)
    t = AdbTransport("pixel6-lossy", settings)
    t.connect()
    try:
        t0 = time.monotonic()
        res = t.push(payload, "/data/local/tmp/gem-hil/artifact-50mb.bin")
        took = time.monotonic() - t0
    finally:
        t.close()
    assert not res.skipped and res.size_bytes == SIZE
    on_device = lossy_peer.sandbox / "data/local/tmp/gem-hil/artifact-50mb.bin"
    assert hashlib.sha256(on_device.read_bytes()).hexdigest() == res.sha256
    print(f"\n50 MB push under 5 % loss: {took:.1f} s ({SIZE / took / 1e6:.1f} MB/s)")


def test_stock_adb_shell_transport_breaks_under_the_same_loss(lossy_peer, adb_key, payload):
    """The bug the guard fixes, reproduced: the unguarded client fails."""
    host, port = lossy_peer.address.split(":")

    class StockSmallBuffer(TcpTransport):
        # A 64 KiB send buffer makes the partial send certain instead of likely.
        def connect(self, transport_timeout_s):
            super().connect(transport_timeout_s)
            self._connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)

    dev = AdbDevice(StockSmallBuffer(host, int(port)), default_transport_timeout_s=5)
    dev.connect(rsa_keys=[CryptographySigner(str(adb_key))], auth_timeout_s=5)
    on_device = lossy_peer.sandbox / "data/local/tmp/stock.bin"
    failed = False
    try:
        dev.push(str(payload), "/data/local/tmp/stock.bin", transport_timeout_s=5,
                 read_timeout_s=5)
    except Exception:  # noqa: BLE001 - any failure is the point
        failed = True
    finally:
        dev.close()
    corrupted = not on_device.exists() or on_device.stat().st_size != SIZE
    assert failed or corrupted, "the stock transport survived 5 % loss: guard unproven"
