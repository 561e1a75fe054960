"""The [qemu] table: settings of the emulated Pi 4, checked at profile load.

`transport = "qemu"` is registered as a MACHINE, not a link: the harness must
start it first. harness.device.open_device boots (or attaches to) the VM with
harness.qemu.transport and then opens the link the registration names
("ssh"). This module is light (no image code, no paramiko), so checking a
profile costs nothing that booting would.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from harness.registry import TableContext, registry, setting

#: what a VM may use at most unless [qemu] memory_mb says otherwise: the CI
#: machine (24 GB, 2 cores) is shared, and the GEM suite needs far less
DEFAULT_MEMORY_CAP_MB = 2048
#: vCPUs the virt machine with this image is tested for
MAX_SMP = 8


@registry.plugin("transport", "qemu", settings_of=True, table_required=True,
                 machine="harness.qemu.transport", link="ssh",
                 help="the emulated Raspberry Pi 4: boots (or reuses) an arm64 VM under "
                      "qemu-system-aarch64, then SSH into it; see docs/qemu.md")
@dataclass(frozen=True, kw_only=True)
class VmSettings:
    """The [qemu] table of a profile (transport = "qemu"), checked."""

    image: str = setting("pi4", help="firmware/qemu/ recipe, built by `gem-hil qemu build pi4`")
    memory_mb: int = setting(DEFAULT_MEMORY_CAP_MB, minimum=256,
                             help="guest RAM; default min([hardware] ram_mb, "
                                  f"{DEFAULT_MEMORY_CAP_MB})")
    smp: int = setting(4, minimum=1, maximum=MAX_SMP, help="vCPUs")
    cpu: str = setting("cortex-a72", help="-cpu model of qemu-system-aarch64")
    boot_timeout_s: float = setting(240.0, minimum=5, help="from start to SSH answering")
    stop_grace_s: float = setting(20.0, minimum=0, help="wait for poweroff before killing QEMU")
    connect_timeout_s: float = setting(20.0, minimum=1, help="SSH connect timeout into the VM")
    command_timeout_s: float = setting(900.0, minimum=1, help="timeout of a command that "
                                       "sets none of its own")

    def check(self, ctx: TableContext) -> VmSettings:
        table = ctx.raw.get(ctx.table) or {}
        hardware = ctx.raw.get("hardware") or {}
        ram = hardware.get("ram_mb") if isinstance(hardware, dict) else None
        if "memory_mb" not in table and isinstance(ram, int) and not isinstance(ram, bool):
            return replace(self, memory_mb=max(256, min(ram, DEFAULT_MEMORY_CAP_MB)))
        return self

    @classmethod
    def from_profile(cls, profile: object) -> VmSettings:
        """The checked [qemu] settings of a loaded profile."""
        s = getattr(profile, "transport_settings", None)
        if not isinstance(s, VmSettings):
            from harness.errors import ConfigError

            raise ConfigError(f"{getattr(profile, 'path', 'profile')}: transport = "
                              f"{getattr(profile, 'transport', '?')!r} is not \"qemu\"; "
                              "it has no [qemu] settings")
        return s
