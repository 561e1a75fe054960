"""The emulated Raspberry Pi 4: image build, VM lifecycle, settings.

`build_image` makes (or finds in the cache) an arm64 Debian image without
running arm64 code at build time; harness.qemu.transport boots it under
qemu-system-aarch64 (Cortex-A72, 4 CPUs). harness.device.open_device is what
puts a VM and the SSH link into it together for a profile. See docs/qemu.md.

Everything is imported lazily so that `harness.qemu.settings` (read by every
profile load, for the [qemu] table) costs no image or transport code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.qemu.image import ImageBuildError, ImagePaths, build_image, cached_image

__all__ = ["ImageBuildError", "ImagePaths", "build_image", "cached_image"]

_FROM_IMAGE = ("ImageBuildError", "ImagePaths", "build_image", "cached_image")


def __getattr__(name: str) -> Any:
    if name in _FROM_IMAGE:
        from harness.qemu import image

        return getattr(image, name)
    raise AttributeError(f"module 'harness.qemu' has no attribute {name!r}")

