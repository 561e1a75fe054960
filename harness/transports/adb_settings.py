"""The [adb] table: settings of the ADB transport, checked at profile load.

Kept apart from harness/transports/adb.py so that checking a profile never
imports adb-shell (nor numpy, which adb.py uses for its checksum): the
transport is named by "module:attr" in the registry and imported only when
the phone is opened.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass
from pathlib import Path

from harness.errors import ConfigError
from harness.registry import TableContext, registry, setting

DEFAULT_KEY_PATH = Path("~/.android/adbkey")
DEFAULT_PORT = 5555
#: where relative device paths (the [run] workdir) live on a phone: the one
#: folder the adb shell user may write and execute in
ANDROID_HOME = "/data/local/tmp"


def split_address(address: str, where: str) -> tuple[str, int]:
    """("host", port) of an `adb tcpip` address; port 5555 when none is given."""
    host, sep, port_s = address.rpartition(":")
    if not sep:
        return address, DEFAULT_PORT
    if not host or not port_s.isdigit() or not 0 < int(port_s) < 65536:
        raise ConfigError(f"{where}: {address!r} is not host:port (e.g. 192.168.1.23:5555)")
    return host, int(port_s)


@registry.plugin("transport", "adb", settings_of=True, table_required=True,
                 factory="harness.transports.adb:AdbTransport.from_profile",
                 device_home=ANDROID_HOME,
                 install_hint="install it with: pip install 'gem-hil[adb]'",
                 help="an Android phone over ADB (USB or `adb tcpip`, adb-shell); relative "
                      f"device paths are under {ANDROID_HOME}; see docs/android.md")
@dataclass(frozen=True, kw_only=True)
class AdbSettings:
    """The [adb] table of a profile."""

    address: str | None = setting(None, help="host:port of an `adb tcpip` device; set this "
                                  "or serial", example='"192.168.1.23:5555"')
    serial: str | None = setting(None, help="USB serial number (`adb devices`); set this or "
                                 "address")
    key_path: Path = setting(DEFAULT_KEY_PATH, help="adbkey private key (created 0600 on first "
                             "use; an existing one must not be readable by others); ~ is "
                             "expanded")
    connect_timeout_s: float = setting(10.0, minimum=0.1, help="connect timeout per attempt")
    auth_timeout_s: float = setting(30.0, minimum=0.1, help="time to accept the \"Allow USB "
                                    "debugging?\" prompt on the phone")
    io_timeout_s: float = setting(15.0, minimum=0.1, help="timeout of one read or write on "
                                  "the link")
    reconnect_attempts: int = setting(5, minimum=1, help="connection attempts before giving up")
    reconnect_backoff_s: float = setting(1.0, minimum=0.0, help="pause between attempts, "
                                         "times the attempt number")
    shell_protocol: str = setting("auto", choices=("auto", "v2", "legacy"),
                                  help="shell,v2 (exit codes, separate stderr; Android 7+) or "
                                       "the legacy shell; auto probes once per connection")

    def __post_init__(self) -> None:
        object.__setattr__(self, "key_path", Path(self.key_path).expanduser())

    def check(self, ctx: TableContext) -> None:
        if bool(self.address) == bool(self.serial):
            raise ctx.error("address", "set exactly one of address = \"host:port\" (adb tcpip) "
                                       "or serial = \"...\" (USB; see `adb devices`)")
        if self.address:
            split_address(self.address, ctx.where("address"))
        key = self.key_path
        if ctx.check_files and key.exists():
            mode = stat.S_IMODE(key.stat().st_mode)
            if mode & 0o077:
                raise ctx.error("key_path", f"{key}: the adb private key is readable by others "
                                            f"(mode {mode:04o}); fix it with: chmod 600 {key}")
