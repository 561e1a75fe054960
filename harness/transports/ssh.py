"""SSH transport (paramiko): a Linux board reached over SSH.

Design choices and why:

* ONE connection per session, opened lazily and reused: a GEM device run
  issues dozens of small commands (sha256 checks, mkdir, the agent), and a
  fresh SSH handshake costs ~100 ms where a reused exec channel costs a few.
  If the link dropped between commands it is re-opened once.
* TCP_NODELAY on the socket: paramiko's exec round trip drops from ~48 ms to
  ~4 ms on loopback here (otherwise the last small packet of each exchange
  waits for the peer's delayed ACK).
* Host keys are checked against a known_hosts file. An unknown host is
  refused unless the user opted in to trust-on-first-use (profile key
  ``accept_new_host_key`` or ``--accept-new-host-key``); a CHANGED key is
  refused always, opt-in or not, because that is what an interception looks
  like.
* Commands are argument lists quoted with ``shlex.join``; env and cwd are
  expressed in the command itself (``cd DIR && env K=V argv``) because
  sshd only passes variables named in its AcceptEnv, which boards rarely set.
* A command that overruns its timeout is killed ON THE DEVICE, not just
  abandoned: sshd runs every exec request in its own session (setsid), so the
  shell's PID is the process group id. The shell prints that PID first
  (``echo $$; ...``) and on timeout a second channel
  sends SIGTERM, then SIGKILL, to the whole group. Closing the channel alone
  is not enough: a process without a tty does not get SIGHUP and ``sleep 30``
  would run on. ``timeout(1)`` was the alternative, but it needs coreutils or a
  recent busybox on the board and its exit codes collide with the command's.
* Push: ONE exec channel streams the file into a device-side script that
  writes it to a temporary name and hashes the same bytes as they pass
  (``_upload``), so a verified push reads the file once on the device and
  costs what a plain upload costs; rename only after the hash matched.
* Nothing secret is ever logged: key paths and public fingerprints only.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import hashlib
import io
import itertools
import logging
import os
import posixpath
import re
import select
import shlex
import socket
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import paramiko

from harness.errors import (
    AuthError,
    CommandTimeout,
    ConfigError,
    ConnectError,
    HostKeyError,
    TransferError,
    TransportError,
)
from harness.interrupts import note
from harness.transports.base import (
    KILL_GRACE_S,
    CommandResult,
    Transport,
    command_label,
    parse_sha256sum,
    short_command,
)
from harness.transports.ssh_settings import SshSettings, check_private_key_file

if TYPE_CHECKING:
    from harness.profiles import DeviceProfile

log = logging.getLogger(__name__)

#: Ciphers in the order we ask for them: AES-GCM needs no separate MAC pass and
#: is the fastest paramiko offers (it has no chacha20-poly1305).
FAST_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "aes128-ctr",
                "aes256-ctr")
#: Our receive window per channel: large so pulls are not throttled by acks.
WINDOW_BYTES = 16 << 20
MAX_PACKET_BYTES = 1 << 15
#: How much of the local file one read hands to the channel. paramiko cuts it
#: into packets of the server's maximum size (32 KiB for OpenSSH sessions).
STREAM_CHUNK_BYTES = 1 << 20
#: A push fails when the device accepts no byte (or sends no answer) for this
#: long; a dead link is noticed sooner through TCP_USER_TIMEOUT (tune_socket).
STREAM_STALL_S = 60.0
#: After the shell is gone, how long the rest of its process group gets before SIGKILL.
GROUP_GRACE_S = 0.5
#: How long an interrupted command's PID line is waited for before giving up on it.
PID_WAIT_S = 2.0
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's ``SHA256:...`` fingerprint, as ``ssh-keygen -lf`` prints it."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def known_hosts_name(host: str, port: int) -> str:
    """The name a host is filed under in known_hosts (``[host]:port`` off port 22)."""
    return host if port == 22 else f"[{host}]:{port}"


def build_command(argv: Sequence[str], env: Mapping[str, str] | None = None,
                  cwd: str | None = None) -> str:
    """The remote shell command line for argv (every piece quoted).

    ``echo $$`` first prints the shell's PID, which sshd made a process group
    id (setsid), so a timed-out command can be killed on the device with its
    children. The command is deliberately NOT exec'd and ``exit $?`` follows
    it: the shell then turns death by a signal into exit code 128+N, which
    paramiko would otherwise lose (it ignores OpenSSH's "exit-signal" message).
    """
    if not argv:
        raise ValueError("empty command")
    parts = ["echo $$;"]
    if cwd is not None:
        parts.append(f"cd {shlex.quote(cwd)} &&")
    if env:
        bad = [k for k in env if not _ENV_NAME.match(k)]
        if bad:
            raise ValueError(f"invalid environment variable name(s): {bad!r}")
        if "=" in argv[0]:
            raise ValueError(f"command {argv[0]!r} contains '=' and would be read as a "
                             "variable assignment by env")
        parts.append("env " + " ".join(shlex.quote(f"{k}={v}") for k, v in env.items()))
    parts.append(shlex.join(argv) + "; exit $?")
    return " ".join(parts)


class KnownHostsPolicy(paramiko.MissingHostKeyPolicy):
    """What to do with a host missing from known_hosts: refuse, or (opt-in) record it.

    A changed key never reaches this policy: paramiko raises
    BadHostKeyException for it and SshTransport turns that into a refusal.
    """

    def __init__(self, transport: SshTransport) -> None:
        self.t = transport

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str,
                         key: paramiko.PKey) -> None:
        t = self.t
        fp = fingerprint(key)
        if not t.accept_new_host_key:
            raise HostKeyError(
                f"{t.device_name}: the host key of {t.host}:{t.port} ({key.get_name()} {fp}) is "
                f"not in {t.known_hosts}; refusing to connect to an unknown host. Check that "
                "fingerprint on the board (ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub), then "
                f"add it: ssh-keyscan -p {t.port} {t.host} >> {t.known_hosts}; or trust it on "
                f"first use with accept_new_host_key = true in [ssh] of {t.where} "
                "or --accept-new-host-key"
            )
        t.known_hosts.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        line = f"{hostname} {key.get_name()} {key.get_base64()}\n"
        fd = os.open(t.known_hosts, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as f:
            f.write(line)
        log.warning("%s: trusted NEW host key of %s on first use: %s %s (recorded in %s)",
                    t.device_name, hostname, key.get_name(), fp, t.known_hosts)


class SshTransport(Transport):
    """A device reached over SSH with key authentication."""

    kind = "ssh"

    def __init__(
        self,
        device_name: str,
        host: str,
        user: str,
        key_file: Path,
        port: int = 22,
        known_hosts: Path | None = None,
        accept_new_host_key: bool = False,
        connect_timeout_s: float = 10.0,
        command_timeout_s: float = 300.0,
        keepalive_s: float = 15.0,
        where: str | None = None,
    ) -> None:
        """Validate settings and load the key; the connection opens on first use.

        ``where`` names the profile the settings came from, for messages.
        """
        super().__init__(device_name)
        self.host = host
        self.port = int(port)
        self.user = user
        self.key_file = Path(os.path.expanduser(str(key_file)))
        self.known_hosts = Path(os.path.expanduser(str(known_hosts or "~/.ssh/known_hosts")))
        self.accept_new_host_key = accept_new_host_key
        self.connect_timeout_s = float(connect_timeout_s)
        self.command_timeout_s = float(command_timeout_s)
        self.keepalive_s = float(keepalive_s)
        self.where = where or "the device profile"
        self._pkey = load_private_key(self.key_file, f"{self.where}: [ssh] key_file")
        self._client: paramiko.SSHClient | None = None
        self._sftp: paramiko.SFTPClient | None = None
        #: upload channels waiting for push's verdict, by temporary name
        self._pending: dict[str, paramiko.Channel] = {}
        self.connections_opened = 0

    @classmethod
    def from_profile(cls, profile: DeviceProfile,
                     accept_new_host_key: bool = False) -> SshTransport:
        """Build from the profile's [ssh] settings, checked when the profile was loaded."""
        s = profile.transport_settings
        if not isinstance(s, SshSettings):
            raise ConfigError(f"{profile.path}: transport = {profile.transport!r} has no [ssh] "
                              "settings; use harness.device.open_device for this device")
        return cls.from_settings(profile.name, s, where=str(profile.path),
                                 accept_new_host_key=accept_new_host_key)

    @classmethod
    def from_settings(cls, device_name: str, s: SshSettings, where: str | None = None,
                      accept_new_host_key: bool = False) -> SshTransport:
        """Build from checked settings (a profile's [ssh], or a VM's link)."""
        return cls(device_name, host=s.host, port=s.port, user=s.user, key_file=s.key_path,
                   known_hosts=s.known_hosts_path,
                   accept_new_host_key=s.accept_new_host_key or accept_new_host_key,
                   connect_timeout_s=s.connect_timeout_s, command_timeout_s=s.command_timeout_s,
                   keepalive_s=s.keepalive_s, where=where)

    # -- connection -------------------------------------------------------

    @property
    def address(self) -> str:
        return f"{self.user}@{self.host}:{self.port}"

    def _connected(self) -> paramiko.SSHClient:
        """The session's client, (re)connecting when there is none or it died."""
        client = self._client
        if client is not None:
            tr = client.get_transport()
            if tr is not None and tr.is_active():
                return client
            log.info("%s: connection to %s dropped; reconnecting", self.device_name,
                     self.address)
            self._drop()
        self._client = self._connect()
        return self._client

    def _connect(self) -> paramiko.SSHClient:
        t0 = time.monotonic()
        budget = self.connect_timeout_s
        hostport = f"{self.host}:{self.port}"
        hint = (f"check that the board is up and reachable, that sshd listens on port "
                f"{self.port}, or raise connect_timeout_s in {self.where}")
        try:
            sock = socket.create_connection((self.host, self.port), timeout=budget)
        except TimeoutError:
            raise ConnectError(f"{self.device_name}: cannot connect to {hostport}: no answer "
                               f"within connect_timeout_s={budget:g} s; {hint}") from None
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise ConnectError(f"{self.device_name}: cannot connect to {hostport} "
                               f"(connect_timeout_s={budget:g} s): {reason}; {hint}") from None
        tune_socket(sock, self.keepalive_s)
        remaining = max(0.1, budget - (time.monotonic() - t0))

        def factory(s: Any, disabled_algorithms: Any = None, **_: Any) -> paramiko.Transport:
            tr = paramiko.Transport(s, default_window_size=WINDOW_BYTES,
                                    default_max_packet_size=MAX_PACKET_BYTES,
                                    disabled_algorithms=disabled_algorithms)
            opts = tr.get_security_options()
            offered = tuple(opts.ciphers)
            opts.ciphers = tuple(c for c in FAST_CIPHERS if c in offered) + tuple(
                c for c in offered if c not in FAST_CIPHERS)
            tr.set_log_channel(wire_log)
            return tr

        wire_log = f"{__name__}.wire.{next(_WIRE_IDS)}"
        client = paramiko.SSHClient()
        try:
            if self.known_hosts.is_file():
                # load into the client's own table, not load_host_keys(): that
                # one would rewrite the whole file (and drop its comments) on save
                try:
                    client.get_host_keys().load(str(self.known_hosts))
                except OSError as exc:
                    raise HostKeyError(f"{self.device_name}: cannot read known_hosts "
                                       f"{self.known_hosts}: {exc.strerror}; fix its "
                                       "permissions or set known_hosts in [ssh] of "
                                       f"{self.where}") from None
            client.set_missing_host_key_policy(KnownHostsPolicy(self))
            client.connect(self.host, port=self.port, username=self.user, pkey=self._pkey,
                           sock=sock, timeout=remaining, banner_timeout=remaining,
                           auth_timeout=remaining, channel_timeout=max(remaining, 5.0),
                           allow_agent=False, look_for_keys=False,
                           transport_factory=factory)
        except HostKeyError:
            _abandon(client, sock, wire_log)
            raise
        except paramiko.BadHostKeyException as exc:
            _abandon(client, sock, wire_log)
            raise HostKeyError(
                f"{self.device_name}: HOST KEY CHANGED for {hostport}: the server offers "
                f"{exc.key.get_name()} {fingerprint(exc.key)} but {self.known_hosts} has "
                f"{exc.expected_key.get_name()} {fingerprint(exc.expected_key)}. Refusing to "
                "connect: someone may be intercepting the link, or the board was reinstalled. "
                "If the change is expected, remove the old entry (ssh-keygen -f "
                f"{self.known_hosts} -R '{known_hosts_name(self.host, self.port)}') and add the "
                "new key after checking its fingerprint on the board; accept_new_host_key "
                "never overrides a changed key"
            ) from None
        except paramiko.AuthenticationException as exc:
            _abandon(client, sock, wire_log)
            raise AuthError(
                f"{self.device_name}: {self.address} refused our key {self.key_file} "
                f"({fingerprint(self._pkey)}): {str(exc).rstrip('.')}. Check that user "
                f"{self.user!r} is right and that {self.key_file}.pub is in "
                f"~{self.user}/.ssh/authorized_keys on the board"
            ) from None
        except (paramiko.SSHException, EOFError, OSError) as exc:
            _abandon(client, sock, wire_log)
            if time.monotonic() - t0 >= 0.9 * budget:
                why = "the server did not complete the SSH handshake in time (a hung sshd, "\
                      "a firewall, or not an SSH server)"
            else:
                why = f"{exc or type(exc).__name__} (is it an SSH server?)"
            raise ConnectError(
                f"{self.device_name}: SSH handshake with {hostport} failed within "
                f"connect_timeout_s={budget:g} s: {why}; {hint}"
            ) from None
        tr = client.get_transport()
        assert tr is not None
        if self.keepalive_s > 0:
            tr.set_keepalive(max(1, int(self.keepalive_s)))
        self.connections_opened += 1
        log.info("%s: connected to %s in %.0f ms (cipher %s)", self.device_name, self.address,
                 (time.monotonic() - t0) * 1e3, tr.remote_cipher)
        return client

    def _alive(self) -> bool:
        tr = self._client.get_transport() if self._client is not None else None
        return tr is not None and tr.is_active()

    def _open_channel(self, timeout_s: float) -> paramiko.Channel:
        """A fresh session channel; reconnects once if the link died unnoticed."""
        for attempt in (1, 2):
            client = self._connected()
            tr = client.get_transport()
            try:
                assert tr is not None
                return tr.open_session(timeout=min(timeout_s, max(self.connect_timeout_s, 5.0)))
            except (paramiko.SSHException, EOFError, OSError) as exc:
                if attempt == 2:
                    raise ConnectError(f"{self.device_name}: cannot open a channel to "
                                       f"{self.address}: {exc}") from None
                self._drop()
        raise AssertionError("unreachable")

    def _drop(self) -> None:
        if self._sftp is not None:
            with contextlib.suppress(Exception):
                self._sftp.close()
            self._sftp = None
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()
            self._client = None

    def close(self) -> None:
        self._drop()

    # -- commands ---------------------------------------------------------

    def run(
        self,
        argv: Sequence[str],
        timeout_s: float | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
    ) -> CommandResult:
        argv = tuple(str(a) for a in argv)
        timeout = self.command_timeout_s if timeout_s is None else float(timeout_s)
        command = build_command(argv, env, cwd)
        t0 = time.monotonic()
        chan = self._open_channel(timeout)
        running = _Running()
        try:
            chan.exec_command(command)
            out, err, rc, _pid = self._collect(chan, t0 + timeout, argv, timeout, running)
        except CommandTimeout:
            raise
        except (paramiko.SSHException, EOFError, OSError) as exc:
            self._drop()
            raise TransportError(f"{self.device_name}: connection to {self.address} broke "
                                 f"while running {short_command(argv)}: {exc}") from None
        except BaseException as exc:  # Ctrl-C, SIGTERM (harness.interrupts): stop it, go on
            note(exc, self._stop_interrupted(chan, running, argv))
            raise
        finally:
            chan.close()
        if rc is None and chan.eof_received and self._alive():
            # the wrapper shell itself died by a signal (OpenSSH then sends
            # "exit-signal", which paramiko drops): report it as ssh(1) does
            rc = 255
            err += "\n[gem-hil: the remote shell was killed by a signal; no exit status]"
        if rc is None:
            self._drop()
            raise TransportError(
                f"{self.device_name}: {short_command(argv)} ended without an exit status "
                f"(the connection to {self.address} closed); stderr tail: {err[-500:]!r}")
        return CommandResult(argv, rc, out, err, time.monotonic() - t0)

    def _collect(self, chan: paramiko.Channel, deadline: float, argv: tuple[str, ...],
                 timeout: float, running: _Running | None = None
                 ) -> tuple[str, str, int | None, int | None]:
        """Read stdout/stderr until exit, or kill the command at the deadline.

        ``running`` shows an interrupted caller what was read so far (the PID).
        """
        running = running or _Running()
        out = running.out
        err = bytearray()
        fd = chan.fileno()
        while True:
            while chan.recv_ready():
                out += chan.recv(1 << 16)
            while chan.recv_stderr_ready():
                err += chan.recv_stderr(1 << 16)
            running.take_pid()
            pid = running.pid
            done = chan.closed or (chan.eof_received and chan.exit_status_ready())
            if done and not chan.recv_ready() and not chan.recv_stderr_ready():
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._kill_remote(chan, pid, err, argv, timeout)
            if chan.eof_received:
                chan.status_event.wait(min(remaining, 1.0))
            else:
                select.select([fd], [], [], min(remaining, 1.0))
        rc = chan.recv_exit_status() if chan.exit_status_ready() else None
        if rc == -1:
            rc = None
        pid = running.pid
        return (out.decode("utf-8", "replace"), err.decode("utf-8", "replace"), rc,
                pid if pid and pid > 0 else None)

    def _kill_remote(self, chan: paramiko.Channel, pid: int | None, err: bytearray,
                     argv: tuple[str, ...], timeout: float) -> None:
        """Kill the overrunning command's process group on the device; raise CommandTimeout."""
        chan.close()
        killed = self._kill_group(pid)
        tail = err.decode("utf-8", "replace")[-800:]
        raise CommandTimeout(
            f"{self.device_name}: {short_command(argv)} did not finish within its timeout of "
            f"{timeout:g} s on {self.address}; {killed}. Raise the timeout (timeout_s in [run] or "
            f"command_timeout_s in [ssh] of {self.where}) if it is just slow. "
            f"stderr tail: {tail!r}"
        )

    def _kill_group(self, pid: int | None) -> str:
        """SIGTERM, then SIGKILL, a command's process group on the device; say what happened."""
        if not pid or pid <= 1:
            return "closed the channel (no PID reported, the command may live on)"
        # Wait on the shell's own PID, not the group: sshd reaps the shell
        # at once, while orphaned children may linger as zombies (kill -0
        # succeeds on those) until PID 1 reaps them. The shell dies at once
        # on SIGTERM, though, so the rest of the group (the agent, tidying its
        # lease) gets up to GROUP_GRACE_S more before SIGKILL ends the group.
        script = (f"kill -TERM -{pid} 2>/dev/null || kill -TERM {pid} 2>/dev/null; i=0; "
                  f"while kill -0 {pid} 2>/dev/null && [ $i -lt {int(KILL_GRACE_S * 10)} ]; "
                  f"do sleep 0.1; i=$((i+1)); done; i=0; "
                  f"while kill -0 -{pid} 2>/dev/null && [ $i -lt {int(GROUP_GRACE_S * 10)} ]; "
                  f"do sleep 0.1; i=$((i+1)); done; kill -KILL -{pid} 2>/dev/null; "
                  f"kill -0 {pid} 2>/dev/null && echo alive || echo gone")
        try:
            res = self._exec_plain(script, timeout_s=KILL_GRACE_S + 10)
        except TransportError as exc:
            return f"could not kill process group {pid} on the device: {exc}"
        state = res.strip()
        return (f"killed its process group {pid} on the device" if state == "gone"
                else f"tried to kill process group {pid} on the device ({state})")

    def _stop_interrupted(self, chan: paramiko.Channel, running: _Running,
                          argv: tuple[str, ...]) -> str:
        """The harness is being stopped mid-command: end the command on the device too.

        A PID not printed yet is waited for a moment (the shell prints it first
        thing). Closing the channel alone would leave a command without a tty
        running; the agent would still stop itself when its stdin closes
        (--watchdog-stdin), which is the fallback when the kill cannot be sent.
        """
        deadline = time.monotonic() + PID_WAIT_S
        with contextlib.suppress(paramiko.SSHException, EOFError, OSError):
            while running.pid is None and not chan.closed and time.monotonic() < deadline:
                if chan.recv_ready():
                    running.out += chan.recv(1 << 16)
                    running.take_pid()
                else:
                    select.select([chan.fileno()], [], [], 0.05)
        chan.close()
        return f"stopped {command_label(argv)} ({self._kill_group(running.pid)})"

    def _exec_plain(self, command: str, timeout_s: float) -> str:
        """Run a trusted, already-quoted shell snippet; return stdout (helper use only)."""
        chan = self._open_channel(timeout_s)
        try:
            chan.exec_command(command)
            out, _err, _rc, _ = self._collect_simple(chan, time.monotonic() + timeout_s)
        finally:
            chan.close()
        return out

    @staticmethod
    def _collect_simple(chan: paramiko.Channel, deadline: float) -> tuple[str, str, int, None]:
        chan.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            out = chan.makefile("rb").read()
            err = chan.makefile_stderr("rb").read()
        except TimeoutError as exc:
            raise TransportError(f"helper command timed out: {exc}") from None
        return out.decode("utf-8", "replace"), err.decode("utf-8", "replace"), \
            chan.recv_exit_status(), None

    # -- files ------------------------------------------------------------

    def _sftp_client(self) -> paramiko.SFTPClient:
        client = self._connected()
        if self._sftp is not None and self._sftp.get_channel() is not None \
                and not self._sftp.get_channel().closed:
            return self._sftp
        tr = client.get_transport()
        assert tr is not None
        sftp = paramiko.SFTPClient.from_transport(tr, window_size=WINDOW_BYTES,
                                                  max_packet_size=MAX_PACKET_BYTES)
        if sftp is None:
            raise TransportError(f"{self.device_name}: {self.address} offers no SFTP subsystem; "
                                 "enable `Subsystem sftp internal-sftp` in the board's sshd_config")
        self._sftp = sftp
        return sftp

    def remote_sha256(self, remote: str) -> str | None:
        """sha256 of a device file in ONE round trip, cheap when we pushed it.

        Order: (1) the hash recorded by our own verified push, if the file's
        size, inode, mtime and ctime (nanoseconds where the file system keeps
        them) still match what was recorded then: any write or replacement
        changes ctime or the inode. This is what makes an unchanged re-push
        cost one round trip instead of re-reading the file; (2) ``openssl dgst
        -sha256`` (uses SHA/NEON instructions, ~4x faster than coreutils
        here); (3) ``sha256sum``. (An SFTP stat would find a missing file
        without starting a process, ~5 ms less on a first push, but cost the
        skip of an unchanged file a second round trip.)
        """
        res = self.run(["sh", "-c", _HASH_SCRIPT, "sh", remote, _hash_record_path(remote)],
                       timeout_s=max(120.0, self.connect_timeout_s))
        return parse_sha256sum(self.device_name, remote, res)

    #: the streaming upload script creates the temporary file's folder itself
    upload_makes_parent = True

    def _upload(self, local: Path, remote_tmp: str) -> str:
        """Stream local into remote_tmp and return the device's sha256 of it.

        One exec channel runs ``_STREAM_PY`` under the board's python3, or
        ``_STREAM_SCRIPT`` without one (every argument quoted); the file goes
        down its stdin and the device writes it while hashing the
        same bytes (python3's hashlib when the board has python3, else
        ``head | tee`` into ``openssl dgst`` or ``sha256sum``), so nothing
        re-reads the file. The script reads exactly the file's size, checks
        every write, answers ``sha256 HEX BYTES`` and then waits on the SAME
        channel for push's verdict: ``_commit`` renames and records the hash
        there, ``_discard`` removes the file, and a channel that closes
        without a verdict (a dropped link, a crashed harness) also removes it.
        That saves the two extra commands (and their processes on the
        device) a rename and a hash record would cost.
        """
        size = local.stat().st_size
        where = f"{self.device_name}: pushing {local.name} to {remote_tmp!r} on {self.address}"
        try:
            src = open(local, "rb", buffering=0)  # noqa: SIM115 - closed in finally
        except OSError as exc:
            raise TransferError(f"{where}: cannot read {local}: {exc.strerror}") from None
        chan = self._open_channel(STREAM_STALL_S)
        keep = False
        try:
            chan.settimeout(STREAM_STALL_S)  # bounds each wait for window or answer
            chan.exec_command(self._stream_command(remote_tmp, size))
            sent = self._stream_file(chan, src)
            line = ""
            while True:  # skip what a chatty login shell may print first
                more = _read_line(chan, time.monotonic() + STREAM_STALL_S)
                got = _parse_stream_answer(more, size)
                if got is not None or not more:
                    break
                line += more
            if got is not None:
                keep = True
                old = self._pending.pop(remote_tmp, None)
                if old is not None:
                    old.close()
                self._pending[remote_tmp] = chan
                return got
            out, err, rc = _read_answer(chan, time.monotonic() + STREAM_STALL_S)
            if rc is None and not self._alive():
                raise EOFError("the connection closed before the upload script answered")
        except TimeoutError:
            raise TransferError(f"{where}: the device accepted no data for {STREAM_STALL_S:g} s; "
                                "the device removes the partial file when the channel closes; "
                                "check the board's disk and load, then push again") from None
        except (paramiko.SSHException, EOFError, OSError) as exc:
            self._drop()
            raise TransferError(f"{self.device_name}: connection to {self.address} broke while "
                                f"pushing {local.name} ({exc or type(exc).__name__}); the board "
                                f"removes the partial file {remote_tmp!r} when it sees the "
                                "stream end short") from None
        finally:
            if not keep:
                chan.close()
            src.close()
        detail = err.strip()[-800:] or (line + out).strip()[-200:] or f"exit code {rc}"
        raise TransferError(f"{where} failed (exit code {rc}, {sent} of {size} bytes sent): "
                            f"{detail}; no file was left at that name")

    def _stream_command(self, remote_tmp: str, size: int) -> str:
        """The device command of a push (a method so a test can run it under
        another PATH, e.g. one without python3, to exercise the tee path)."""
        final = _final_name(remote_tmp)
        args = [remote_tmp, str(size), final, _hash_record_path(final)]
        py = shlex.join(["python3", "-I", "-S", "-c", _STREAM_PY, *args])
        sh = shlex.join(["sh", "-c", _STREAM_SCRIPT, "sh", *args])
        # the login shell starts python3 itself when there is one (one process
        # fewer than going through sh first), else the POSIX fallback script
        return f"command -v python3 >/dev/null 2>&1 && exec {py}; exec {sh}"

    @staticmethod
    def _stream_file(chan: paramiko.Channel, src: io.FileIO) -> int:
        """Send the whole file down the channel; stop early if the script exited.

        memoryview slices are handed to paramiko because ``sendall(bytes)``
        copies the unsent rest after every 32 KiB packet (quadratic in the
        chunk size). Returns the number of bytes sent.
        """
        buf = bytearray(STREAM_CHUNK_BYTES)
        view = memoryview(buf)
        sent = 0
        while n := src.readinto(buf):
            part = view[:n]
            while part:
                if chan.closed or chan.exit_status_ready():
                    return sent  # the script gave up (it says why on stderr)
                try:
                    k = chan.send(part)
                except TimeoutError:
                    raise
                except OSError:
                    if chan.closed:  # closed by the server between check and send
                        return sent
                    raise
                part = part[k:]
                sent += k
        return sent

    def _verdict(self, remote_tmp: str, verdict: str) -> tuple[str, str, int | None] | None:
        """Send the verdict to the upload script still waiting for it; None
        when there is none (a subclass or an earlier failure closed it)."""
        chan = self._pending.pop(remote_tmp, None)
        if chan is None:
            return None
        try:
            if chan.closed:
                return None
            chan.sendall(verdict.encode() + b"\n")
            chan.shutdown_write()
            return _read_answer(chan, time.monotonic() + 60)
        except (paramiko.SSHException, EOFError, OSError):
            return None  # the plain command path below decides
        finally:
            chan.close()

    def _discard(self, remote_tmp: str) -> None:
        if self._verdict(remote_tmp, "abort") is None:
            super()._discard(remote_tmp)

    def _commit(self, remote_tmp: str, remote: str, sha256: str) -> None:
        """Rename the verified upload and record its hash beside it, in one
        round trip on the upload's own channel (or one command when that is
        gone); the record lets the next remote_sha256 skip an unchanged
        re-push without reading the file."""
        answer = None
        if _final_name(remote_tmp) == remote:  # the name the waiting script renames to
            answer = self._verdict(remote_tmp, f"commit {sha256}")
        if answer is not None:
            out, err, rc = answer
            if rc == 0 and out.strip() == "committed":
                return
            detail = err.strip() or out.strip() or f"exit code {rc}"
        else:
            res = self.run(["sh", "-c", _COMMIT_SCRIPT, "sh", remote_tmp, remote,
                            _hash_record_path(remote), sha256], timeout_s=60)
            if res.ok:
                return
            super()._discard(remote_tmp)
            detail = res.stderr.strip() or f"exit code {res.rc}"
        raise TransferError(
            f"{self.device_name}: cannot rename {remote_tmp!r} to {remote!r} on "
            f"{self.address}: {detail}; the partial file was removed")

    def _download(self, remote: str, local_tmp: Path) -> None:
        try:
            self._sftp_client().get(remote, str(local_tmp))
        except FileNotFoundError:
            raise TransferError(f"{self.device_name}: cannot pull {remote!r}: no such file on "
                                f"the device") from None
        except OSError as exc:
            if getattr(exc, "errno", None) == errno.ENOENT:
                raise TransferError(f"{self.device_name}: cannot pull {remote!r}: no such file "
                                    "on the device") from None
            raise TransferError(f"{self.device_name}: pulling {remote!r} failed: {exc}") from None


_WIRE_IDS = itertools.count(1)


class _Running:
    """A command's output as it arrives, and its PID once the shell printed it.

    The PID is the process group to kill on the device (see build_command).
    """

    def __init__(self) -> None:
        self.out = bytearray()
        self.pid: int | None = None

    def take_pid(self) -> None:
        """Strip the shell's ``echo $$`` line off the output once it is complete."""
        if self.pid is None and b"\n" in self.out:
            first, _, rest = bytes(self.out).partition(b"\n")
            self.pid = int(first) if first.strip().isdigit() else -1
            self.out[:] = rest


def _abandon(client: paramiko.SSHClient, sock: socket.socket, wire_log: str) -> None:
    """Close a half-open connection and mute its paramiko thread.

    After a failed handshake paramiko's reader thread may still be blocked on
    the socket; closing it makes that thread log a scary traceback about a bad
    file descriptor next to our clear error. Each connection logs to its own
    logger, so only the abandoned one is muted.
    """
    logging.getLogger(wire_log).setLevel(logging.CRITICAL + 1)
    client.close()
    sock.close()


def _final_name(remote_tmp: str) -> str:
    """The name a pushed temporary file gets once verified: all before its last
    ``.part-`` (Transport.push names it ``<remote>.part-<sha12>-<nonce>``)."""
    head, sep, _ = remote_tmp.rpartition(".part-")
    return head if sep else remote_tmp


def _hash_record_path(remote: str) -> str:
    """Where the verified hash of a pushed file is recorded on the device."""
    parent, name = posixpath.split(remote)
    return posixpath.join(parent, f".{name}.gem-hil-sha256")


#: $1 = file, $2 = hash record. Prints "HASH  FILE" like sha256sum, or fails
#: with "No such file" (parse_sha256sum maps that to None). The record holds
#: "HASH SIZE INODE MTIME CTIME" (epoch seconds with nanoseconds).
_HASH_SCRIPT = r"""f=$1; c=$2
case $f in -*) f=./$f;; esac
[ -f "$f" ] || { echo "$f: No such file or directory" >&2; exit 1; }
if [ -f "$c" ] && s=$(stat -c '%s %i %.9Y %.9Z' -- "$f" 2>/dev/null) && read -r h rest < "$c" \
   && [ "$rest" = "$s" ]; then echo "$h  $f"; exit 0; fi
if command -v openssl >/dev/null 2>&1 && openssl dgst -sha256 -r "$f" 2>/dev/null; then exit 0; fi
exec sha256sum -- "$f"
"""

#: $1 = verified upload, $2 = final name, $3 = hash record, $4 = its sha256.
#: Used when the upload's own channel is gone. The record is only a shortcut
#: for the next check: failing to write it (or a stat without %.9Y) is fine.
_COMMIT_SCRIPT = r"""mv -f -- "$1" "$2" || exit 1
s=$(stat -c '%s %i %.9Y %.9Z' -- "$2" 2>/dev/null) || exit 0
printf '%s %s\n' "$4" "$s" 2>/dev/null > "$3" || rm -f -- "$3"
exit 0
"""

#: The device side of a push without python3, run as ``sh -c SCRIPT sh TMP
#: SIZE FINAL RECORD`` with the file on stdin; with python3 on the board _STREAM_PY (1 MiB
#: reads, hashlib) does the same job (see _stream_command). Here head | tee
#: feeds the hash tool (8 KiB buffers and more processes cost more CPU, but
#: they are everywhere). Either way:
#: one pass, exactly SIZE bytes read, every write checked, ``sha256 HEX BYTES``
#: printed; then one verdict line: ``commit SHA`` renames TMP to FINAL and
#: writes the hash record RECORD (both given by _stream_command); anything else
#: (``abort``, or EOF from a lost link) removes TMP. Any failure removes TMP.
_STREAM_SCRIPT = r"""f=$1 n=$2 final=$3 rec=$4
set -f
case $f in -*) f=./$f;; esac
mkdir -p -- "$(dirname -- "$f")" || exit 73
if command -v openssl >/dev/null 2>&1; then set -- openssl dgst -sha256 -r
else set -- sha256sum; fi
out=$( { { head -c "$n" | tee -- "$f" || echo tee-failed >&5; } | "$@"; } 5>&1 ) \
  || out="$out hash-failed"
case $out in *-failed*)
  rm -f -- "$f"; echo "writing or hashing $f failed ($out)" >&2; exit 74;; esac
got=$(wc -c < "$f") || got=-1
if [ "$((got))" -ne "$n" ]; then
  rm -f -- "$f"; echo "short upload: $((got)) of $n bytes arrived; removed $f" >&2; exit 75; fi
h=; for w in $out; do [ ${#w} -eq 64 ] && h=$w; done
[ -n "$h" ] || { rm -f -- "$f"; echo "no sha256 in the hash tool's output: $out" >&2; exit 76; }
echo "sha256 $h $n"
read -r verdict sha || verdict=eof
[ "$verdict" = commit ] || { rm -f -- "$f"; echo aborted; exit 0; }
mv -f -- "$f" "$final" || { rm -f -- "$f"; exit 77; }
s=$(stat -c '%s %i %.9Y %.9Z' -- "$final" 2>/dev/null) \
  && { printf '%s %s\n' "$sha" "$s" 2>/dev/null > "$rec" || rm -f -- "$rec"; }
echo committed
"""

#: The python3 version of _STREAM_SCRIPT (argv: TMP SIZE FINAL RECORD), same protocol.
#: Kept to Python 3.4 syntax (``-I`` needs 3.4): boards ship old interpreters.
_STREAM_PY = r"""import hashlib, os, sys
path, size, final, record = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
def fail(msg, code):
    try:
        os.unlink(path)
    except OSError:
        pass
    sys.stderr.write(msg + "\n")
    sys.exit(code)
try:
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
except OSError as e:
    sys.stderr.write("cannot create %s: %s\n" % (path, e.strerror))
    sys.exit(73)
try:
    import fcntl
    fcntl.fcntl(0, 1031, 1 << 20)  # F_SETPIPE_SZ (Linux): fewer, larger reads
except Exception:
    pass
h = hashlib.sha256()
n = 0
try:
    while n < size:
        b = os.read(0, min(1 << 20, size - n))
        if not b:
            break
        h.update(b)
        v = memoryview(b)
        while v:
            v = v[os.write(fd, v):]
        n += len(b)
    os.close(fd)
except OSError as e:
    fail("writing %s failed after %d bytes: %s" % (path, n, e.strerror), 74)
if n != size:
    fail("short upload: %d of %d bytes arrived; removed %s" % (n, size, path), 75)
sys.stdout.write("sha256 %s %d\n" % (h.hexdigest(), n))
sys.stdout.flush()
line = b""
while not line.endswith(b"\n"):
    b = os.read(0, 256)
    if not b:
        break
    line += b
words = line.decode("ascii", "replace").split()
if len(words) != 2 or words[0] != "commit":
    fail("aborted", 0)
try:
    os.rename(path, final)
except OSError as e:
    fail("cannot rename %s to %s: %s" % (path, final, e.strerror), 77)
try:
    st = os.stat(final)
    with open(record, "w") as f:
        f.write("%s %d %d %d.%09d %d.%09d\n" % ((words[1], st.st_size, st.st_ino)
                + divmod(st.st_mtime_ns, 10 ** 9) + divmod(st.st_ctime_ns, 10 ** 9)))
except (OSError, AttributeError):
    try:
        os.unlink(record)
    except OSError:
        pass
sys.stdout.write("committed\n")
"""


def _parse_stream_answer(out: str, size: int) -> str | None:
    """The hash from the upload script's ``sha256 HEX BYTES`` line, or None."""
    parts = out.split()
    if len(parts) != 3 or parts[0] != "sha256" or parts[2] != str(size):
        return None
    digest = parts[1].lower()
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        return None
    return digest


def _read_line(chan: paramiko.Channel, deadline: float) -> str:
    """The first stdout line of a channel ('' if it ends without one).

    Byte by byte from paramiko's buffer once data is there: the answer is one
    short line, and nothing after it may be consumed (it belongs to
    _read_answer).
    """
    line = bytearray()
    while not line.endswith(b"\n"):
        if chan.recv_ready():
            b = chan.recv(1)
            if not b:
                break
            line += b
        elif chan.closed or chan.eof_received:
            break
        elif time.monotonic() > deadline:
            raise TimeoutError("no answer from the upload script")
        else:
            select.select([chan], [], [], 0.5)
    return line.decode("utf-8", "replace")


def _read_answer(chan: paramiko.Channel, deadline: float) -> tuple[str, str, int | None]:
    """stdout, stderr and exit status of a channel whose input is done.

    The channel's timeout (settimeout) bounds each wait; the deadline bounds
    the whole (a script that keeps talking but never exits).
    """
    out = bytearray()
    err = bytearray()
    while not (chan.closed or (chan.eof_received and chan.exit_status_ready())) \
            or chan.recv_ready() or chan.recv_stderr_ready():
        if time.monotonic() > deadline:
            raise TimeoutError("no exit status from the upload script")
        if chan.recv_ready():
            out += chan.recv(1 << 16)
        elif chan.recv_stderr_ready():
            err += chan.recv_stderr(1 << 16)
        elif chan.closed or chan.eof_received:
            chan.status_event.wait(0.05)  # output done, exit status on its way
        else:
            select.select([chan], [], [], 0.5)
    rc = chan.recv_exit_status() if chan.exit_status_ready() else None
    return out.decode("utf-8", "replace"), err.decode("utf-8", "replace"), \
        None if rc == -1 else rc


def tune_socket(sock: socket.socket, keepalive_s: float) -> None:
    """TCP_NODELAY for latency; keepalive settings so a dead board is noticed.

    paramiko's SSH keepalive (every keepalive_s) keeps NAT and firewall state
    alive but never checks for an answer. TCP_USER_TIMEOUT closes the socket
    when those bytes stay unacknowledged for 3 x keepalive_s, so a command on a
    board that lost power fails with a transport error in about a minute
    instead of waiting out its whole command timeout. SO_KEEPALIVE covers the
    same for a link with no SSH keepalive traffic.
    """
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if keepalive_s > 0:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for opt, value in (("TCP_KEEPIDLE", keepalive_s), ("TCP_KEEPINTVL", keepalive_s),
                           ("TCP_KEEPCNT", 3), ("TCP_USER_TIMEOUT", 3000 * keepalive_s)):
            if hasattr(socket, opt):  # Linux names; other systems keep their defaults
                sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, opt), max(1, int(value)))


def load_private_key(path: Path, where: str) -> paramiko.PKey:
    """Read the client key, refusing files others can read (as ssh does)."""
    check_private_key_file(path, where)  # also done at profile load; the file may change
    try:
        return paramiko.PKey.from_path(str(path))
    except (paramiko.PasswordRequiredException, TypeError):
        # TypeError: cryptography's OpenSSH-format loader when no password is given
        raise ConfigError(f"{where}: {path} is protected by a passphrase; the harness runs "
                          "unattended and does not prompt: use a dedicated key without a "
                          "passphrase (chmod 600) for the board") from None
    except (paramiko.SSHException, ValueError, OSError) as exc:
        raise ConfigError(f"{where}: {path} is not a private key paramiko can read ({exc}); "
                          "use an OpenSSH ed25519, ecdsa or rsa key") from None
