"""open_device(profile): the one place that assembles what a device needs.

A loaded profile names a transport, a platform and a runtime, each registered
in harness.registry with settings that were checked when the profile was
loaded. This module puts them together:

* the machine's lifecycle, when the transport is a machine the harness starts
  (`transport = "qemu"`: boot or reuse the VM), then the link into it (the
  machine's registration names it: SSH with the VM's key and port);
* otherwise the link to a device that is already there (local, ssh, adb);
* the platform (how the agent is started, conditioning, fingerprint);
* the sensor and conditioning settings, and the runtime (the runner the
  artifact is built and run for).

Transports know nothing of VMs: the knowledge that "qemu" means "a VM, then
SSH" is in the registration (harness/qemu/settings.py) and applied here.
The link opens lazily on first use, so a session that fails before touching
the device (a build error, say) never boots a VM.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.registry import Plugin, registry

if TYPE_CHECKING:
    from harness.platforms.base import Platform
    from harness.profiles import DeviceProfile
    from harness.qemu.transport import VmTransport
    from harness.transports.base import Transport


@dataclass
class Device:
    """A profile's device, assembled: platform, runtime, settings; link on demand."""

    profile: DeviceProfile
    platform: Platform
    runtime: Plugin
    accept_new_host_key: bool = False
    state_root: Path | None = None
    _transport: Transport | None = field(default=None, repr=False)

    @property
    def sensors(self) -> Any:
        """The checked [sensors] settings (harness.sensors.session.SensorSettings)."""
        return self.profile.settings["sensors"]

    @property
    def conditioning(self) -> Any:
        """The checked [conditioning] settings."""
        return self.profile.settings["conditioning"]

    @property
    def transport(self) -> Transport:
        """The link, opened (and a machine booted) on first use."""
        if self._transport is None:
            self._transport = _open_link(self.profile, self.accept_new_host_key,
                                         self.state_root)
        return self._transport

    @property
    def is_open(self) -> bool:
        return self._transport is not None

    def close(self) -> None:
        """Close the link; a VM this process booted is stopped with its last user."""
        if self._transport is not None:
            t, self._transport = self._transport, None
            t.close()

    def __enter__(self) -> Device:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_device(profile: DeviceProfile, *, accept_new_host_key: bool = False,
                state_root: Path | None = None, connect: bool = False) -> Device:
    """Assemble the device of a loaded (hence checked) profile.

    connect=True opens the link now (and boots a VM); by default it opens on
    first use of Device.transport.
    """
    from harness.platforms import get_platform

    device = Device(profile, get_platform(profile), registry.get("runtime", profile.runtime),
                    accept_new_host_key=accept_new_host_key, state_root=state_root)
    if connect:
        _ = device.transport
    return device


def _open_link(profile: DeviceProfile, accept_new_host_key: bool,
               state_root: Path | None) -> Transport:
    plugin = registry.get("transport", profile.transport)
    if not plugin.options.get("machine"):
        from harness.transports import open_transport

        return open_transport(profile, accept_new_host_key=accept_new_host_key)
    return open_vm_link(profile, state_root=state_root)


def open_vm_link(profile: DeviceProfile, state_root: Path | None = None) -> VmTransport:
    """A machine profile: start (or attach to) the machine, then its link.

    The machine module (the registration's `machine`) provides attach(),
    link_settings(), detach() and wrap(); the link transport (its `link`)
    is built from the settings the machine hands out, through the link
    plugin's from_settings.
    """
    plugin = registry.get("transport", profile.transport)
    machine = importlib.import_module(plugin.options["machine"])
    link_plugin = registry.get("transport", plugin.options["link"])
    make_link = link_plugin.load("from_settings")
    s = profile.transport_settings
    vm = machine.attach(profile, s, state_root=state_root)
    try:
        link = make_link(profile.name, machine.link_settings(vm, s), where=str(profile.path))
    except BaseException:
        machine.detach(profile, vm, s)
        raise
    return machine.wrap(profile, vm, link, s)
