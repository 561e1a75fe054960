"""A real OpenSSH sshd on loopback, standing in for an SSH-reached board.

The SSH transport is only worth trusting if it is tested against the server
real boards run, so this starts Debian's /usr/sbin/sshd with its own config,
its own throwaway host key and client key, on 127.0.0.1 and a free port, and
logs in as a NON-root user whose login shell is /bin/sh (root's shell startup
on these machines costs ~0.5 s per command and would hide transport costs).

Used by tests/integration/conftest.py (the ``sshd_board`` fixture) and by
tests/benchmarks/bench_push.py. Starting it needs root (useradd, a second
user, sshd's privilege separation); ``SshdBoard.unavailable_reason()`` says
why it cannot run here so callers can skip with that reason.

A person can start one by hand, as the ADB peer can be, to try the harness
against a real SSH board without owning one (from the repository root, as root):

    python -m tests.support.sshd_board            # prints host, port, key, targets folder
    gem-hil --targets-dir DIR bench --device ssh-board     # in another shell

It runs until Ctrl-C or SIGTERM, then stops sshd and every login it forked,
removes its temporary folder and, when it created the login user itself,
that user and the permissions it granted them (``--help`` for options).
"""

from __future__ import annotations

import argparse
import atexit
import base64
import contextlib
import errno
import hashlib
import json
import os
import platform
import pwd
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

SSHD = "/usr/sbin/sshd"
SSH_KEYGEN = "ssh-keygen"
DEFAULT_USER = "gemhil"
REPO_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = REPO_ROOT / "targets" / "ssh-board.toml"
START_TIMEOUT_S = 10.0


def fingerprint_of_pub(pub_line: str) -> str:
    """OpenSSH-style SHA256 fingerprint of a ``type base64 [comment]`` line."""
    blob = base64.b64decode(pub_line.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def free_loopback_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class SshdBoard:
    """One sshd process plus the files a client needs to reach it.

    Attributes a test uses: host, port, user, key_file (client private key,
    0600), known_hosts (pre-filled with this sshd's host key), log_path (sshd's
    -E log, LogLevel VERBOSE: one "Accepted publickey" line per connection),
    host_key_fingerprint, home, python (an interpreter the user can run with
    numpy and onnxruntime importable).
    """

    host = "127.0.0.1"

    def __init__(self, user: str = DEFAULT_USER, base_dir: Path | None = None) -> None:
        self.user = user
        # Not under pytest's tmp_path: that is 0700 root and sshd reads the
        # AuthorizedKeysFile as the login user, who must be able to reach it.
        self.base = Path(base_dir or tempfile.mkdtemp(prefix="gem-hil-sshd-"))
        self.base.mkdir(parents=True, exist_ok=True)
        os.chmod(self.base, 0o755)
        self.port = 0
        self.key_file = self.base / "client_ed25519"
        self.known_hosts = self.base / "known_hosts"
        self.log_path = self.base / "sshd.log"
        self.config_path = self.base / "sshd_config"
        self.pid_file = self.base / "sshd.pid"
        self.host_key = self.base / "host_ed25519_key"
        self.authorized_keys = self.base / "authorized_keys"
        self.host_key_fingerprint = ""
        self.home = Path("/nonexistent")
        self.python = sys.executable
        self.notes: list[str] = []
        #: True when start() had to create the login user (only then may it be removed)
        self.created_user = False
        self._grants: list[tuple[Path, str]] = []  # (directory, how) made for this user
        self._started = False

    # -- availability -----------------------------------------------------

    @staticmethod
    def unavailable_reason() -> str | None:
        """Why a real sshd board cannot be started here, or None."""
        if os.name != "posix":
            return "the sshd board needs a POSIX host"
        if os.geteuid() != 0:
            return ("the sshd board needs root (it creates a login user and runs sshd); "
                    "run the integration tests as root, as .ci/run does")
        if not os.access(SSHD, os.X_OK):
            return (f"{SSHD} not found: install Debian's openssh-server "
                    "(apt-get install openssh-server)")
        for tool in (SSH_KEYGEN, "useradd"):
            if shutil.which(tool) is None and not os.access(f"/usr/sbin/{tool}", os.X_OK):
                return f"{tool} not found: install openssh-client / passwd"
        return None

    # -- lifecycle --------------------------------------------------------

    def start(self) -> SshdBoard:
        reason = self.unavailable_reason()
        if reason:
            raise RuntimeError(reason)
        pw = self._ensure_user()
        self.home = Path(pw.pw_dir)
        self._make_keys()
        self.python = self._python_for_user(pw)
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)
        last_log = ""
        for _attempt in range(3):  # a free port can be taken between probe and bind
            self.port = free_loopback_port()
            self._write_config()
            self.log_path.write_text("")
            res = subprocess.run([SSHD, "-f", str(self.config_path), "-E", str(self.log_path)],
                                 capture_output=True, text=True, timeout=30)
            if res.returncode == 0 and self._wait_ready():
                self._started = True
                atexit.register(self.stop)
                self._write_known_hosts()
                return self
            last_log = res.stderr + self.log_path.read_text(errors="replace")
            self._kill_from_pid_file()
        raise RuntimeError(f"sshd did not start on 127.0.0.1 (config {self.config_path}): "
                           f"{last_log.strip()[-2000:]}")

    def stop(self) -> None:
        """Kill sshd (by its PID file) and the per-connection children it forked."""
        if not self._started:
            return
        self._started = False
        self._kill_from_pid_file()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)

    def remove_created_user(self) -> list[str]:
        """Undo what start() did to the system for a user it created; say what.

        Only a user this board created is removed, together with the search
        permissions granted to it: another board (a pytest session of someone
        else on this machine) may be logged in as a user that already existed.
        Call after stop(), so no login of the user is left running.
        """
        if not self.created_user:
            return []
        done = []
        pw = pwd.getpwnam(self.user)
        for path, how in reversed(self._grants):
            _revoke_search(path, pw.pw_uid, how)
            done.append(f"revoked {self.user}'s search permission on {path}")
        self._grants.clear()
        for pid in _processes_of(pw.pw_uid):  # a login's background job outlives sshd
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        res = subprocess.run(["userdel", "--remove", self.user], capture_output=True,
                             text=True, timeout=30)
        # exit 12: the mail spool was absent; the account and home are gone all the same
        if res.returncode not in (0, 12):
            raise RuntimeError(f"userdel {self.user} failed ({res.returncode}): "
                               f"{res.stderr.strip()}; remove it by hand: userdel -r {self.user}")
        self.created_user = False
        done.append(f"removed user {self.user} and {pw.pw_dir}")
        return done

    def __enter__(self) -> SshdBoard:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    # -- what tests need --------------------------------------------------

    @property
    def workdir(self) -> str:
        """Where the device suite puts the agent and artifacts (writable by the user)."""
        return str(self.home / "gem-hil")

    def known_hosts_line(self) -> str:
        return self.known_hosts.read_text().splitlines()[0]

    def ssh_table(self) -> dict[str, Any]:
        return {"host": self.host, "port": self.port, "user": self.user,
                "key_file": str(self.key_file), "known_hosts": str(self.known_hosts)}

    def make_targets_dir(self, dest: Path, *, ssh: Mapping[str, Any] | None = None,
                         **run_overrides: Any) -> Path:
        """Write dest/ssh-board.toml from targets/ssh-board.toml, aimed at this sshd.

        [ssh] gets host/port/user/key_file/known_hosts (plus ``ssh`` overrides);
        [run] gets python (an interpreter the login user can run) and any
        ``run_overrides`` (workdir stays the template's, relative to the
        user's home). Returns dest.
        """
        dest = Path(dest)
        dest.mkdir(parents=True, exist_ok=True)
        text = TEMPLATE.read_text(encoding="utf-8")
        ssh_values = {**self.ssh_table(), **dict(ssh or {})}
        run_values = {"python": self.python, **run_overrides}
        text = set_toml_keys(text, "ssh", ssh_values)
        text = set_toml_keys(text, "run", run_values)
        text = set_toml_keys(text, "hardware", {"arch": platform.machine(),
                                                "cores": os.cpu_count() or 1})
        parsed = tomllib.loads(text)  # fail here, not in the loader, if we broke it
        for key, value in ssh_values.items():
            assert parsed["ssh"][key] == value, (key, parsed["ssh"].get(key), value)
        out = dest / "ssh-board.toml"
        out.write_text(text, encoding="utf-8")
        return dest

    @property
    def sshd_pid(self) -> int | None:
        """The listening sshd's pid (from its PID file), None when it is not running."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _is_sshd(pid) else None

    def accepted_connections(self) -> int:
        """How many logins sshd accepted so far (one per TCP connection)."""
        return self.log_path.read_text(errors="replace").count("Accepted publickey")

    # -- internals --------------------------------------------------------

    def _ensure_user(self) -> pwd.struct_passwd:
        try:
            pw = pwd.getpwnam(self.user)
        except KeyError:
            subprocess.run(["useradd", "--create-home", "--home-dir", f"/home/{self.user}",
                            "--shell", "/bin/sh", "--comment", "gem-hil test board login",
                            self.user], check=True, capture_output=True, timeout=30)
            pw = pwd.getpwnam(self.user)
            self.created_user = True
            self.notes.append(f"created user {self.user} (shell /bin/sh)")
        if pw.pw_shell != "/bin/sh":
            subprocess.run(["usermod", "--shell", "/bin/sh", self.user], check=True,
                           capture_output=True, timeout=30)
            pw = pwd.getpwnam(self.user)
        home = Path(pw.pw_dir)
        if not home.is_dir():
            home.mkdir(parents=True, mode=0o755)
            os.chown(home, pw.pw_uid, pw.pw_gid)
        # sshd refuses accounts whose password field is locked ("!") for
        # pubkey logins only when UsePAM is off and the account is *locked*;
        # useradd leaves "!" which OpenSSH treats as locked. Mark it as
        # "no password" instead ("*"), which still forbids password logins.
        with contextlib.suppress(subprocess.CalledProcessError, FileNotFoundError):
            shadow = Path("/etc/shadow").read_text()
            if re.search(rf"^{re.escape(self.user)}:!", shadow, re.M):
                subprocess.run(["usermod", "-p", "*", self.user], check=True,
                               capture_output=True, timeout=30)
        return pw

    def _make_keys(self) -> None:
        for path, comment in ((self.host_key, "gem-hil test host key"),
                              (self.key_file, "gem-hil test client key")):
            if not path.exists():
                subprocess.run([SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-C", comment,
                                "-f", str(path)], check=True, capture_output=True, timeout=30)
            os.chmod(path, 0o600)
        pub = Path(f"{self.key_file}.pub").read_text()
        self.authorized_keys.write_text(pub)
        os.chmod(self.authorized_keys, 0o644)  # sshd reads it as the login user
        self.host_key_fingerprint = fingerprint_of_pub(Path(f"{self.host_key}.pub").read_text())

    def _write_config(self) -> None:
        self.config_path.write_text("\n".join([
            f"Port {self.port}",
            "ListenAddress 127.0.0.1",
            f"HostKey {self.host_key}",
            f"PidFile {self.pid_file}",
            f"AuthorizedKeysFile {self.authorized_keys}",
            f"AllowUsers {self.user}",
            "PermitRootLogin no",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "StrictModes no",
            "UseDNS no",
            "PrintMotd no",
            "LogLevel VERBOSE",
            "MaxStartups 50",
            "MaxSessions 50",
            "Subsystem sftp internal-sftp",
            "",
        ]))

    def _write_known_hosts(self) -> None:
        pub = Path(f"{self.host_key}.pub").read_text().split()
        self.known_hosts.write_text(f"[{self.host}]:{self.port} {pub[0]} {pub[1]}\n")
        os.chmod(self.known_hosts, 0o600)

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.pid_file.exists():
                try:
                    with socket.create_connection((self.host, self.port), timeout=2) as s:
                        if s.recv(64).startswith(b"SSH-2.0-"):
                            return True
                except OSError:
                    pass
            time.sleep(0.05)
        return False

    def _kill_from_pid_file(self) -> None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return
        if not _is_sshd(pid):
            return  # stale file; never signal a pid that is not our sshd
        for child in _children_of(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGTERM)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and _is_sshd(pid):
            time.sleep(0.02)
        with contextlib.suppress(OSError):
            self.pid_file.unlink()

    def _python_for_user(self, pw: pwd.struct_passwd) -> str:
        """An interpreter the login user can run with numpy + onnxruntime.

        The harness's interpreter may live under /root (pyenv), which is mode
        0700 here, so the login user cannot even reach it. Rather than open
        /root to everyone, grant only this user search (x, not read) permission
        on the blocking directories with a POSIX ACL; fall back to o+x where
        the file system has no ACLs. Each change is recorded in ``notes``.
        """
        # Not realpath: a venv's bin/python is a symlink, and only when run by
        # its own path does Python find pyvenv.cfg and the venv's packages.
        python = os.path.abspath(sys.executable)
        probe = [python, "-c", "import numpy, onnxruntime, sys; print(sys.version)"]
        if _run_as(pw, probe) == 0:
            return python
        needed: set[Path] = set()
        for path in (python, os.path.realpath(python), sys.prefix, sys.base_prefix):
            needed.update(Path(path).parents)
        for parent in sorted(needed):
            if parent.stat().st_mode & 0o001:
                continue
            how = _grant_search(parent, pw.pw_uid)
            self._grants.append((parent, how))
            self.notes.append(f"granted {self.user} search permission on {parent} ({how})")
        if _run_as(pw, probe) != 0:
            raise RuntimeError(f"user {self.user} cannot run {python} with numpy and onnxruntime "
                               "importable; install them system-wide for that user")
        return python


def _run_as(pw: pwd.struct_passwd, argv: list[str]) -> int:
    env = {"HOME": pw.pw_dir, "PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
    try:
        return subprocess.run(argv, user=pw.pw_uid, group=pw.pw_gid, extra_groups=[],
                              env=env, cwd="/", capture_output=True, timeout=60).returncode
    except (OSError, subprocess.TimeoutExpired):
        return 127


_ACL_XATTR = "system.posix_acl_access"
_ACL_USER_OBJ, _ACL_USER, _ACL_GROUP_OBJ, _ACL_GROUP, _ACL_MASK, _ACL_OTHER = (
    0x01, 0x02, 0x04, 0x08, 0x10, 0x20)
_ACL_UNDEF = 0xFFFFFFFF


def _grant_search(path: Path, uid: int) -> str:
    """Give uid search (x) permission on a directory: POSIX ACL, else o+x."""
    try:
        entries = _read_acl(path)
        if entries is None:  # no ACL yet: derive one from the mode bits
            mode = path.stat().st_mode
            entries = [(_ACL_USER_OBJ, (mode >> 6) & 7, _ACL_UNDEF),
                       (_ACL_GROUP_OBJ, (mode >> 3) & 7, _ACL_UNDEF),
                       (_ACL_OTHER, mode & 7, _ACL_UNDEF)]
        entries = [e for e in entries if not (e[0] == _ACL_USER and e[2] == uid)
                   and e[0] != _ACL_MASK]
        _write_acl(path, [*entries, (_ACL_USER, 1, uid)])
        return "POSIX ACL u:x"
    except OSError:
        os.chmod(path, path.stat().st_mode | 0o001)
        return "chmod o+x (no ACL support)"


def _read_acl(path: Path) -> list[tuple[int, int, int]] | None:
    """The access ACL's (tag, perm, id) entries, None when the file has none."""
    try:
        raw = os.getxattr(path, _ACL_XATTR)
    except OSError as exc:
        if exc.errno == errno.ENODATA:
            return None
        raise
    return [struct.unpack_from("<HHI", raw, 4 + 8 * i) for i in range((len(raw) - 4) // 8)]


def _revoke_search(path: Path, uid: int, how: str) -> None:
    """Undo _grant_search: drop uid's ACL entry (or o+x), leave everyone else's.

    When no named entry is left the ACL goes entirely and the mode's group
    bits return to the group entry's (an ACL shows its mask there), so a
    directory that had no ACL before ends exactly as it was.
    """
    if not path.exists():
        return
    if not how.startswith("POSIX ACL"):
        os.chmod(path, path.stat().st_mode & ~0o001)
        return
    entries = _read_acl(path)
    if entries is None:
        return
    entries = [e for e in entries if not (e[0] == _ACL_USER and e[2] == uid) and e[0] != _ACL_MASK]
    if not any(tag in (_ACL_USER, _ACL_GROUP) for tag, _, _ in entries):
        group = next(perm for tag, perm, _ in entries if tag == _ACL_GROUP_OBJ)
        os.removexattr(path, _ACL_XATTR)
        os.chmod(path, (path.stat().st_mode & ~0o070) | (group << 3))
        return
    _write_acl(path, entries)


def _write_acl(path: Path, entries: list[tuple[int, int, int]]) -> None:
    """Set the access ACL to entries plus a mask that covers them."""
    mask = 0
    for tag, perm, _ in entries:
        if tag in (_ACL_USER, _ACL_GROUP_OBJ, _ACL_GROUP):
            mask |= perm
    entries = sorted([*entries, (_ACL_MASK, mask, _ACL_UNDEF)], key=lambda e: (e[0], e[2]))
    os.setxattr(path, _ACL_XATTR,
                struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *e) for e in entries))


def _processes_of(uid: int) -> list[int]:
    """Live processes of uid (zombies are dead already: only their parent can reap them)."""
    from tests.support.procs import processes

    return [p.pid for p in processes() if p.uid == uid]


def _is_sshd(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"sshd" in cmdline


def _children_of(pid: int) -> list[int]:
    from tests.support.procs import processes

    return [p.pid for p in processes() if p.ppid == pid]


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value))  # a JSON string is a valid TOML basic string
    raise TypeError(f"cannot write {value!r} into the profile template")


def set_toml_keys(text: str, table: str, values: Mapping[str, Any]) -> str:
    """Set ``key = value`` lines inside [table] of a TOML text, keeping comments.

    A tiny line editor rather than a TOML writer, so the written profile keeps
    the template's comments and order (the stdlib reads TOML but cannot write it).
    """
    lines = text.splitlines()
    header = f"[{table}]"
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == header)
    except StopIteration:
        lines += ["", header]
        start = len(lines) - 1
    end = next((i for i in range(start + 1, len(lines))
                if lines[i].lstrip().startswith("[")), len(lines))
    pending = dict(values)
    for i in range(start + 1, end):
        m = re.match(r'^(\s*)([A-Za-z0-9_-]+)(\s*=\s*)("(?:[^"\\]|\\.)*"|[^#\s]+)?(\s*#.*)?$',
                     lines[i])
        if m and m.group(2) in pending:
            value = _toml_value(pending.pop(m.group(2)))
            lines[i] = f"{m.group(1)}{m.group(2)}{m.group(3)}{value}{m.group(5) or ''}"
    insert_at = end
    while insert_at > start + 1 and not lines[insert_at - 1].strip():
        insert_at -= 1
    for key, value in pending.items():
        lines.insert(insert_at, f"{key} = {_toml_value(value)}")
        insert_at += 1
    return "\n".join(lines) + "\n"


def write_ed25519_key(path: Path, passphrase: bytes | None = None, mode: int = 0o600) -> str:
    """Write a fresh OpenSSH ed25519 private key (no ssh-keygen needed); return its public line."""
    from cryptography.hazmat.primitives import serialization as ser
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = ed25519.Ed25519PrivateKey.generate()
    enc = ser.BestAvailableEncryption(passphrase) if passphrase else ser.NoEncryption()
    path = Path(path)
    path.write_bytes(key.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.OpenSSH, enc))
    os.chmod(path, mode)
    pub = key.public_key().public_bytes(ser.Encoding.OpenSSH, ser.PublicFormat.OpenSSH)
    return pub.decode()


# -- command line ---------------------------------------------------------

READY = "SSHD_BOARD_READY"


def main(argv: list[str] | None = None) -> int:
    """Start a board, print how to reach it, serve until a signal, clean up."""
    ap = argparse.ArgumentParser(
        prog="python -m tests.support.sshd_board",
        description="Start a real OpenSSH sshd on 127.0.0.1 standing in for an SSH board "
                    "(needs root), print its host, port, user, key, known_hosts and a "
                    "targets folder with a ready ssh-board.toml, and serve until Ctrl-C "
                    "or SIGTERM. On exit it stops sshd and its logins and removes its "
                    "temporary files, and the login user when it created that user.",
        epilog="Then, in another shell: gem-hil --targets-dir DIR bench --device ssh-board "
               "(or pytest tests/device --device=ssh-board --targets-dir=DIR). Printed "
               f"lines are 'key: value', then '{READY}' once sshd accepts logins.")
    ap.add_argument("--user", default=DEFAULT_USER,
                    help="login user, created (shell /bin/sh) when missing (default: %(default)s)")
    ap.add_argument("--targets-dir", type=Path, default=None,
                    help="where to write ssh-board.toml (default: inside the board's "
                         "temporary folder); the file is removed on exit")
    args = ap.parse_args(argv)
    reason = SshdBoard.unavailable_reason()
    if reason:
        print(f"sshd board: {reason}", file=sys.stderr)
        return 1
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: stop.set())
    board = SshdBoard(user=args.user)
    profile: Path | None = None
    rc = 0
    try:
        board.start()
        targets = board.make_targets_dir(args.targets_dir or board.base / "targets")
        profile = targets / "ssh-board.toml"
        for note in board.notes:
            print(f"# {note}", file=sys.stderr)
        for key, value in (*board.ssh_table().items(), ("python", board.python),
                           ("sshd_pid", board.sshd_pid), ("targets_dir", targets),
                           ("profile", profile)):
            print(f"{key}: {value}")
        print(f"# try: ssh -i {board.key_file} -p {board.port} -o UserKnownHostsFile="
              f"{board.known_hosts} {board.user}@{board.host} uname -a")
        print(f"# try: gem-hil --targets-dir {targets} bench --device ssh-board")
        print(f"# stop: Ctrl-C or kill -TERM {os.getpid()}")
        print(READY, flush=True)
        while not stop.wait(0.5):
            pass
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        print(f"sshd board: {exc}", file=sys.stderr)
        rc = 1
    finally:
        board.cleanup()
        if profile is not None and args.targets_dir is not None:
            profile.unlink(missing_ok=True)
        try:
            for line in board.remove_created_user():
                print(f"# {line}", file=sys.stderr)
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
            print(f"sshd board: {exc}", file=sys.stderr)
            rc = 1
        print("# sshd board stopped", file=sys.stderr, flush=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
