"""An ADB device peer: what adbd on a Pixel 6 looks like from the wire.

It exists because no adbd runs on a Linux host, and a transport tested only
against a mock proves nothing. It speaks the real protocol (checked against
Debian's `adb` client too, see tests/integration/test_adb_real_client.py):

- CNXN handshake with version/max-payload negotiation and a device banner;
- AUTH: a random 20-byte TOKEN, SIGNATURE checked against the authorised
  adbkey.pub keys, RSAPUBLICKEY answered only when the "user accepts the
  prompt" (accept_prompt=True) -- otherwise, like a phone whose dialog nobody
  taps, it stays silent;
- OPEN/OKAY/WRTE/CLSE with one WRTE in flight per stream in each direction;
  the device answers the host's CLSE with its own CLSE;
- services shell: (legacy: stdout+stderr merged, no exit status),
  shell,v2: (framed stdout/stderr/exit), exec: and sync:
  (STAT/LIST/SEND/RECV/QUIT with DATA/DONE/OKAY/FAIL/DENT).

Faults for tests: vanish() drops every connection and refuses new ones for a
while (a phone re-enumerating), drop_after_sync_bytes makes the device vanish
in the middle of a push, corrupt_next_pull flips a byte of the next file pulled.
"""

from __future__ import annotations

import contextlib
import os
import queue
import secrets
import signal
import socket
import stat as stat_mod
import struct
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import rsa

from . import protocol as P
from .keys import load_pubkey_file, parse_android_pubkey, same_key, signature_ok
from .sandbox import DeviceSandbox, OutputUnmapper

DEVICE_FEATURES = "shell_v2,cmd,fixed_push_mkdir"
DEVICE_BANNER = ("device::ro.product.name=oriole;ro.product.model=Pixel 6;"
                 f"ro.product.device=oriole;features={DEVICE_FEATURES}")
SYNC_DATA_MAX = 64 * 1024


@dataclass
class PeerStats:
    """What happened on the wire, for tests that assert protocol behaviour."""

    connections: int = 0
    auth_ok: int = 0
    auth_bad_signatures: int = 0
    prompts_shown: int = 0
    services: list[str] = field(default_factory=list)
    host_clse: int = 0
    device_clse_answers: int = 0
    sync_bytes_received: int = 0
    host_wrte_overlaps: int = 0  # host WRTEs sent before our OKAY of the previous one
    host_versions: list[int] = field(default_factory=list)


class _Closed(Exception):
    pass


class AdbPeer:
    """A listening emulated device. Use as a context manager or start()/stop()."""

    def __init__(self, sandbox_dir: Path, authorized_keys: list[Path] | None = None,
                 host: str = "127.0.0.1", port: int = 0, accept_prompt: bool = False,
                 require_auth: bool = True, shell_v2: bool = True) -> None:
        self.sandbox = DeviceSandbox(Path(sandbox_dir)).populate()
        self._keys: list[rsa.RSAPublicKey] = [load_pubkey_file(p) for p in authorized_keys or []]
        self.require_auth = require_auth
        self.shell_v2 = shell_v2  # False: an adbd older than Android 7
        self.accept_prompt = accept_prompt
        self.host = host
        self._port = port
        self.stats = PeerStats()
        self.drop_after_sync_bytes: int | None = None
        #: flip one byte of the next file the host pulls (RECV), as a bad cable
        #: or a flash read error would: the host must notice, not keep it
        self.corrupt_next_pull = False
        self.vanish_for_s = 1.0
        self._listener: socket.socket | None = None
        self._conns: set[_Connection] = set()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._accept_thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._port

    @property
    def serial(self) -> str:
        return f"{self.host}:{self._port}"

    def authorize(self, pubkey_path: Path) -> None:
        self._keys.append(load_pubkey_file(pubkey_path))

    def start(self) -> AdbPeer:
        self._listen()
        return self

    def _listen(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self._port))
        sock.listen(16)
        self._port = sock.getsockname()[1]
        self._listener = sock
        self._accept_thread = threading.Thread(target=self._accept_loop, args=(sock,),
                                               name="adb-peer-accept", daemon=True)
        self._accept_thread.start()

    def _accept_loop(self, listener: socket.socket) -> None:
        while not self._stopping.is_set():
            try:
                sock, _ = listener.accept()
            except OSError:
                return
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Connection(self, sock)
            with self._lock:
                self._conns.add(conn)
                self.stats.connections += 1
            threading.Thread(target=conn.serve, name="adb-peer-conn", daemon=True).start()

    def _forget(self, conn: _Connection) -> None:
        with self._lock:
            self._conns.discard(conn)

    def _stop_listening(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        if self._accept_thread is not None:
            self._accept_thread.join(timeout=5)
            self._accept_thread = None

    def drop_connections(self) -> None:
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            c.abort()

    def vanish(self, seconds: float | None = None) -> None:
        """The device disappears (cable pulled, re-enumeration): every
        connection dies and connects are refused for `seconds`, then it is back."""
        self._stop_listening()
        self.drop_connections()
        delay = self.vanish_for_s if seconds is None else seconds

        def come_back() -> None:
            if not self._stopping.wait(delay):
                self._listen()

        threading.Thread(target=come_back, daemon=True).start()

    def stop(self) -> None:
        self._stopping.set()
        self._stop_listening()
        self.drop_connections()

    def __enter__(self) -> AdbPeer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- auth -------------------------------------------------------------

    def _key_for_signature(self, token: bytes, sig: bytes) -> bool:
        return any(signature_ok(k, token, sig) for k in self._keys)

    def _accept_presented_key(self, blob: bytes) -> bool:
        self.stats.prompts_shown += 1
        if not self.accept_prompt:
            return False
        try:
            key = parse_android_pubkey(blob)
        except ValueError:
            return False
        if not any(same_key(key, k) for k in self._keys):
            self._keys.append(key)
        return True


class _Connection:
    """One host connected to the device (adbd's atransport)."""

    def __init__(self, peer: AdbPeer, sock: socket.socket) -> None:
        self.peer = peer
        self.sock = sock
        self.send_lock = threading.Lock()
        self.max_payload = P.MAX_PAYLOAD
        self.streams: dict[int, _Stream] = {}
        self._next_id = 1
        self.online = False
        self.dead = threading.Event()

    def send(self, command: int, arg0: int, arg1: int, data: bytes = b"") -> None:
        msg = P.pack(command, arg0, arg1, data)
        with self.send_lock:
            if self.dead.is_set():
                raise _Closed()
            try:
                self.sock.sendall(msg)
            except OSError:
                self.abort()
                raise _Closed() from None

    def abort(self) -> None:
        if self.dead.is_set():
            return
        self.dead.set()
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        for st in list(self.streams.values()):
            st.host_closed()

    def serve(self) -> None:
        try:
            self._serve()
        except (EOFError, OSError, _Closed, P.PeerProtocolError):
            pass
        finally:
            self.abort()
            self.peer._forget(self)

    def _serve(self) -> None:
        token = b""
        while True:
            cmd, a0, a1, data = P.read_message(self.sock, self.max_payload)
            if cmd == P.A_CNXN:
                self.peer.stats.host_versions.append(a0)
                self.version = min(a0, P.VERSION_SKIP_CHECKSUM)
                self.max_payload = min(a1, P.MAX_PAYLOAD) if a1 else P.MAX_PAYLOAD
                if not self.peer.require_auth:
                    self._online()
                else:
                    token = secrets.token_bytes(P.TOKEN_SIZE)
                    self.send(P.A_AUTH, P.AUTH_TOKEN, 0, token)
            elif cmd == P.A_AUTH and not self.online:
                if a0 == P.AUTH_SIGNATURE:
                    if token and self.peer._key_for_signature(token, data):
                        self.peer.stats.auth_ok += 1
                        self._online()
                    else:
                        self.peer.stats.auth_bad_signatures += 1
                        token = secrets.token_bytes(P.TOKEN_SIZE)
                        self.send(P.A_AUTH, P.AUTH_TOKEN, 0, token)
                elif a0 == P.AUTH_RSAPUBLICKEY:
                    if self.peer._accept_presented_key(data.rstrip(b"\0")):
                        self.peer.stats.auth_ok += 1
                        self._online()
                    # else: the prompt waits on the phone; adbd says nothing.
            elif not self.online:
                continue  # adbd ignores everything else before the handshake
            elif cmd == P.A_OPEN:
                self._open(a0, data.rstrip(b"\0").decode("utf-8", "replace"))
            elif cmd == P.A_OKAY:
                st = self.streams.get(a1)
                if st is not None:
                    st.remote_id = a0
                    st.okay.set()
            elif cmd == P.A_WRTE:
                st = self.streams.get(a1)
                if st is not None:
                    if st.host_pending:
                        self.peer.stats.host_wrte_overlaps += 1
                    st.host_pending = True
                    st.inbox.put(data)
            elif cmd == P.A_CLSE:
                self.peer.stats.host_clse += 1
                st = self.streams.pop(a1, None)
                if st is not None and not st.device_closed:
                    st.device_closed = True
                    st.host_closed()
                    self.peer.stats.device_clse_answers += 1
                    with contextlib.suppress(_Closed):
                        self.send(P.A_CLSE, st.local_id, st.remote_id)

    def _online(self) -> None:
        self.online = True
        banner = DEVICE_BANNER if self.peer.shell_v2 else DEVICE_BANNER.replace("shell_v2,", "")
        self.send(P.A_CNXN, self.version, self.max_payload, banner.encode())

    def _open(self, host_id: int, service: str) -> None:
        self.peer.stats.services.append(service)
        name, _, arg = service.partition(":")
        kind, *opts = name.split(",")
        local_id = self._next_id
        self._next_id += 1
        stream: _Stream
        if kind == "shell" and "v2" in opts and not self.peer.shell_v2:
            self.send(P.A_CLSE, 0, host_id)  # an old adbd does not know shell,v2
            return
        if kind == "shell":
            stream = _ShellStream(self, local_id, host_id, arg, v2="v2" in opts, merge=True)
        elif kind == "exec":
            stream = _ShellStream(self, local_id, host_id, arg, v2=False, merge=True)
        elif kind == "sync":
            stream = _SyncStream(self, local_id, host_id)
        else:
            self.send(P.A_CLSE, 0, host_id)  # adbd: unknown service -> close
            return
        self.streams[local_id] = stream
        self.send(P.A_OKAY, local_id, host_id)
        stream.start()


class _Stream:
    """One adb stream: inbox worker (host->device) and flow-controlled writes."""

    def __init__(self, conn: _Connection, local_id: int, remote_id: int) -> None:
        self.conn = conn
        self.local_id = local_id
        self.remote_id = remote_id
        self.okay = threading.Event()
        self.inbox: queue.Queue[bytes | None] = queue.Queue()
        self.device_closed = False
        self.write_lock = threading.Lock()
        self.gone = threading.Event()
        self.host_pending = False  # a host WRTE not yet answered with OKAY

    def start(self) -> None:
        threading.Thread(target=self._inbox_loop, daemon=True).start()

    def _inbox_loop(self) -> None:
        while True:
            data = self.inbox.get()
            if data is None:
                return
            try:
                self.host_pending = False
                self.conn.send(P.A_OKAY, self.local_id, self.remote_id)
                self.on_data(data)
            except _Closed:
                return

    def write(self, data: bytes) -> None:
        """Device->host data, never more than one WRTE awaiting its OKAY."""
        with self.write_lock:
            view = memoryview(data)
            step = self.conn.max_payload
            for i in range(0, len(data), step):
                if self.gone.is_set():
                    raise _Closed()
                self.okay.clear()
                self.conn.send(P.A_WRTE, self.local_id, self.remote_id, bytes(view[i:i + step]))
                while not self.okay.wait(0.5):
                    if self.gone.is_set() or self.conn.dead.is_set():
                        raise _Closed()

    def close_from_device(self) -> None:
        if self.device_closed:
            return
        self.device_closed = True
        with contextlib.suppress(_Closed):
            self.conn.send(P.A_CLSE, self.local_id, self.remote_id)

    def host_closed(self) -> None:
        self.gone.set()
        self.inbox.put(None)

    def on_data(self, data: bytes) -> None:
        pass


class _ShellStream(_Stream):
    def __init__(self, conn: _Connection, local_id: int, remote_id: int, command: str,
                 v2: bool, merge: bool) -> None:
        super().__init__(conn, local_id, remote_id)
        self.command = command
        self.v2 = v2
        self.v2_buf = b""
        sb = conn.peer.sandbox
        argv = ["/bin/sh", "-c", sb.rewrite_command(command)] if command else ["/bin/sh"]
        self.proc = subprocess.Popen(
            argv, cwd=sb.home, env=sb.shell_env(), stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE if v2 else subprocess.STDOUT, start_new_session=True)

    def start(self) -> None:
        super().start()
        threading.Thread(target=self._pump, daemon=True).start()

    def _frame(self, ident: int, data: bytes) -> bytes:
        return struct.pack("<BI", ident, len(data)) + data if self.v2 else data

    def _reader(self, fd: int, ident: int) -> None:
        unmap = OutputUnmapper(self.conn.peer.sandbox.root)
        while True:
            chunk = os.read(fd, 65536)
            out = unmap.feed(chunk) if chunk else unmap.flush()
            if out:
                self.write(self._frame(ident, out))
            if not chunk:
                return

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        threads = [threading.Thread(target=self._guard, args=(self.proc.stdout.fileno(), 1))]
        if self.v2 and self.proc.stderr is not None:
            threads.append(threading.Thread(target=self._guard,
                                            args=(self.proc.stderr.fileno(), 2)))
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        rc = self.proc.wait()
        # the pipes die with the command: a peer serving a whole test session must
        # not keep three descriptors per command (the suite then hit select()'s 1024)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
        stdin = self.proc.stdin
        if stdin is not None:
            self.proc.stdin = None
            with contextlib.suppress(OSError, ValueError):
                stdin.close()
        if self.v2 and not self.gone.is_set():
            with contextlib.suppress(_Closed):
                self.write(self._frame(3, bytes([rc & 0xFF if rc >= 0 else 128 - rc])))
        self.close_from_device()

    def _guard(self, fd: int, ident: int) -> None:
        with contextlib.suppress(_Closed, OSError):
            self._reader(fd, ident)

    def on_data(self, data: bytes) -> None:
        stdin = self.proc.stdin
        if stdin is None:
            return
        try:
            if not self.v2:
                stdin.write(data)
                stdin.flush()
                return
            self.v2_buf += data
            while len(self.v2_buf) >= 5:
                ident, length = struct.unpack_from("<BI", self.v2_buf)
                if len(self.v2_buf) < 5 + length:
                    break
                payload = self.v2_buf[5:5 + length]
                self.v2_buf = self.v2_buf[5 + length:]
                if ident == 0:
                    stdin.write(payload)
                    stdin.flush()
                elif ident == 4:
                    stdin.close()
                    self.proc.stdin = None
                    return
        except (BrokenPipeError, ValueError):
            pass

    def host_closed(self) -> None:
        super().host_closed()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)


_ID = {name: int.from_bytes(name.encode(), "little") for name in
       ("STAT", "LIST", "SEND", "RECV", "QUIT", "DATA", "DONE", "OKAY", "FAIL", "DENT")}
_NAME = {v: k for k, v in _ID.items()}


class _SyncStream(_Stream):
    """The file sync service (SYNC.TXT, v1 messages)."""

    def __init__(self, conn: _Connection, local_id: int, remote_id: int) -> None:
        super().__init__(conn, local_id, remote_id)
        self.buf = bytearray()
        self.sending: tuple[Path, object, str | None] | None = None  # (path, file, error)

    def _fail(self, message: str) -> bytes:
        raw = message.encode()
        return struct.pack("<II", _ID["FAIL"], len(raw)) + raw

    def on_data(self, data: bytes) -> None:
        self.buf += data
        while True:
            if len(self.buf) < 8:
                return
            ident, length = struct.unpack_from("<II", self.buf)
            name = _NAME.get(ident)
            if self.sending is not None:
                if name == "DATA":
                    if length > SYNC_DATA_MAX:
                        self.write(self._fail(f"oversize data message {length}"))
                        self.close_from_device()
                        return
                    if len(self.buf) < 8 + length:
                        return
                    self._send_data(bytes(memoryview(self.buf)[8:8 + length]))
                    del self.buf[:8 + length]
                    continue
                if name == "DONE":
                    del self.buf[:8]
                    self._send_done(length)
                    continue
                self.write(self._fail(f"unexpected {name or hex(ident)} during SEND"))
                self.close_from_device()
                return
            if name == "QUIT":
                self.close_from_device()
                return
            if name not in ("STAT", "LIST", "SEND", "RECV"):
                self.write(self._fail(f"unknown sync request {ident:#x}"))
                self.close_from_device()
                return
            if length > 1024:
                self.write(self._fail("path too long"))
                self.close_from_device()
                return
            if len(self.buf) < 8 + length:
                return
            arg = bytes(self.buf[8:8 + length]).decode("utf-8", "replace")
            del self.buf[:8 + length]
            getattr(self, "_" + name.lower())(arg)

    def _map(self, device_path: str) -> Path:
        return self.conn.peer.sandbox.map_path(device_path)

    def _stat(self, device_path: str) -> None:
        try:
            st = os.lstat(self._map(device_path))
            reply = struct.pack("<4I", _ID["STAT"], st.st_mode & 0xFFFFFFFF,
                                st.st_size & 0xFFFFFFFF, int(st.st_mtime))
        except (OSError, PermissionError):
            reply = struct.pack("<4I", _ID["STAT"], 0, 0, 0)
        self.write(reply)

    def _list(self, device_path: str) -> None:
        out = bytearray()
        try:
            base = self._map(device_path)
            names = [".", ".."] + sorted(os.listdir(base))
        except (OSError, PermissionError):
            names, base = [], Path("/nonexistent")
        for n in names:
            try:
                st = os.lstat(base / n)
            except OSError:
                continue
            raw = n.encode()
            out += struct.pack("<5I", _ID["DENT"], st.st_mode & 0xFFFFFFFF,
                               st.st_size & 0xFFFFFFFF, int(st.st_mtime), len(raw)) + raw
        out += struct.pack("<5I", _ID["DONE"], 0, 0, 0, 0)
        self.write(bytes(out))

    def _recv(self, device_path: str) -> None:
        try:
            f = open(self._map(device_path), "rb")  # noqa: SIM115
        except (OSError, PermissionError) as exc:
            self.write(self._fail(f"open failed: {exc.strerror or exc}"))
            return
        with f:
            pending = bytearray()
            corrupt, self.conn.peer.corrupt_next_pull = self.conn.peer.corrupt_next_pull, False
            while chunk := f.read(SYNC_DATA_MAX):
                if corrupt:
                    chunk = bytes([chunk[0] ^ 0xFF]) + chunk[1:]
                    corrupt = False
                pending += struct.pack("<II", _ID["DATA"], len(chunk)) + chunk
                if len(pending) >= self.conn.max_payload:
                    self.write(bytes(pending))
                    pending.clear()
            pending += struct.pack("<II", _ID["DONE"], 0)
            self.write(bytes(pending))

    def _send(self, spec: str) -> None:
        path, _, mode_s = spec.rpartition(",")
        if not path:
            path, mode_s = spec, "33188"
        try:
            target = self._map(path)
            mode = int(mode_s) if mode_s.isdigit() else 0o644
            target.parent.mkdir(parents=True, exist_ok=True)  # fixed_push_mkdir
            f = open(target, "wb")  # noqa: SIM115
            with contextlib.suppress(OSError):
                os.chmod(target, stat_mod.S_IMODE(mode) or 0o644)
            self.sending = (target, f, None)
        except (OSError, PermissionError, ValueError) as exc:
            self.sending = (Path(path), None, f"{path}: {exc}")

    def _send_data(self, payload: bytes) -> None:
        peer = self.conn.peer
        peer.stats.sync_bytes_received += len(payload)
        if peer.drop_after_sync_bytes is not None and \
                peer.stats.sync_bytes_received >= peer.drop_after_sync_bytes:
            peer.drop_after_sync_bytes = None
            threading.Thread(target=peer.vanish, daemon=True).start()
            raise _Closed()
        assert self.sending is not None
        target, f, err = self.sending
        if f is not None and err is None:
            try:
                f.write(payload)  # type: ignore[attr-defined]
            except OSError as exc:
                self.sending = (target, f, f"write failed: {exc.strerror}")

    def _send_done(self, mtime: int) -> None:
        assert self.sending is not None
        target, f, err = self.sending
        self.sending = None
        if f is not None:
            f.close()  # type: ignore[attr-defined]
            with contextlib.suppress(OSError):
                os.utime(target, (time.time(), mtime))
        if err:
            self.write(self._fail(err))
        else:
            self.write(struct.pack("<II", _ID["OKAY"], 0))

    def host_closed(self) -> None:
        super().host_closed()
        if self.sending is not None and self.sending[1] is not None:
            with contextlib.suppress(OSError):
                self.sending[1].close()  # type: ignore[attr-defined]
