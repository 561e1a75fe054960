"""The [ssh] table: settings of the SSH transport, checked at profile load.

Kept apart from harness/transports/ssh.py so that checking a profile (and
`gem-hil devices`) never imports paramiko: the transport itself is named by
"module:attr" in the registry and imported only when a device is opened.
What can be checked without paramiko is checked here, at load: types, limits,
and that the private key exists and is private (mode 0600). Whether the file
really is a key without a passphrase needs paramiko and is checked when the
transport is built.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from harness.errors import ConfigError
from harness.registry import TableContext, registry, setting


def check_private_key_file(path: Path, where: str) -> None:
    """Refuse a key that is missing, not a file, or readable by others (as ssh does)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ConfigError(f"{where}: {path} does not exist; create a key with "
                          f"ssh-keygen -t ed25519 -N '' -f {path} and install {path}.pub on the "
                          "board (ssh-copy-id), or point key_file at your key") from None
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read {path}: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"{where}: {path} is not a regular file; point key_file at the "
                          "private key file")
    if st.st_mode & 0o077:
        raise ConfigError(f"{where}: {path} is accessible by others (mode "
                          f"{stat.S_IMODE(st.st_mode):04o}); a private key must be private: "
                          f"chmod 600 {path}")


@registry.plugin("transport", "ssh", settings_of=True, table_required=True,
                 factory="harness.transports.ssh:SshTransport.from_profile",
                 from_settings="harness.transports.ssh:SshTransport.from_settings",
                 install_hint="pip install paramiko (a dependency of gem-hil)",
                 help="a Linux board over SSH (paramiko), key authentication; see docs/ssh.md")
@dataclass(frozen=True, kw_only=True)
class SshSettings:
    """The [ssh] table of a profile (transport = "ssh")."""

    host: str = setting(help="the board's address or DNS name", example='"pi4.lan"')
    port: int = setting(22, minimum=1, maximum=65535, help="sshd port on the board")
    user: str = setting(help="login with a POSIX /bin/sh shell, not root", example='"gemhil"')
    key_file: str = setting(help="private key file, mode 0600, no passphrase; ~ is expanded",
                            example='"~/.ssh/gem-hil-board"')
    known_hosts: str = setting("~/.ssh/known_hosts", help="known_hosts file with the board's "
                               "host key; ~ is expanded")
    accept_new_host_key: bool = setting(False, help="trust an unknown host key on first use "
                                        "and record it (a changed key is always refused)")
    connect_timeout_s: float = setting(10.0, minimum=0.1, help="TCP connect + SSH handshake + "
                                       "authentication")
    command_timeout_s: float = setting(300.0, minimum=0.1, help="timeout of a command that "
                                       "sets none of its own")
    keepalive_s: float = setting(15.0, minimum=0, help="SSH and TCP keepalive period; 0 "
                                 "disables keepalives")

    @property
    def key_path(self) -> Path:
        return Path(os.path.expanduser(self.key_file))

    @property
    def known_hosts_path(self) -> Path:
        return Path(os.path.expanduser(self.known_hosts))

    def check(self, ctx: TableContext) -> None:
        for key in ("host", "user"):
            value = getattr(self, key)
            if not value.strip() or any(c.isspace() or ord(c) < 32 for c in value):
                raise ctx.error(key, f"{value!r} is empty or has spaces or control characters; "
                                     f"set the board's {'address' if key == 'host' else 'login'}")
        if not self.key_file.strip():
            raise ctx.error("key_file", "empty; set the path of the private key file")
        if ctx.check_files:
            check_private_key_file(self.key_path, ctx.where("key_file"))
