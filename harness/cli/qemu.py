"""`gem-hil qemu build|up|down|status`: the emulated Pi 4 by hand.

    gem-hil qemu build pi4        build the arm64 image (or find it in the cache)
    gem-hil qemu up pi4           boot the VM and leave it running (prints ssh command)
    gem-hil qemu status pi4       is it running, on which port
    gem-hil qemu down pi4         power it off

A VM started with `up` is reused by `pytest --device=qemu-pi4` and by
`gem-hil bench --device qemu-pi4`, which then leave it running; a VM they
boot themselves they also stop. DEVICE may be the profile (qemu-pi4) or its
short name (pi4).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from harness.cli import ExitCode
from harness.errors import ConfigError, UnknownDeviceError
from harness.plan import add_argparse_options

EXIT_OK, EXIT_ERROR = ExitCode.PASS, ExitCode.ERROR


def add_qemu_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add `qemu` with its sub-commands to the gem-hil parser."""
    q = subparsers.add_parser("qemu", help="build, boot and stop the emulated Pi 4",
                              description=__doc__.splitlines()[0],
                              epilog=__doc__.split("\n", 1)[1],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    qsub = q.add_subparsers(dest="qemu_command", required=True)
    b = qsub.add_parser("build", help="build the image or reuse it from the cache")
    b.add_argument("image", nargs="?", default="pi4", help="image or profile name (pi4)")
    b.add_argument("--cache-dir", default=None,
                   help="image cache (default $GEM_HIL_CACHE/qemu or ~/.cache/gem-hil/qemu)")
    add_argparse_options(b, ["--targets-dir"])
    for name, text in (("up", "boot the VM and leave it running"),
                       ("down", "power the VM off"), ("status", "show the VM's state")):
        sp = qsub.add_parser(name, help=text)
        sp.add_argument("device", nargs="?", default="qemu-pi4",
                        help="profile name (qemu-pi4) or short name (pi4)")
        if name == "down":
            sp.add_argument("--force", action="store_true",
                            help="stop it even if a running session owns it")
        add_argparse_options(sp, ["--targets-dir"])
    q.set_defaults(func=cmd_qemu)
    return q


def _profile(name: str, targets_dir: Path | None):  # -> DeviceProfile
    """NAME if it is a qemu profile, else qemu-NAME (`up pi4` means qemu-pi4:
    pi4 itself is the real board)."""
    from harness.profiles import load_profile

    candidates = [name] if name.startswith("qemu-") else [name, f"qemu-{name}"]
    for cand in candidates:
        try:
            p = load_profile(cand, targets_dir)
        except UnknownDeviceError:
            continue
        except ConfigError:
            if cand != candidates[-1]:
                continue  # `up pi4`: an invalid real-board pi4.toml does not hide qemu-pi4
            raise
        if p.transport == "qemu":
            return p
    raise ConfigError(f"no QEMU device {name!r}: none of "
                      f"{', '.join(f'{c}.toml' for c in candidates)} is on the profile search "
                      "path with transport = \"qemu\"")


def _image_name(name: str, targets_dir: Path | None) -> str:
    """`build qemu-pi4` means the image that profile boots; `build pi4` the image."""
    from harness.profiles import load_profile

    try:
        p = load_profile(name, targets_dir)
    except UnknownDeviceError:
        return name
    except ConfigError:
        if name.startswith("qemu-"):
            raise
        return name  # `build pi4`: the image, whatever targets/pi4.toml says
    if p.transport != "qemu":
        return name
    from harness.qemu.vm import VmSettings

    return VmSettings.from_profile(p).image


def cmd_qemu(args: argparse.Namespace) -> int:
    targets = Path(args.targets_dir) if getattr(args, "targets_dir", None) else None
    cmd = args.qemu_command
    if cmd == "build":
        from harness.qemu.image import build_image

        t0 = time.monotonic()
        img = build_image(_image_name(args.image, targets),
                          Path(args.cache_dir) if args.cache_dir else None)
        print(f"image {img.dir.name} ready in {time.monotonic() - t0:.1f} s: {img.dir}")
        return EXIT_OK

    from harness.qemu.vm import find_vm, is_stale, ssh_poweroff, stop_vm

    profile = _profile(args.device, targets)
    if cmd == "up":
        from harness.qemu.transport import acquire_vm

        t0 = time.monotonic()
        vm, started = acquire_vm(profile, owner="cli")
        if started:
            print(f"{profile.name}: booted in {time.monotonic() - t0:.1f} s")
        else:
            print(f"{profile.name}: already running (owner: {vm.owner})")
        _print_vm(vm)
        return EXIT_OK
    vm = find_vm(profile.name)
    if vm is None:
        print(f"{profile.name}: not running")
        return EXIT_OK
    if cmd == "status":
        stale = " (STALE: its session is gone; `down` or the next run cleans it)" \
            if is_stale(vm) else ""
        print(f"{profile.name}: running{stale}")
        _print_vm(vm)
        return EXIT_OK
    # down
    import os

    if vm.owner != "cli" and not is_stale(vm) and vm.owner_pid != os.getpid() \
            and not args.force:
        print(f"{profile.name}: the VM belongs to a running session (pid {vm.owner_pid}); "
              "use --force to stop it anyway", file=sys.stderr)
        return EXIT_ERROR
    from harness.qemu.vm import VmSettings

    grace = VmSettings.from_profile(profile).stop_grace_s
    how = stop_vm(vm, grace_s=grace, poweroff=(lambda: ssh_poweroff(vm)) if vm.port else None)
    print(f"{profile.name}: {how}")
    return EXIT_OK


def _print_vm(vm) -> None:  # vm: RunningVm
    print(f"  qemu pid {vm.pid}, ssh on 127.0.0.1:{vm.port}, image {vm.image_key}, "
          f"owner {vm.owner}")
    print(f"  serial log: {vm.serial_log}")
    if vm.port:
        print(f"  log in:     {shlex.join(vm.ssh_command())}")
