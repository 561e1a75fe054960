"""`transport = "qemu"`: boot (or reuse) the VM, then talk SSH to it.

The engine sees a plain Transport. Two things differ from SSH to a board:
close() also stops a VM this process started, and an SSH failure is checked
against the VM's process, so "the VM died" (with its serial log tail) is
reported instead of a bare "connection reset".
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from harness.errors import TransportError
from harness.qemu.image import ImagePaths, build_image
from harness.qemu.vm import (
    QemuBootError,
    RunningVm,
    VmDiedError,
    VmSettings,
    boot_vm,
    find_vm,
    is_stale,
    ssh_banner,
    stop_vm,
    vm_state_dir,
)
from harness.transports.base import CommandResult, Transport
from harness.transports.ssh_settings import SshSettings

if TYPE_CHECKING:
    from harness.profiles import DeviceProfile
    from harness.transports.ssh import SshTransport

log = logging.getLogger(__name__)
T = TypeVar("T")

_lock = threading.Lock()
#: VMs in use by this process: state dir -> [vm, open transports, started here]
_in_use: dict[str, list] = {}


def link_settings(vm: RunningVm, s: VmSettings) -> SshSettings:
    """How to reach the VM over SSH: its forwarded loopback port, the image's
    client key and the host key recorded when the image was built."""
    return SshSettings(host="127.0.0.1", user="root", key_file=str(vm.client_key), port=vm.port,
                       known_hosts=str(vm.known_hosts), accept_new_host_key=False,
                       connect_timeout_s=s.connect_timeout_s,
                       command_timeout_s=s.command_timeout_s)


class VmTransport(Transport):
    """SSH into the VM, with VM-aware errors and VM-stopping close()."""

    kind = "qemu"

    def __init__(self, profile: DeviceProfile, vm: RunningVm, inner: SshTransport,
                 settings: VmSettings) -> None:
        super().__init__(profile.name)
        self.vm = vm
        self.inner = inner
        self.settings = settings
        self._closed = False

    def _guard(self, what: str, fn: Callable[[], T]) -> T:
        if not self.vm.alive():
            raise self._died(what)
        try:
            return fn()
        except TransportError as exc:
            if self._dead_soon():
                raise self._died(what) from exc
            raise

    def _dead_soon(self, within_s: float = 3.0) -> bool:
        """Whether the VM is (about to be) gone. QEMU's sockets close while
        the process is still exiting, so the SSH error can arrive a moment
        before the process is reapable: give it a short grace."""
        deadline = time.monotonic() + within_s
        while self.vm.alive():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)
        return True

    def _died(self, what: str) -> VmDiedError:
        return VmDiedError(
            f"{self.device_name}: the VM (qemu pid {self.vm.pid}) is gone while {what}; records "
            f"already written are kept. Serial log tail ({self.vm.serial_log}):\n"
            f"{self.vm.serial_tail()}")

    def run(self, argv: Sequence[str], timeout_s: float | None = None,
            env: Mapping[str, str] | None = None, cwd: str | None = None) -> CommandResult:
        return self._guard(f"running {list(argv)[:3]}",
                           lambda: self.inner.run(argv, timeout_s=timeout_s, env=env, cwd=cwd))

    def remote_sha256(self, remote: str) -> str | None:
        return self._guard(f"hashing {remote!r}", lambda: self.inner.remote_sha256(remote))

    def _upload(self, local: Path, remote_tmp: str) -> str | None:
        return self._guard(f"uploading {local.name}",
                           lambda: self.inner._upload(local, remote_tmp))

    def _download(self, remote: str, local_tmp: Path) -> None:
        self._guard(f"pulling {remote!r}", lambda: self.inner._download(remote, local_tmp))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        _release(str(self.vm.state_dir), self)


def _release(key: str, t: VmTransport) -> None:
    """Drop one user of the VM; the last user in the process that booted it stops it."""
    def poweroff() -> None:
        t.inner.run(["busybox", "poweroff"], timeout_s=10)

    _release_vm(key, t.device_name, t.vm, t.settings, poweroff)
    t.inner.close()


def _release_vm(key: str, name: str, vm: RunningVm, s: VmSettings,
                poweroff: Callable[[], None] | None) -> None:
    with _lock:
        entry = _in_use.get(key)
        last = entry is not None and entry[1] <= 1
        if entry is not None:
            entry[1] -= 1
            if last:
                del _in_use[key]
        started_here = bool(entry and entry[2])
    if last and started_here:
        how = stop_vm(vm, grace_s=s.stop_grace_s, poweroff=poweroff)
        log.info("%s: VM %s", name, how)


def _usable(vm: RunningVm, image: ImagePaths, profile: DeviceProfile) -> bool:
    """Reuse a recorded VM only when it runs the current image and answers."""
    if vm.image_key != image.key:
        if vm.owner == "cli":
            raise QemuBootError(
                f"{profile.name}: the running VM (qemu pid {vm.pid}, started by `gem-hil qemu "
                f"up`) runs image {vm.image_key or '?'} but the recipe now builds {image.key}; "
                f"restart it: gem-hil qemu down {profile.name} && gem-hil qemu up {profile.name}")
        return False
    return vm.port > 0 and ssh_banner(vm.port, timeout_s=10)


def acquire_vm(profile: DeviceProfile, owner: str = "session", image: ImagePaths | None = None,
               state_root: Path | None = None) -> tuple[RunningVm, bool]:
    """A running VM for profile: reused when recorded and healthy, else booted.

    Returns (vm, started_by_this_call). A VM left by a crashed session is
    stopped first (stale); one owned by another live session is refused,
    because that session will stop it under our feet.
    """
    s = VmSettings.from_profile(profile)
    image = image or build_image(s.image)
    vm = find_vm(profile.name, state_root)
    if vm is not None:
        if is_stale(vm):
            how = stop_vm(vm, grace_s=0)
            log.warning("%s: stopped a stale VM (qemu pid %d, its session %d is gone): %s",
                        profile.name, vm.pid, vm.owner_pid, how)
        elif vm.owner != "cli" and vm.owner_pid != os.getpid():
            raise QemuBootError(
                f"{profile.name}: the VM (qemu pid {vm.pid}) belongs to another running "
                f"session (pid {vm.owner_pid}); wait for it, or stop it with "
                f"`gem-hil qemu down {profile.name} --force`")
        elif _usable(vm, image, profile):
            return vm, False
        else:
            how = stop_vm(vm, grace_s=0)
            log.warning("%s: recorded VM (qemu pid %d) was unusable; %s, booting a new one",
                        profile.name, vm.pid, how)
    return boot_vm(profile, image, owner=owner, state_root=state_root, settings=s), True


def attach(profile: DeviceProfile, s: VmSettings, state_root: Path | None = None) -> RunningVm:
    """Boot (or reuse) the profile's VM and count this process as one more user.

    The image is built first when the cache lacks it (needs root and about a
    minute; see docs/qemu.md). Every attach is paired with one close() of the
    VmTransport from wrap(), or with detach() when no transport was made.
    """
    key = str(vm_state_dir(profile.name, state_root))
    with _lock:
        entry = _in_use.get(key)
        if entry is not None and entry[0].alive():
            entry[1] += 1
            return entry[0]
        vm, started = acquire_vm(profile, state_root=state_root)
        _in_use[key] = [vm, 1, started]
        return vm


def detach(profile: DeviceProfile, vm: RunningVm, s: VmSettings) -> None:
    """Undo one attach() when the link into the VM could not be made."""
    _release_vm(str(vm.state_dir), profile.name, vm, s, poweroff=None)


def wrap(profile: DeviceProfile, vm: RunningVm, link: SshTransport, s: VmSettings
         ) -> VmTransport:
    """The VM-aware transport over link, checked with one trivial command."""
    t = VmTransport(profile, vm, link, s)
    try:
        res = t.run(["true"], timeout_s=s.connect_timeout_s + 10)
        if not res.ok:
            raise QemuBootError(f"{profile.name}: `true` failed in the VM (rc={res.rc}): "
                                f"{res.stderr.strip()}")
    except BaseException:
        t.close()
        raise
    return t

