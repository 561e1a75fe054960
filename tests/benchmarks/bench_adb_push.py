"""Push throughput: AdbTransport vs Debian's `adb push`, same peer, same run.

    python tests/benchmarks/bench_adb_push.py [--size-mb 50] [--reps 3]

The peer runs as its own process on loopback (so it does not share our GIL).
Reported: median seconds for (a) our raw sync upload, (b) our full push()
(upload + sha256 on the device + rename), (c) `adb push`; goal (a) >= 0.8x
the throughput of (c).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from harness.transports.adb import AdbSettings, AdbTransport, ensure_adb_key  # noqa: E402
from tests.benchmarks.goals import judge, met  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mb", type=int, default=50)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    adb = shutil.which("adb")
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        home = tmp / "home"
        key = ensure_adb_key(home / ".android" / "adbkey")
        payload = tmp / "artifact.bin"
        payload.write_bytes(os.urandom(args.size_mb * 1024 * 1024))
        peer = subprocess.Popen(
            [sys.executable, "-m", "tests.adb_peer", "--sandbox", str(tmp / "device"),
             "--authorized-key", f"{key}.pub"], cwd=REPO, stdout=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)})
        assert peer.stdout is not None
        address = peer.stdout.readline().split()[1]
        env = {"PATH": os.environ["PATH"], "HOME": str(home),
               "ANDROID_ADB_SERVER_PORT": str(free_port())}
        ours = AdbTransport("bench", AdbSettings(address=address, serial=None, key_path=key))
        ours.connect()
        raw, full, real = [], [], []
        try:
            if adb:
                subprocess.run([adb, "connect", address], env=env, capture_output=True,
                               check=True, timeout=30)
            for i in range(args.reps):
                t0 = time.perf_counter()
                ours._upload(payload, f"/data/local/tmp/raw{i}.bin")
                raw.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                ours.push(payload, f"/data/local/tmp/full{i}.bin")
                full.append(time.perf_counter() - t0)
                if adb:
                    t0 = time.perf_counter()
                    subprocess.run([adb, "-s", address, "push", str(payload),
                                    f"/data/local/tmp/adb{i}.bin"], env=env,
                                   capture_output=True, check=True, timeout=300)
                    real.append(time.perf_counter() - t0)
        finally:
            ours.close()
            if adb:
                subprocess.run([adb, "kill-server"], env=env, capture_output=True, timeout=30)
            peer.terminate()
            peer.wait(timeout=10)
    mb = args.size_mb * 1.048576
    med = statistics.median
    print(f"payload {args.size_mb} MiB, {args.reps} reps, medians:")
    print(f"  AdbTransport sync upload : {med(raw):6.2f} s  {mb / med(raw):7.1f} MB/s")
    print(f"  AdbTransport push()      : {med(full):6.2f} s  (upload + device sha256 + mv)")
    if real:
        print(f"  Debian adb push          : {med(real):6.2f} s  {mb / med(real):7.1f} MB/s")
        ratio = med(real) / med(raw)
        print(f"  ratio (ours/adb thrpt)   : {ratio:6.2f}x  {judge(ratio, 0.8, 'min', 'x')}")
        return 0 if met(ratio, 0.8, "min") else 1
    print("  Debian adb not installed (apt-get install adb): goal >= 0.8x adb push NOT MEASURED")
    return 1


if __name__ == "__main__":
    sys.exit(main())
