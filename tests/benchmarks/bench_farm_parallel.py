"""Goal: 8 emulated boards whose benchmark is dominated by waiting on the device
run as one campaign in at most 1.3x the slowest single board's wall time, on
this 2-core machine (the farm runs devices in parallel, not one after another).

    python tests/benchmarks/bench_farm_parallel.py [--boards 8] [--wait-s 8]

Each "board" is a `local` device (this host) whose interpreter is a wrapper
that waits --wait-s seconds before the agent starts, as a board's runtime
start-up, cooldown or idle baseline does; the agent then measures a short
window. Emulated: the figure is the farm's scheduling overhead, not a device's.
First every board runs alone (a one-device campaign each); then all together.
Prints the goal and PASS/FAIL beside the figure.
"""

from __future__ import annotations

import argparse
import json
import os
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.support.farm_targets import inventory, local_device  # noqa: E402

GOAL = 1.3


def wrapper(folder: Path, wait_s: float) -> Path:
    """An interpreter that waits only before the agent (health checks stay quick)."""
    path = folder / "slow-board-python"
    path.write_text(f"""#!/bin/sh
case "$*" in *gem_agent.py*) sleep {wait_s} ;; esac
exec {sys.executable} "$@"
""")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def campaign(inv: Path, home: Path, devices: list[str] | None = None) -> float:
    argv = [sys.executable, "-m", "harness.cli", "farm", "run", "--inventory", str(inv)]
    for d in devices or []:
        argv += ["--device", d]
    env = dict(os.environ, GEM_HIL_LOCAL_HOME=str(home), PYTHONPATH=str(REPO))
    t0 = time.perf_counter()
    res = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True,
                         stdin=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    # verdicts do not matter here (a loaded host fails budgets and regression checks);
    # every device must have run and written its record
    summary = res.stdout.strip().splitlines()[-1].split("campaign summary: ")[-1]
    devices = json.loads(Path(summary).read_text())["devices"]
    broken = {n: d["failures"] for n, d in devices.items() if d["failures"] or not d["records"]}
    if broken or res.returncode not in (0, 1, 2):
        sys.exit(f"campaign failed ({res.returncode}): {broken}\n{res.stderr[-3000:]}")
    return wall


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--boards", type=int, default=8)
    ap.add_argument("--wait-s", type=float, default=8.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="gem-hil-bench-farm-") as tmp:
        base = Path(tmp)
        py = wrapper(base, args.wait_s)
        names = [f"board-{i}" for i in range(args.boards)]
        for n in names:
            local_device(base / "targets", n, min_duration_s=0.3, max_duration_s=1.0,
                         python=str(py))
        # timing on a shared host is not what is measured: budgets out of the way
        inv = inventory(base / "farm.toml", names,
                        device_extra="budget = { latency_p95_ms = 10000.0 }")
        campaign(inv, base / "home", [names[0]])  # warm: artifact cache, imports
        alone = [campaign(inv, base / "home", [n]) for n in names]
        together = campaign(inv, base / "home")
    slowest = max(alone)
    ratio = together / slowest
    print(f"boards: {args.boards}, device-side wait {args.wait_s:g} s each, "
          f"{os.cpu_count()} CPU(s)")
    print(f"single-board campaigns: {min(alone):.2f}-{slowest:.2f} s (sum "
          f"{sum(alone):.1f} s if run one after another)")
    print(f"all {args.boards} in one campaign: {together:.2f} s")
    verdict = "PASS" if ratio <= GOAL else "FAIL"
    print(f"goal: campaign <= {GOAL}x slowest board; measured {ratio:.2f}x  {verdict}")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
