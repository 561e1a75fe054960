"""Linux boards (Pi 4, NPU boards, the QEMU VM, this host).

The agent reports kernel, governor and CPU itself, in the same process that
takes the samples, so the Linux platform needs no extra round trips.
"""

from __future__ import annotations

from harness.platforms.base import Platform


class LinuxPlatform(Platform):
    name = "linux"
