"""Transports: how bytes and commands reach a device. One module per transport.

open_transport() is the single place that maps a profile's `transport` key to
a class, so adding a transport is adding a module and a line here. Optional
transports are imported lazily: a user without adb-shell can still use SSH.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.errors import ConfigError
from harness.transports.base import CommandResult, PushResult, Transport

if TYPE_CHECKING:
    from harness.profiles import DeviceProfile

__all__ = ["CommandResult", "PushResult", "Transport", "open_transport"]


def open_transport(profile: DeviceProfile, accept_new_host_key: bool = False) -> Transport:
    kind = profile.transport
    if kind == "local":
        from harness.transports.local import LocalTransport

        return LocalTransport(profile.name)
    if kind == "ssh":
        from harness.transports.ssh import SshTransport

        return SshTransport.from_profile(profile, accept_new_host_key=accept_new_host_key)
    if kind == "adb":
        try:
            from harness.transports.adb import AdbTransport
        except ImportError as exc:
            raise ConfigError(f"{profile.path}: transport 'adb' needs the adb-shell package "
                              f"({exc}); install it with: pip install 'gem-hil[adb]'") from None
        return AdbTransport.from_profile(profile)
    if kind == "qemu":
        from harness.qemu import open_vm_transport

        return open_vm_transport(profile)
    raise ConfigError(f"{profile.path}: transport {kind!r} has no implementation")
