"""The emulated Raspberry Pi 4: image build, VM lifecycle, transport factory.

`build_image` makes (or finds in the cache) an arm64 Debian image without
running arm64 code at build time; `open_vm_transport` boots it under
qemu-system-aarch64 (Cortex-A72, 4 CPUs) and hands back an SSH transport
whose close() also stops a VM it started. See docs/qemu.md.

Submodules are imported lazily so `import harness.qemu` stays cheap (the
transport pulls in paramiko).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from harness.qemu.image import ImageBuildError, ImagePaths, build_image, cached_image

if TYPE_CHECKING:
    from harness.profiles import DeviceProfile
    from harness.qemu.transport import VmTransport

__all__ = ["ImageBuildError", "ImagePaths", "build_image", "cached_image", "open_vm_transport"]


def open_vm_transport(profile: DeviceProfile, **kw: Any) -> VmTransport:
    """See harness.qemu.transport.open_vm_transport."""
    from harness.qemu.transport import open_vm_transport as _open

    return _open(profile, **kw)
