"""Platforms: what differs between device kinds once bytes can reach them.

A platform knows how to start the agent, what to record about the device in the
environment fingerprint, and which conditioning steps apply. One module per
platform, registered here by name in harness.registry; get_platform() resolves
a profile's `platform` key there. A name nobody registered (`npu` today) is
refused when the profile is loaded: never a silent fall-back to Linux, which
would run a phone's or an NPU board's benchmark the wrong way. `ios` registers
itself in harness/platforms/ios.py, beside the settings of its [ios] table.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.platforms.base import Platform
from harness.registry import registry

if TYPE_CHECKING:
    from harness.profiles import DeviceProfile

__all__ = ["Platform", "get_platform"]

registry.register("platform", "linux", factory="harness.platforms.linux:LinuxPlatform",
                  help="Linux boards, the QEMU VM and this host: the agent runs with [run] "
                       "python and reports kernel, governor and CPU itself")
registry.register("platform", "android", factory="harness.platforms.android:AndroidPlatform",
                  help="Android phones over ADB: conditioning (cooldown, idle, taskset, "
                       "screen), ODPM energy, host-side sampling ([sensors]/[conditioning] "
                       "android_* keys)")


def get_platform(profile: DeviceProfile) -> Platform:
    """The platform implementation the profile names (checked at load)."""
    cls = registry.get("platform", profile.platform).load()
    return cls(profile)
