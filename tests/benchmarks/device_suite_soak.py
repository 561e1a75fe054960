"""Run the GEM device suite many times in a row on `local` while this host is
loaded, and count how many runs pass: a device suite that flips on a neighbour's
load is a gate nobody trusts.

    python tests/benchmarks/device_suite_soak.py [--runs 50] [--load-procs N]
        [--device local] [--targets-dir DIR] [--stop-at-first-failure]

Load: N processes (default: one per core) each spinning a pure-Python busy loop
at normal priority for the whole soak, started before the first run and stopped
(by PID, the ones this script started) after the last; whatever else the host
runs comes on top and is reported as the load average before and after. Each
run is a fresh `pytest tests/device --device=local` (one benchmark, as a user
runs it) with its own report folder; the artifact is built (or found in the
cache) once before the timed runs. A run passes when pytest exits 0. Prints one
line per run (exit code, overall verdict, validity and its reasons, p95) and
the goal: all runs pass, PASS/FAIL. Exit status 0 only when every run passed.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.benchmarks.goals import word  # noqa: E402


def _spin() -> None:  # pragma: no cover - runs in the load processes
    x = 0
    while True:
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def one_run(i: int, work: Path, args: argparse.Namespace) -> dict:
    reports = work / f"run-{i:03d}"
    argv = [sys.executable, "-m", "pytest", "tests/device", "-q", "-p", "no:cacheprovider",
            f"--device={args.device}", "--report-dir", str(reports)]
    if args.targets_dir:
        argv.append(f"--targets-dir={args.targets_dir}")
    env = {**os.environ, "GEM_HIL_LOCAL_HOME": str(work / "device-home")}
    t0 = time.monotonic()
    res = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, env=env,
                         stdin=subprocess.DEVNULL, timeout=1800)
    out = {"run": i, "rc": res.returncode, "wall_s": time.monotonic() - t0,
           "tail": (res.stdout + res.stderr)[-1500:]}
    recs = sorted(reports.rglob("*.json"))
    if recs:
        rec = json.loads(recs[-1].read_text())
        v = rec.get("validity") or {}
        sched = ((rec.get("environment") or {}).get("conditioning") or {}).get("scheduling")
        out.update(verdict=rec.get("overall_verdict"), valid=v.get("valid"),
                   stable=(v.get("stability") or {}).get("stable"),
                   fifo=(sched or {}).get("applied"),
                   background_cores=(rec.get("contention") or {}).get("background_cpu_cores"),
                   reasons=v.get("reasons") or [],
                   p95_ms=(rec.get("latency_ms") or {}).get("p95_ms"))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--load-procs", type=int, default=os.cpu_count() or 1,
                    help="busy-loop processes during the soak (default: one per core)")
    ap.add_argument("--device", default="local")
    ap.add_argument("--targets-dir", type=Path)
    ap.add_argument("--stop-at-first-failure", action="store_true")
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="gem-hil-soak-"))
    print(f"warm-up run (builds or finds the artifact, not counted); load average "
          f"{load_average()}", flush=True)
    warm = one_run(0, work, args)
    if warm["rc"] not in (0, 1, 2):
        print(warm["tail"])
        raise SystemExit(f"the warm-up run failed to run at all (exit {warm['rc']})")
    procs = [multiprocessing.Process(target=_spin, daemon=True) for _ in range(args.load_procs)]
    for p in procs:
        p.start()
    print(f"load: {args.load_procs} busy-loop process(es) (PIDs "
          f"{', '.join(str(p.pid) for p in procs)}) on {os.cpu_count()} core(s); "
          f"load average at start {load_average()}", flush=True)
    results = []
    t0 = time.monotonic()
    try:
        for i in range(1, args.runs + 1):
            r = one_run(i, work, args)
            results.append(r)
            p95 = f"{r['p95_ms']:.2f} ms" if r.get("p95_ms") is not None else "-"
            bg = r.get("background_cores")
            print(f"run {i:3d}: exit {r['rc']} verdict {r.get('verdict')} valid "
                  f"{r.get('valid')} stable {r.get('stable')} fifo {r.get('fifo')} background "
                  f"{'-' if bg is None else f'{bg:.2f}'} cores p95 {p95} wall "
                  f"{r['wall_s']:.1f} s load "
                  f"{load_average()}" + (f" reasons: {'; '.join(r['reasons'])}"
                                         if r.get("reasons") else ""), flush=True)
            if r["rc"] != 0:
                print("    " + r["tail"].replace("\n", "\n    ")[-1200:], flush=True)
                if args.stop_at_first_failure:
                    break
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.join(timeout=10)
    passed = sum(r["rc"] == 0 for r in results)
    in_a_row = 0
    for r in results:
        in_a_row = in_a_row + 1 if r["rc"] == 0 else 0
    print(f"\n{passed}/{len(results)} runs passed ({in_a_row} in a row at the end) in "
          f"{time.monotonic() - t0:.0f} s under {args.load_procs} busy loop(s); load average "
          f"at the end {load_average()}")
    print(f"goal: {args.runs}/{args.runs} in a row: {word(passed == args.runs)}")
    print(f"records and logs: {work}")
    return 0 if passed == args.runs else 1


if __name__ == "__main__":
    sys.exit(main())
