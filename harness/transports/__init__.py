"""Transports: how bytes and commands reach a device. One module per transport.

Each transport registers its name and the typed settings of its profile table
in harness.registry; open_transport() resolves a profile's `transport` key
there, so adding a transport is adding a module and its registration, with
no list here to keep in step. Implementations are named by "module:attr" and
imported only when a device is opened: a user without adb-shell can still use
SSH, and loading a `local` profile never imports paramiko.

This layer knows links only. A device that must be started first (the QEMU
VM) is a "machine" in the registry; harness.device.open_device boots it and
then opens the link the machine names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from harness.errors import ConfigError
from harness.registry import registry
from harness.transports.base import CommandResult, PushResult, Transport

if TYPE_CHECKING:
    from harness.profiles import DeviceProfile

__all__ = ["CommandResult", "PushResult", "Transport", "open_transport"]


@registry.plugin("transport", "local", settings_of=True,
                 factory="harness.transports:open_local",
                 help="this host through subprocesses (the embedded default device); device "
                      "paths resolve under a private folder ($GEM_HIL_LOCAL_HOME, default "
                      "~/.cache/gem-hil/local-device)")
@dataclass(frozen=True, kw_only=True)
class LocalSettings:
    """The [local] table: it takes no keys today (the table may be omitted)."""


def open_local(profile: DeviceProfile, accept_new_host_key: bool = False) -> Transport:
    """The `local` link (host keys do not apply)."""
    from harness.transports.local import LocalTransport

    return LocalTransport(profile.name)


def open_transport(profile: DeviceProfile, accept_new_host_key: bool = False) -> Transport:
    """The link to a device that is already running, from its checked settings."""
    plugin = registry.get("transport", profile.transport)
    if plugin.options.get("machine"):
        raise ConfigError(f"{profile.path}: transport = {profile.transport!r} starts a machine "
                          f"first ({plugin.help}); open it with harness.device.open_device()")
    opener = plugin.load()
    return opener(profile, accept_new_host_key=accept_new_host_key)
