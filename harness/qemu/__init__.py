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
    from harness.profiles import DeviceProfile
    from harness.qemu.image import ImageBuildError, ImagePaths, build_image, cached_image
    from harness.qemu.transport import VmTransport

__all__ = ["ImageBuildError", "ImagePaths", "build_image", "cached_image", "open_vm_transport"]

_FROM_IMAGE = ("ImageBuildError", "ImagePaths", "build_image", "cached_image")


def __getattr__(name: str) -> Any:
    if name in _FROM_IMAGE:
        from harness.qemu import image

        return getattr(image, name)
    raise AttributeError(f"module 'harness.qemu' has no attribute {name!r}")


def open_vm_transport(profile: DeviceProfile, **kw: Any) -> VmTransport:
    """See harness.qemu.transport.open_vm_transport."""
    from harness.qemu.transport import open_vm_transport as _open

    return _open(profile, **kw)
