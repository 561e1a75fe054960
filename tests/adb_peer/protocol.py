"""ADB wire format: the 24-byte message header and the command words.

Written from AOSP's protocol.txt / adb.h so the peer speaks what adbd speaks:
every message is six little-endian u32 (command, arg0, arg1, data length,
data checksum, magic = command ^ 0xffffffff) followed by the payload.
"""

from __future__ import annotations

import socket
import struct

import numpy as np

HEADER = struct.Struct("<6I")


def _word(name: bytes) -> int:
    return int.from_bytes(name, "little")


A_SYNC = _word(b"SYNC")
A_CNXN = _word(b"CNXN")
A_AUTH = _word(b"AUTH")
A_OPEN = _word(b"OPEN")
A_OKAY = _word(b"OKAY")
A_CLSE = _word(b"CLSE")
A_WRTE = _word(b"WRTE")
A_STLS = _word(b"STLS")
COMMAND_NAMES = {v: k for k, v in {
    "SYNC": A_SYNC, "CNXN": A_CNXN, "AUTH": A_AUTH, "OPEN": A_OPEN,
    "OKAY": A_OKAY, "CLSE": A_CLSE, "WRTE": A_WRTE, "STLS": A_STLS}.items()}

AUTH_TOKEN = 1
AUTH_SIGNATURE = 2
AUTH_RSAPUBLICKEY = 3
TOKEN_SIZE = 20

#: adbd's protocol version that lets both sides skip payload checksums; the
#: peer still always sends a correct checksum so older clients (adb-shell
#: 0.4.4 speaks 0x01000000 and verifies it) accept every message.
VERSION_SKIP_CHECKSUM = 0x01000001
VERSION_MIN = 0x01000000
#: MAX_PAYLOAD of adbd since Android 9 (1 MiB); the host may ask for less.
MAX_PAYLOAD = 1024 * 1024


class PeerProtocolError(Exception):
    """The host sent something that is not an ADB message."""


def checksum(data: bytes) -> int:
    if not data:
        return 0
    return int(np.frombuffer(data, dtype=np.uint8).sum(dtype=np.uint64)) & 0xFFFFFFFF


def pack(command: int, arg0: int, arg1: int, data: bytes = b"") -> bytes:
    return HEADER.pack(command, arg0, arg1, len(data), checksum(data),
                       command ^ 0xFFFFFFFF) + data


def recv_exact(sock: socket.socket, n: int) -> bytes:
    """n bytes or EOFError: a half message means the host went away."""
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError("host closed the connection")
        buf += chunk
    return bytes(buf)


def read_message(sock: socket.socket, max_payload: int) -> tuple[int, int, int, bytes]:
    command, arg0, arg1, length, _check, magic = HEADER.unpack(recv_exact(sock, HEADER.size))
    if magic != command ^ 0xFFFFFFFF:
        raise PeerProtocolError(f"bad magic {magic:#x} for command {command:#x}")
    if length > max(max_payload, MAX_PAYLOAD):
        raise PeerProtocolError(f"payload of {length} bytes exceeds {max_payload}")
    data = recv_exact(sock, length) if length else b""
    return command, arg0, arg1, data
