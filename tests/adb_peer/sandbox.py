"""The emulated Pixel 6's file system and shell, inside a host folder.

Mapping (kept simple and honest, not a container):
- Device paths under /data, /sdcard, /storage, /sys and /vendor live under
  SANDBOX/<same path>. Sync requests map any absolute device path this way
  and refuse names that would resolve outside SANDBOX.
- Shell commands run with the host's /bin/sh, cwd SANDBOX/data/local/tmp,
  after a textual rewrite of those prefixes when they start a word
  (``/data/local/tmp/x`` -> ``SANDBOX/data/local/tmp/x``); output is mapped
  back (SANDBOX prefix removed), so the host sees device paths. Only the
  command line is rewritten: a script that names /data/... inside its own
  text would reach the host's real /data, so test scripts use relative paths
  (the shell's cwd is the sandbox's /data/local/tmp).
  /proc is NOT mapped: processes are real host processes, so /proc/PID/status
  is the real kernel's and VmHWM is a real measurement.
- Android-only tools (dumpsys, getprop, settings, input, svc, taskset) are
  small scripts in SANDBOX/system/bin, first on PATH. They answer with the
  recorded Pixel 6 samples in tests/data/android (tests may override one
  answer to inject a fault, see override()). taskset records the requested
  mask and runs the command unpinned: this host has no big cores.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

SAMPLES_DIR = Path(__file__).resolve().parent.parent / "data" / "android"
MAPPED_PREFIXES = ("/data", "/sdcard", "/storage", "/sys", "/vendor")
_PREFIX_RE = re.compile(r"(?<![\w./~-])(" + "|".join(re.escape(p) for p in MAPPED_PREFIXES)
                        + r")(?=/|\b|$)")

# Rates (mW; energy in mWs = mW x seconds of uptime) at which the emulated
# ODPM rails accumulate energy, so two reads of the dump differ like a device's.
_RAIL_RATE_MW = {"CPU(BIG)": 1450.0, "CPU(MID)": 310.0, "CPU(LITTLE)": 220.0,
                 "Memory": 290.0, "System": 160.0}

_DUMPSYS = r'''#!{python}
"""Emulated dumpsys: recorded Pixel 6 answers (tests/data/android)."""
import os, re, sys, time
root = {root!r}
samples = {samples!r}
def sample(name):
    ov = os.path.join(root, ".peer", "override", name)
    path = ov if os.path.exists(ov) else os.path.join(samples, name)
    with open(path) as f:
        return f.read()
args = sys.argv[1:]
svc = args[0] if args else ""
if svc == "meminfo":
    target = args[-1] if len(args) > 1 else ""
    if target.isdigit() and not os.path.exists("/proc/" + target):
        sys.stdout.write(sample("dumpsys_meminfo_no_process.txt").replace("99999", target))
    else:
        text = sample("dumpsys_meminfo_pid.txt")
        if target.isdigit():
            text = text.replace("pid 12881", "pid " + target)
        sys.stdout.write(text)
elif svc == "android.hardware.power.stats.IPowerStats/default":
    text = sample("dumpsys_power_stats.txt")
    if not os.path.exists(os.path.join(root, ".peer", "override", "dumpsys_power_stats.txt")):
        rates = {rates!r}
        up = float(open("/proc/uptime").read().split()[0])
        def bump(m):
            name, val = m.group(1), float(m.group(2))
            sub = name.split(":")[-1]
            return m.group(0).replace(m.group(2), "%.2f" % (val + rates.get(sub, 5.0) * up))
        text = re.sub(r"(\S+)\s+(\d+\.\d+) mWs", bump, text)
    sys.stdout.write(text)
elif svc == "thermalservice":
    sys.stdout.write(sample("dumpsys_thermalservice.txt"))
elif svc == "deviceidle":
    with open(os.path.join(root, ".peer", "log"), "a") as log:
        log.write("dumpsys " + " ".join(args) + "\n")
    if args[1:2] == ["force-idle"]:
        print("Now forced in to deep idle mode")
    elif args[1:2] == ["unforce"]:
        pass
elif svc == "battery":
    with open(os.path.join(root, ".peer", "log"), "a") as log:
        log.write("dumpsys " + " ".join(args) + "\n")
else:
    print("Can't find service: " + svc, file=sys.stderr)
'''

_GETPROP = r'''#!{python}
import re, sys
text = open({path!r}).read()
props = dict(re.findall(r"^\[([^\]]+)\]: \[([^\]]*)\]$", text, re.M))
if len(sys.argv) > 1:
    print(props.get(sys.argv[1], ""))
else:
    sys.stdout.write(text)
'''

_LOGGING_NOOP = '''#!/bin/sh
echo "$(basename "$0") $*" >> {log}
'''

_SETTINGS = '''#!/bin/sh
echo "settings $*" >> {log}
store={store}
case "$1" in
  get) v=$(grep "^$2/$3=" "$store" 2>/dev/null | tail -n1 | cut -d= -f2-); echo "${{v:-null}}";;
  put) echo "$2/$3=$4" >> "$store";;
esac
'''

_TASKSET = '''#!/bin/sh
# The emulated Pixel 6 has no big cores on this host: record the mask, run unpinned.
echo "taskset $*" >> {log}
[ "$1" = "-a" ] && shift
shift
exec "$@"
'''


class DeviceSandbox:
    """A folder that plays the device's file system."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self.bin_dir = self.root / "system" / "bin"
        self.home = self.root / "data" / "local" / "tmp"

    # -- setup ------------------------------------------------------------

    def populate(self) -> DeviceSandbox:
        for sub in ("data/local/tmp", "sdcard", "system/bin", ".peer/override"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        log = self.root / ".peer" / "log"
        log.touch()
        snapshot = SAMPLES_DIR / "sysfs_snapshot.tsv"
        for line in snapshot.read_text().splitlines():
            if not line or line.startswith("#"):
                continue
            dev_path, value = line.split("\t", 1)
            host = self.map_path(dev_path)
            host.parent.mkdir(parents=True, exist_ok=True)
            host.write_text(value + "\n")
        iio = self.map_path("/sys/bus/iio/devices/iio:device0")
        iio.mkdir(parents=True, exist_ok=True)
        shutil.copy(SAMPLES_DIR / "iio_energy_value.txt", iio / "energy_value")
        (iio / "name").write_text("s2mpg10-odpm\n")
        shutil.copy(SAMPLES_DIR / "battery_uevent.txt",
                    self.map_path("/sys/class/power_supply/battery/uevent"))
        scripts = {
            "dumpsys": _DUMPSYS.format(python=sys.executable, root=str(self.root),
                                       samples=str(SAMPLES_DIR), rates=_RAIL_RATE_MW),
            "getprop": _GETPROP.format(python=sys.executable,
                                       path=str(SAMPLES_DIR / "getprop.txt")),
            "settings": _SETTINGS.format(log=log, store=self.root / ".peer" / "settings"),
            "taskset": _TASKSET.format(log=log),
            "input": _LOGGING_NOOP.format(log=log),
            "svc": _LOGGING_NOOP.format(log=log),
        }
        for name, text in scripts.items():
            path = self.bin_dir / name
            path.write_text(text)
            path.chmod(0o755)
        return self

    def override(self, sample_name: str, text: str | None) -> None:
        """Make the emulated device answer sample_name with text (a fault),
        or restore the recorded answer when text is None."""
        path = self.root / ".peer" / "override" / sample_name
        if text is None:
            path.unlink(missing_ok=True)
        else:
            path.write_text(text)

    def log_lines(self) -> list[str]:
        return (self.root / ".peer" / "log").read_text().splitlines()

    # -- mapping ----------------------------------------------------------

    def map_path(self, device_path: str) -> Path:
        """Host path of a device path; never outside the sandbox."""
        if not device_path.startswith("/"):
            device_path = "/data/local/tmp/" + device_path
        host = (self.root / device_path.lstrip("/")).resolve()
        if host != self.root and self.root not in host.parents:
            raise PermissionError(f"{device_path!r} resolves outside the device sandbox")
        return host

    def rewrite_command(self, command: str) -> str:
        return _PREFIX_RE.sub(lambda m: str(self.root) + m.group(1), command)

    def shell_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k in ("LANG", "LC_ALL", "TZ")}
        env.update({
            "PATH": f"{self.bin_dir}:{Path(sys.executable).parent}:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": str(self.home), "TMPDIR": str(self.home), "ANDROID_DATA": "/data",
            "SHELL": "/bin/sh", "USER": "shell",
        })
        return env


class OutputUnmapper:
    """Removes the sandbox prefix from a byte stream, even when a chunk
    boundary cuts it in two (the tail that could start it is held back)."""

    def __init__(self, root: Path) -> None:
        self.needle = str(root).encode()
        self.held = b""

    def feed(self, chunk: bytes) -> bytes:
        data = (self.held + chunk).replace(self.needle, b"")
        keep = 0
        for k in range(min(len(self.needle) - 1, len(data)), 0, -1):
            if self.needle.startswith(data[-k:]):
                keep = k
                break
        self.held = data[len(data) - keep:] if keep else b""
        return data[: len(data) - keep] if keep else data

    def flush(self) -> bytes:
        out, self.held = self.held, b""
        return out
