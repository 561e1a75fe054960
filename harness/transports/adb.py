"""ADB transport (Android phones over USB or `adb tcpip`), built on adb-shell.

Why these choices:
- adb-shell (pinned 0.4.4) has methods only for the legacy ``shell:`` service,
  which merges stdout and stderr and drops the exit status. run() therefore
  opens ``shell,v2,raw:`` itself when adbd offers it (Android 7+; probed once
  per connection, [adb] shell_protocol = "auto" | "v2" | "legacy") and reads
  its framed stdout / stderr / exit code. On the legacy shell it appends a
  unique sentinel (``printf '\\n__GEMHIL_RC_<uuid>_%d\\n' "$?"``) and recovers
  the exit code from it; stdout then holds the merged output, stderr is "".
- adb-shell 0.4.4's TcpTransport.bulk_write returns after one socket.send,
  which on a non-blocking socket may send only part of the buffer; the rest is
  silently lost, the stream desynchronises and a push under packet loss hangs
  until its timeout. GuardedTcpTransport loops until every byte is sent and
  also sets TCP_NODELAY (without it every command pays a delayed-ACK stall).
- A dropped link is never hidden: the operation that saw it fails with the
  reason (so an interrupted benchmark is recorded as a failure), and the next
  operation reconnects with a bounded retry (a phone re-enumerates after a
  USB glitch).
- The host key is the standard adbkey pair (PEM private key + Android
  RSAPublicKey .pub), created on first use with 0600 permissions.

A few private adb-shell calls (_open, _read_until_close, _clse) are used so a
timed-out command can be closed (which makes adbd kill it) instead of being
left running; they are stable in the pinned version.
"""

from __future__ import annotations

import contextlib
import os
import select
import shlex
import socket
import stat
import struct
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import adb_shell.adb_device as _adb_device_mod
import adb_shell.adb_message as _adb_message_mod
import numpy as np
from adb_shell import exceptions as adb_exc
from adb_shell.adb_device import AdbDevice
from adb_shell.auth.keygen import write_public_keyfile
from adb_shell.auth.sign_cryptography import CryptographySigner
from adb_shell.transport.tcp_transport import TcpTransport

from harness.errors import (
    AuthError,
    CommandTimeout,
    ConfigError,
    ConnectError,
    TransferError,
    TransportError,
)
from harness.interrupts import note
from harness.transports.adb_settings import (  # noqa: F401  (re-exported for callers)
    DEFAULT_KEY_PATH,
    DEFAULT_PORT,
    AdbSettings,
)
from harness.transports.adb_settings import split_address as _split_address
from harness.transports.base import (
    CommandResult,
    Transport,
    command_label,
    parse_sha256sum,
)

if TYPE_CHECKING:
    from harness.profiles import DeviceProfile

T = TypeVar("T")

#: Errors that mean the link itself is gone or desynchronised (not a command failure).
LINK_ERRORS: tuple[type[BaseException], ...] = (
    OSError, EOFError, adb_exc.TcpTimeoutException, adb_exc.AdbConnectionError,
    adb_exc.InvalidChecksumError, adb_exc.InvalidCommandError, adb_exc.InvalidResponseError,
    adb_exc.UsbReadFailedError, adb_exc.UsbWriteFailedError,
)


def fast_checksum(data: bytes | bytearray) -> int:
    """The ADB payload checksum (sum of bytes mod 2**32), vectorised.

    adb-shell 0.4.4 computes it with Python's sum() for every 1 MiB WRTE both
    ways (~10 ms each), which capped pushes at ~100 MB/s; the value is
    identical, only faster.
    """
    if not data:
        return 0
    return int(np.frombuffer(data, dtype=np.uint8).sum(dtype=np.uint64)) & 0xFFFFFFFF


_adb_message_mod.checksum = fast_checksum
_adb_device_mod.checksum = fast_checksum  # type: ignore[attr-defined]


class GuardedTcpTransport(TcpTransport):
    """adb-shell's TCP transport with a bulk_write that sends everything.

    The stock 0.4.4 bulk_write does one ``socket.send`` and ignores a partial
    count; under packet loss the kernel send buffer fills, sends go partial and
    the dropped tail corrupts the ADB stream.
    """

    def connect(self, transport_timeout_s: float | None) -> None:
        super().connect(transport_timeout_s)
        sock = self._connection
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            # ADB has no keepalive of its own: let TCP notice a vanished phone
            # while a long, silent benchmark command runs (~11 s).
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            for opt, value in (("TCP_KEEPIDLE", 5), ("TCP_KEEPINTVL", 2), ("TCP_KEEPCNT", 3)):
                if hasattr(socket, opt):
                    sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, opt), value)

    def bulk_read(self, numbytes: int, transport_timeout_s: float | None) -> bytes:
        """Like the stock one, but EOF is an error: 0.4.4 treats b"" as "no
        data yet" and spins until its read timeout when the phone went away."""
        data = super().bulk_read(numbytes, transport_timeout_s)
        if not data:
            raise ConnectionResetError(f"{self._host}:{self._port} closed the connection")
        return data

    def bulk_write(self, data: bytes, transport_timeout_s: float | None) -> int:
        sock = self._connection
        if sock is None:
            raise adb_exc.TcpTimeoutException(f"{self._host}:{self._port}: not connected")
        view = memoryview(data)
        sent = 0
        while sent < len(view):
            _, writable, _ = select.select([], [sock], [], transport_timeout_s)
            if not writable:
                raise adb_exc.TcpTimeoutException(
                    f"sending to {self._host}:{self._port} stalled for {transport_timeout_s} s "
                    f"after {sent} of {len(view)} bytes")
            try:
                sent += sock.send(view[sent:])
            except BlockingIOError:
                continue
        return sent


def ensure_adb_key(key_path: Path) -> Path:
    """Create the adbkey pair on first use (private key 0600), or check it.

    An existing private key readable by others is refused, as ssh does: anyone
    who reads it can drive every phone that trusts this computer.
    """
    key_path = Path(key_path).expanduser()
    pub = Path(str(key_path) + ".pub")
    if key_path.exists():
        mode = stat.S_IMODE(key_path.stat().st_mode)
        if mode & 0o077:
            raise ConfigError(f"{key_path}: the adb private key is readable by others "
                              f"(mode {mode:o}); fix it with: chmod 600 {key_path}")
        if not pub.exists():
            write_public_keyfile(str(key_path), str(pub))
        return key_path
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    write_public_keyfile(str(key_path), str(pub))
    return key_path


class AdbTransport(Transport):
    """One ADB link to one Android device."""

    kind = "adb"

    def __init__(self, device_name: str, settings: AdbSettings,
                 device_factory: Callable[[], AdbDevice] | None = None) -> None:
        super().__init__(device_name)
        self.settings = settings
        self._key_path = ensure_adb_key(settings.key_path)
        self._signer = CryptographySigner(str(self._key_path))
        self._factory = device_factory or self._default_factory
        self._dev: AdbDevice | None = None
        self._broken_reason: str | None = None
        self._shell_v2 = False
        self.reconnects = 0

    @classmethod
    def from_profile(cls, profile: DeviceProfile, accept_new_host_key: bool = False
                     ) -> AdbTransport:
        """Connect with the profile's [adb] settings, checked when it was loaded.
        (accept_new_host_key: ADB has no host keys; the phone accepts ours.)"""
        settings = profile.transport_settings
        if not isinstance(settings, AdbSettings):
            raise ConfigError(f"{profile.path}: transport = {profile.transport!r} has no [adb] "
                              "settings")
        t = cls(profile.name, settings)
        t.connect()
        return t

    # -- connection -----------------------------------------------------

    @property
    def where(self) -> str:
        s = self.settings
        return f"{self.device_name} ({s.address or 'usb:' + str(s.serial)})"

    def _default_factory(self) -> AdbDevice:
        s = self.settings
        if s.address:
            host, port = _split_address(s.address, "address")
            return AdbDevice(GuardedTcpTransport(host, port),
                             default_transport_timeout_s=s.io_timeout_s)
        try:
            from adb_shell.adb_device import AdbDeviceUsb
            return AdbDeviceUsb(serial=s.serial, default_transport_timeout_s=s.io_timeout_s)
        except adb_exc.InvalidTransportError:
            raise ConfigError(f"{self.device_name}: USB devices need adb-shell's USB extra: "
                              "pip install 'adb-shell[usb]==0.4.4' (or use adb tcpip and "
                              "address = \"host:5555\")") from None
        except adb_exc.UsbDeviceNotFoundError:
            raise ConnectError(f"{self.where}: no USB device with serial {s.serial!r}; check "
                               "the cable and `lsusb`, and stop a running adb server "
                               "(`adb kill-server`), which holds the USB interface") from None

    def connect(self) -> None:
        """Open the link, with a bounded retry for a device that is re-enumerating."""
        s = self.settings
        last: str = ""
        for attempt in range(s.reconnect_attempts):
            if attempt:
                time.sleep(s.reconnect_backoff_s * attempt)
            try:
                self._connect_once()
                self._broken_reason = None
                return
            except AuthError:
                raise
            except ConnectError as exc:
                last = str(exc)
        raise ConnectError(f"{self.where}: could not connect after {s.reconnect_attempts} "
                           f"attempts: {last}")

    def _connect_once(self) -> None:
        s = self.settings
        self._drop_device()
        dev = self._factory()
        prompted: list[bool] = []
        try:
            dev.connect(rsa_keys=[self._signer], transport_timeout_s=s.connect_timeout_s,
                        auth_timeout_s=s.auth_timeout_s, read_timeout_s=s.connect_timeout_s,
                        auth_callback=lambda _dev: prompted.append(True))
        except (*LINK_ERRORS, adb_exc.AdbTimeoutError, adb_exc.DeviceAuthError) as exc:
            with contextlib.suppress(Exception):
                dev.close()
            if prompted:
                raise AuthError(
                    f"{self.where}: the device has not authorised this computer's ADB key "
                    f"{self._key_path}.pub. Unlock the phone and accept the 'Allow USB "
                    "debugging?' prompt (tick 'Always allow from this computer'), then run "
                    f"again (waited {s.auth_timeout_s:g} s: [adb] auth_timeout_s)") from None
            raise ConnectError(f"{self.where}: {type(exc).__name__}: {exc}") from None
        proto = s.shell_protocol
        try:
            self._shell_v2 = proto == "v2" or (proto == "auto" and self._probe_shell_v2(dev))
        except LINK_ERRORS as exc:
            with contextlib.suppress(Exception):
                dev.close()
            raise ConnectError(f"{self.where}: {type(exc).__name__}: {exc}") from None
        self._dev = dev

    def _drop_device(self) -> None:
        if self._dev is not None:
            with contextlib.suppress(Exception):
                self._dev.close()
            self._dev = None

    def _device(self) -> AdbDevice:
        if self._dev is None or self._broken_reason is not None:
            reason = self._broken_reason
            self.connect()
            if reason is not None:
                self.reconnects += 1
        assert self._dev is not None
        return self._dev

    def _link(self, op: str, fn: Callable[[AdbDevice], T]) -> T:
        """Run fn on the device; a broken link fails THIS operation (the
        caller records it) and the next operation reconnects."""
        dev = self._device()
        try:
            return fn(dev)
        except LINK_ERRORS as exc:
            self._broken_reason = f"{type(exc).__name__}: {exc}"
            self._drop_device()
            raise ConnectError(
                f"{self.where}: the link dropped during {op} ({self._broken_reason}); the "
                "operation was NOT retried. The next call reconnects (the device may be "
                "re-enumerating; check the cable or Wi-Fi)") from None

    # -- commands -------------------------------------------------------

    @staticmethod
    def build_command(argv: Sequence[str], env: Mapping[str, str] | None,
                      cwd: str | None) -> str:
        if not argv:
            raise ValueError("empty argv")
        words = list(argv)
        if env:
            for k in env:
                if not k.replace("_", "a").isalnum() or k[0].isdigit():
                    raise ValueError(f"invalid environment variable name {k!r}")
            words = ["env", *(f"{k}={v}" for k, v in env.items()), *words]
        cmd = shlex.join(words)
        if cwd:
            cmd = f"cd {shlex.quote(cwd)} && {cmd}"
        return cmd

    def run(self, argv: Sequence[str], timeout_s: float | None = None,
            env: Mapping[str, str] | None = None, cwd: str | None = None) -> CommandResult:
        """Run argv on the device.

        shell,v2 (Android 7+): separate stdout/stderr and the real exit code.
        Legacy shell: stdout holds stdout and stderr merged (the device merges
        them), stderr is "", and rc comes from the sentinel.
        """
        command = self.build_command(argv, env, cwd)
        limit = timeout_s if timeout_s is not None else 24 * 3600.0
        label = shlex.join(argv)
        t0 = time.monotonic()
        self._device()  # (re)connect first: the connection decides the shell protocol
        if self._shell_v2:
            raw = self._link(f"`{label[:80]}`",
                             lambda d: self._stream(d, b"shell,v2,raw:" + command.encode(),
                                                    limit, label, t0))
            return self._v2_result(argv, raw, time.monotonic() - t0)
        sentinel = f"__GEMHIL_RC_{uuid.uuid4().hex}_"
        full = f"{command}; printf '\\n{sentinel}%d\\n' \"$?\""
        raw = self._link(f"`{label[:80]}`",
                         lambda d: self._stream(d, b"shell:" + full.encode(), limit, label, t0))
        text = raw.decode("utf-8", "replace")
        marker = "\n" + sentinel
        idx = text.rfind(marker)
        if idx < 0:
            raise TransportError(
                f"{self.where}: {label} ended without reporting its exit status "
                f"(output tail: {text[-200:]!r}); the device shell may have been killed")
        rc_text = text[idx + len(marker):].strip()
        try:
            rc = int(rc_text)
        except ValueError:
            raise TransportError(f"{self.where}: unreadable exit status {rc_text!r}") from None
        return CommandResult(tuple(argv), rc, text[:idx], "", time.monotonic() - t0)

    def _stream(self, dev: AdbDevice, service: bytes, limit: float, label: str,
                t0: float) -> bytes:
        """Everything a service stream sends until the device closes it.

        The per-read transport timeout covers a long silent command (a
        benchmark prints nothing for minutes); TCP keepalive catches a dead
        link meanwhile. On timeout the stream is closed, so adbd kills the
        command instead of leaving it running.
        """
        info = dev._open(service, limit, limit, limit)
        chunks: list[bytes] = []
        try:
            for data in dev._read_until_close(info):
                chunks.append(data)
        except (adb_exc.AdbTimeoutError, adb_exc.TcpTimeoutException):
            if time.monotonic() - t0 < limit * 0.98:
                raise
            info.read_timeout_s = info.transport_timeout_s = 5.0
            info.timeout_s = None
            with contextlib.suppress(adb_exc.AdbTimeoutError, adb_exc.TcpTimeoutException):
                dev._clse(info)
            raise CommandTimeout(
                f"{self.where}: {label} did not finish in {limit:g} s and was stopped "
                "(stream closed); raise [run] timeout_s if it needs longer") from None
        except KeyboardInterrupt as exc:  # Ctrl-C, SIGTERM (harness.interrupts)
            # as on a timeout: closing the stream makes adbd end the command (its
            # process group), so nothing keeps running on the phone; then unwind
            info.read_timeout_s = info.transport_timeout_s = 5.0
            info.timeout_s = None
            try:
                dev._clse(info)
                how = "closed its shell stream, so adbd ended it"
            except Exception as err:  # noqa: BLE001 - the link may be half-dead now
                how = f"could not close its shell stream ({type(err).__name__}); the agent " \
                      "may run on until its own timeout"
            # label is shlex.join(argv): split back, to name it as every transport does
            note(exc, f"stopped {command_label(shlex.split(label))} ({how})")
            raise
        return b"".join(chunks)

    def _v2_result(self, argv: Sequence[str], raw: bytes, duration_s: float) -> CommandResult:
        out, err = bytearray(), bytearray()
        rc: int | None = None
        pos = 0
        while pos + 5 <= len(raw):
            ident, length = struct.unpack_from("<BI", raw, pos)
            payload = raw[pos + 5: pos + 5 + length]
            pos += 5 + length
            if ident == 1:
                out += payload
            elif ident == 2:
                err += payload
            elif ident == 3 and payload:
                rc = payload[0]
        if rc is None:
            raise TransportError(f"{self.where}: {shlex.join(argv)} ended without an exit "
                                 "status (shell,v2 stream closed early); the device may have "
                                 "killed it")
        return CommandResult(tuple(argv), rc, out.decode("utf-8", "replace"),
                             err.decode("utf-8", "replace"), duration_s)

    def _probe_shell_v2(self, dev: AdbDevice) -> bool:
        """Does adbd speak shell,v2 (Android 7+)? An old adbd closes the
        stream, which adb-shell only notices as a short timeout."""
        try:
            raw = self._stream(dev, b"shell,v2,raw:echo", 3.0, "shell,v2 probe",
                               time.monotonic())
        except (CommandTimeout, adb_exc.AdbTimeoutError, adb_exc.TcpTimeoutException):
            return False
        return raw.endswith(b"\x03\x01\x00\x00\x00\x00")

    def getprop(self, name: str) -> str:
        return self.run(["getprop", name], timeout_s=30).stdout.strip()

    # -- files ----------------------------------------------------------

    def remote_sha256(self, remote: str) -> str | None:
        res = self.run(["sha256sum", "--", remote], timeout_s=max(60.0, self.settings.io_timeout_s))
        return parse_sha256sum(self.device_name, remote, res)

    def _upload(self, local: Path, remote_tmp: str) -> None:
        mode = 0o100755 if os.stat(local).st_mode & 0o111 else 0o100644
        io = self.settings.io_timeout_s

        def go(dev: AdbDevice) -> None:
            try:
                dev.push(str(local), remote_tmp, st_mode=mode, transport_timeout_s=io,
                         read_timeout_s=io)
            except (adb_exc.PushFailedError, adb_exc.AdbCommandFailureException) as exc:
                raise TransferError(f"{self.where}: the device refused {remote_tmp!r}: "
                                    f"{_text(exc)} (check free space and the path)") from None
            except adb_exc.AdbTimeoutError as exc:
                raise OSError(f"push stalled: {exc}") from None

        self._link(f"push of {local.name}", go)

    def _download(self, remote: str, local_tmp: Path) -> None:
        io = self.settings.io_timeout_s

        def go(dev: AdbDevice) -> None:
            try:
                dev.pull(remote, str(local_tmp), transport_timeout_s=io, read_timeout_s=io)
            except adb_exc.AdbCommandFailureException as exc:
                raise TransferError(f"{self.where}: cannot pull {remote!r}: {_text(exc)}") \
                    from None
            except adb_exc.AdbTimeoutError as exc:
                raise OSError(f"pull stalled: {exc}") from None

        self._link(f"pull of {remote}", go)

    def clone(self) -> AdbTransport:
        """A second, independent connection to the same device (adbd serves
        several over TCP), e.g. for sampling sensors while a command runs."""
        if not self.settings.address:
            raise ConnectError(f"{self.where}: a USB device gives one connection only")
        other = AdbTransport(self.device_name, self.settings, self._factory)
        other.connect()
        return other

    def close(self) -> None:
        self._drop_device()

    def describe(self) -> dict[str, Any]:
        s = self.settings
        return {"transport": "adb", "address": s.address, "usb_serial": s.serial,
                "shell_protocol": "shell,v2" if self._shell_v2 else
                "legacy+sentinel (stdout and stderr merged)",
                "reconnects": self.reconnects}


def _text(exc: BaseException) -> str:
    arg = exc.args[0] if exc.args else exc
    if isinstance(arg, bytes | bytearray):
        return bytes(arg).decode("utf-8", "replace")
    return str(arg)
