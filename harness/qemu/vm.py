"""Boot, find, and stop the emulated Pi 4 (qemu-system-aarch64, TCG).

State of a running VM lives in STATE/<profile>/ (pid file, vm.json with port
and owner, serial log, known_hosts). That folder is the only way a VM is ever
found again: a VM left by a crashed session is recognised by its pid file, and
only if /proc/PID/cmdline shows qemu-system-aarch64 started with THAT pid file
is it treated as ours. Nothing is ever matched or killed by process name.

Owners: "cli" (`gem-hil qemu up`, lives until `down`) or "session" (a pytest or
bench process, recorded by PID). A session-owned VM whose owner PID is gone is
stale and gets stopped; a CLI-owned one is reused.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import ConfigError, ConnectError, TransportError
from harness.qemu.image import ImagePaths
from harness.qemu.recipe import default_cache_dir
from harness.qemu.settings import DEFAULT_MEMORY_CAP_MB, VmSettings  # noqa: F401 (re-exported)

if TYPE_CHECKING:
    from harness.profiles import DeviceProfile

QEMU_BINARY = "qemu-system-aarch64"
GUEST_SSH_PORT = 22
SERIAL_TAIL_LINES = 30


class QemuBootError(ConnectError):
    """The VM did not come up (missing image, kernel panic, no SSH in time)."""


class VmDiedError(TransportError):
    """The VM exited while the harness was using it."""


def default_state_dir() -> Path:
    """Where running VMs are recorded ($GEM_HIL_QEMU_STATE overrides, for tests)."""
    env = os.environ.get("GEM_HIL_QEMU_STATE")
    return Path(env) if env else default_cache_dir() / "run"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def qemu_cmdline(pid: int) -> list[str] | None:
    """argv of a live process, or None (gone, zombie, unreadable)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return raw.decode(errors="replace").split("\0")[:-1] if raw else None


def is_our_qemu(pid: int, pidfile: Path) -> bool:
    """True only for qemu-system-aarch64 started with exactly this pid file.

    A PID recorded by a crashed session may since belong to anything; killing
    it on the strength of the pid file alone could hit an unrelated process.
    """
    argv = qemu_cmdline(pid)
    if not argv or not os.path.basename(argv[0]).startswith(QEMU_BINARY):
        return False
    want = str(pidfile)
    return any(a == "-pidfile" and i + 1 < len(argv) and argv[i + 1] == want
               for i, a in enumerate(argv))


def read_pidfile(pidfile: Path) -> int | None:
    try:
        text = pidfile.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def free_loopback_port() -> int:
    """A port free on 127.0.0.1 right now (QEMU binds it a moment later; a lost
    race shows up as a hostfwd error and the boot retries with another)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ssh_banner(port: int, timeout_s: float = 2.0) -> bool:
    """True when sshd in the guest answers. QEMU's hostfwd accepts TCP at once
    even before the guest listens, so a connect alone proves nothing: the
    server's 'SSH-' banner does."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as s:
            s.settimeout(timeout_s)
            return s.recv(8).startswith(b"SSH-")
    except OSError:
        return False


def tail(path: Path, lines: int = SERIAL_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no serial log)"
    return "\n".join(text.splitlines()[-lines:]) or "(serial log is empty)"


@dataclass
class RunningVm:
    """A VM this harness recorded; enough to reach it and to stop it."""

    profile: str
    state_dir: Path
    pid: int
    port: int
    image_dir: str
    image_key: str
    owner: str
    owner_pid: int
    started_at: float
    proc: subprocess.Popen | None = field(default=None, repr=False, compare=False)

    @property
    def pidfile(self) -> Path:
        return self.state_dir / "qemu.pid"

    @property
    def serial_log(self) -> Path:
        return self.state_dir / "serial.log"

    @property
    def known_hosts(self) -> Path:
        return self.state_dir / "known_hosts"

    @property
    def client_key(self) -> Path:
        return Path(self.image_dir) / "id_ed25519"

    def alive(self) -> bool:
        if self.proc is not None:
            return self.proc.poll() is None
        return is_our_qemu(self.pid, self.pidfile)

    def serial_tail(self, lines: int = SERIAL_TAIL_LINES) -> str:
        return tail(self.serial_log, lines)

    def ssh_command(self) -> list[str]:
        """The OpenSSH command a person can paste to log into the VM."""
        return ["ssh", "-p", str(self.port), "-i", str(self.client_key), "-o",
                f"UserKnownHostsFile={self.known_hosts}", "-o", "StrictHostKeyChecking=yes",
                "root@127.0.0.1"]

    def as_json(self) -> dict[str, Any]:
        return {"profile": self.profile, "pid": self.pid, "port": self.port,
                "image_dir": self.image_dir, "image_key": self.image_key, "owner": self.owner,
                "owner_pid": self.owner_pid, "started_at": self.started_at}


def vm_state_dir(profile_name: str, state_root: Path | None) -> Path:
    return Path(state_root or default_state_dir()) / profile_name


def _clear_state(state_dir: Path) -> None:
    for name in ("qemu.pid", "vm.json", "known_hosts"):
        (state_dir / name).unlink(missing_ok=True)


def find_vm(profile_name: str, state_root: Path | None = None) -> RunningVm | None:
    """The recorded VM of this profile if it is still running; stale records
    (dead PID, or a PID that now belongs to another program) are removed."""
    sdir = vm_state_dir(profile_name, state_root)
    pid = read_pidfile(sdir / "qemu.pid")
    try:
        info = json.loads((sdir / "vm.json").read_text())
    except (OSError, ValueError):
        info = None
    if pid is None or not is_our_qemu(pid, sdir / "qemu.pid"):
        if pid is not None or info is not None:
            _clear_state(sdir)
        return None
    if info is None or info.get("pid") != pid:
        # a qemu of ours without its record (crash between the two writes): we
        # cannot reach it safely (unknown port), so it can only be stopped
        info = {"pid": pid, "port": 0, "image_dir": "", "image_key": "", "owner": "session",
                "owner_pid": -1, "started_at": 0.0}
    fields = ("pid", "port", "image_dir", "image_key", "owner", "owner_pid", "started_at")
    try:
        return RunningVm(profile=profile_name, state_dir=sdir,
                         **{k: info[k] for k in fields})
    except KeyError:
        return RunningVm(profile=profile_name, state_dir=sdir, pid=pid, port=0, image_dir="",
                         image_key="", owner="session", owner_pid=-1, started_at=0.0)


def is_stale(vm: RunningVm) -> bool:
    """A session-owned VM whose session is gone (crashed or killed)."""
    return vm.owner != "cli" and (vm.owner_pid <= 0 or not _pid_alive(vm.owner_pid))


def boot_vm(profile: DeviceProfile, image: ImagePaths, owner: str = "session",
            state_root: Path | None = None, settings: VmSettings | None = None,
            log: Any = None) -> RunningVm:
    """Start QEMU for profile with image and wait until sshd answers.

    Raises QemuBootError with the serial log's tail when the image is
    incomplete, QEMU exits, the kernel panics or SSH does not answer within
    boot_timeout_s. The VM is stopped before raising: no half-booted leftovers.
    """
    s = settings or VmSettings.from_profile(profile)
    import shutil

    qemu = shutil.which(QEMU_BINARY)
    if qemu is None:
        raise ConfigError(f"{profile.path}: transport = \"qemu\" needs {QEMU_BINARY}: "
                          "apt-get install qemu-system-arm")
    for what, path in (("kernel", image.kernel), ("initrd", image.initrd),
                       ("root filesystem", image.rootfs), ("client key", image.client_key),
                       ("host key", image.host_key_pub)):
        if not path.is_file():
            raise QemuBootError(f"{profile.name}: the image's {what} {path} is missing; rebuild "
                                f"it with `gem-hil qemu build {s.image}` (or delete {image.dir} "
                                "and build again)")
    sdir = vm_state_dir(profile.name, state_root)
    sdir.mkdir(parents=True, exist_ok=True, mode=0o700)
    leftover = find_vm(profile.name, state_root)
    if leftover is not None:
        raise QemuBootError(f"{profile.name}: a VM is already running (qemu pid {leftover.pid}, "
                            f"state {sdir}); stop it first with `gem-hil qemu down "
                            f"{profile.name}`")
    last_error = ""
    for _attempt in range(3):
        port = free_loopback_port()
        vm = _start(profile.name, qemu, s, image, sdir, port, owner)
        ok, last_error = _wait_for_ssh(vm, s.boot_timeout_s)
        if ok:
            return vm
        stop_vm(vm, grace_s=0)
        if "host forwarding" not in last_error:
            break
    raise QemuBootError(f"{profile.name}: the VM did not come up: {last_error}\n"
                        f"--- serial log tail ({sdir / 'serial.log'}) ---\n"
                        f"{tail(sdir / 'serial.log')}")


def _start(name: str, qemu: str, s: VmSettings, image: ImagePaths, sdir: Path, port: int,
           owner: str) -> RunningVm:
    pidfile = sdir / "qemu.pid"
    serial = sdir / "serial.log"
    stderr_path = sdir / "qemu.stderr"
    serial.write_bytes(b"")
    known = f"[127.0.0.1]:{port} {' '.join(image.host_key_pub.read_text().split()[:2])}\n"
    fd = os.open(sdir / "known_hosts", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(known)
    argv = [
        qemu, "-M", "virt", "-cpu", s.cpu, "-smp", str(s.smp), "-m", str(s.memory_mb),
        "-display", "none", "-monitor", "none", "-serial", f"file:{serial}",
        "-kernel", str(image.kernel), "-initrd", str(image.initrd),
        "-append", "console=ttyAMA0 root=/dev/vda rw panic=-1",
        # -snapshot: writes go to a temporary overlay, the cached image stays clean
        "-drive", f"file={image.rootfs},format=raw,if=none,id=hd0", "-snapshot",
        "-device", "virtio-blk-pci,drive=hd0",
        # restrict=on: the guest reaches nothing but the one forwarded port
        "-netdev", f"user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:{port}-:{GUEST_SSH_PORT}",
        # romfile= : no PXE boot ROM (efi-virtio.rom is a Recommends that a minimal
        # install lacks, and the kernel is given directly, so the VM needs none)
        "-device", "virtio-net-pci,netdev=n0,romfile=", "-device", "virtio-rng-pci",
        "-no-reboot", "-pidfile", str(pidfile),
    ]
    with open(stderr_path, "wb") as errf:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=errf, stderr=errf,
                                start_new_session=True)
    vm = RunningVm(profile=name, state_dir=sdir, pid=proc.pid, port=port,
                   image_dir=str(image.dir), image_key=image.key, owner=owner,
                   owner_pid=os.getpid(), started_at=time.time(), proc=proc)
    (sdir / "vm.json").write_text(json.dumps(vm.as_json(), indent=2) + "\n")
    return vm


def _wait_for_ssh(vm: RunningVm, timeout_s: float) -> tuple[bool, str]:
    deadline = time.monotonic() + timeout_s
    t0 = time.monotonic()
    while time.monotonic() < deadline:
        if not vm.alive():
            err = (vm.state_dir / "qemu.stderr").read_text(errors="replace").strip()
            return False, (f"QEMU exited during boot (after {time.monotonic() - t0:.1f} s)"
                           + (f": {err[-600:]}" if err else ""))
        text = vm.serial_log.read_text(errors="replace") if vm.serial_log.exists() else ""
        if "Kernel panic" in text:
            return False, "the guest kernel panicked"
        if "gem-hil initramfs: FAILED" in text:
            return False, "the initramfs could not mount the root filesystem"
        if ssh_banner(vm.port):
            return True, ""
        time.sleep(0.5)
    return False, (f"sshd in the guest did not answer on 127.0.0.1:{vm.port} within "
                   f"boot_timeout_s={timeout_s:g} s (raise it in [qemu] of the profile if the "
                   "machine is busy)")


def _signal_if_ours(vm: RunningVm, sig: int) -> None:
    if vm.proc is not None:
        if vm.proc.poll() is None:
            vm.proc.send_signal(sig)
    elif is_our_qemu(vm.pid, vm.pidfile):
        os.kill(vm.pid, sig)


def _wait_gone(vm: RunningVm, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while True:
        if not vm.alive():
            if vm.proc is not None:
                vm.proc.wait()
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.2)


def stop_vm(vm: RunningVm, grace_s: float = 20.0, poweroff: Any = None) -> str:
    """Stop the VM: guest poweroff (poweroff callable, e.g. over SSH), then
    SIGTERM, then SIGKILL, each after a grace period. Returns how it ended.

    The PID is re-checked against /proc/PID/cmdline before every signal.
    """
    how = "already stopped"
    if vm.alive():
        how = "powered off"
        if poweroff is not None and grace_s > 0:
            try:
                poweroff()
            except Exception as exc:  # noqa: BLE001 - best effort; signals follow
                how = f"powered off after a failed request ({exc})"
        if not _wait_gone(vm, grace_s if poweroff is not None else 0):
            how = "terminated (SIGTERM)"
            _signal_if_ours(vm, signal.SIGTERM)
            if not _wait_gone(vm, 5.0):
                how = "killed (SIGKILL)"
                _signal_if_ours(vm, signal.SIGKILL)
                _wait_gone(vm, 5.0)
    _clear_state(vm.state_dir)
    return how


def ssh_poweroff(vm: RunningVm, timeout_s: float = 15.0) -> None:
    """Ask the guest to power off through OpenSSH (used when no transport is
    open, e.g. `gem-hil qemu down`). busybox init then syncs, unmounts and
    powers off; QEMU (-no-reboot) exits."""
    subprocess.run([*vm.ssh_command()[:-1], "-o", "BatchMode=yes", "-o",
                    f"ConnectTimeout={int(timeout_s)}", "root@127.0.0.1", "busybox", "poweroff"],
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=timeout_s, check=False)
