"""Platforms: what differs between device kinds once bytes can reach them.

A platform knows how to start the agent, what to record about the device in the
environment fingerprint, and which conditioning steps apply. One module per
platform; get_platform() maps a profile's `platform` key to it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.platforms.base import Platform

if TYPE_CHECKING:
    from harness.profiles import DeviceProfile

__all__ = ["Platform", "get_platform"]


def get_platform(profile: DeviceProfile) -> Platform:
    if profile.platform == "android":
        try:
            from harness.platforms.android import AndroidPlatform
        except ImportError:  # platform module not present: the generic Linux path works
            from harness.platforms.linux import LinuxPlatform

            return LinuxPlatform(profile)
        return AndroidPlatform(profile)
    from harness.platforms.linux import LinuxPlatform

    return LinuxPlatform(profile)
