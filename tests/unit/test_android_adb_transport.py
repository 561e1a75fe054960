"""AdbTransport pieces that need no device: command building and the
bulk_write guard (a partial socket.send must not lose bytes)."""

from __future__ import annotations

import socket
import threading
import time

import pytest

pytest.importorskip("adb_shell", reason="the ADB transport needs adb-shell==0.4.4")

from adb_shell.transport.tcp_transport import TcpTransport  # noqa: E402

from harness.errors import ConfigError  # noqa: E402
from harness.transports.adb import AdbSettings, AdbTransport, GuardedTcpTransport  # noqa: E402


def test_build_command_quotes_every_word():
    cmd = AdbTransport.build_command(["echo", "a b", "$(x)"], {"K": "v w"}, "/data/local/tmp/d e")
    assert cmd == "cd '/data/local/tmp/d e' && env 'K=v w' echo 'a b' '$(x)'"
    with pytest.raises(ValueError):
        AdbTransport.build_command(["true"], {"A;B": "1"}, None)


def test_settings_need_exactly_one_of_address_or_serial(tmp_path):
    from harness.registry import TableContext, parse_settings

    def settings(data):
        return parse_settings(AdbSettings, data, TableContext(tmp_path / "p.toml", "adb"))

    with pytest.raises(ConfigError, match="exactly one"):
        settings({})
    with pytest.raises(ConfigError, match="host:port"):
        settings({"address": "h:99999"})
    s = settings({"address": "10.0.0.2:5555"})
    assert s.address == "10.0.0.2:5555" and s.key_path.name == "adbkey"


def _send_with(transport_cls, payload: bytes) -> int:
    """Write payload through transport_cls to a slow reader, so the kernel
    send buffer fills and sends go partial; return the bytes that arrived."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    t = transport_cls("127.0.0.1", server.getsockname()[1])
    t.connect(5)
    peer, _ = server.accept()
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    t._connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
    received = bytearray()

    def reader():
        while chunk := peer.recv(65536):
            received.extend(chunk)
            time.sleep(0.002)

    th = threading.Thread(target=reader)
    th.start()
    try:
        for i in range(0, len(payload), 1 << 20):
            t.bulk_write(payload[i:i + (1 << 20)], 5)
    finally:
        t.close()
        th.join(timeout=30)
        peer.close()
        server.close()
    return len(received)


def test_guarded_bulk_write_sends_every_byte():
    payload = bytes(16 << 20)
    assert _send_with(GuardedTcpTransport, payload) == len(payload)


def test_stock_bulk_write_loses_bytes_on_partial_send():
    payload = bytes(16 << 20)
    assert _send_with(TcpTransport, payload) < len(payload)  # the 0.4.4 bug
