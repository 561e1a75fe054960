"""The dashboard of the emulated farm after a few nights: docs/img/dashboard.png.

    python tests/benchmarks/emulated_farm_dashboard.py [--nights 5] [--out docs/img/dashboard.png]

Builds the fault-injected farm of tests/integration/test_farm_netns.py (real
sshd boards in network namespaces; one with 5 % packet loss, one rate-limited),
runs one campaign per "night" (the sshd of b-kill is killed mid-benchmark on
night 2, b-hole is black-holed on night 4; both are healed the next night),
renders `gem-hil report` and screenshots it in headless Chromium. Needs root.
Prints each night's outcome and the dashboard's figures.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.support import chromium, netns_farm  # noqa: E402
from tests.support.procs import processes  # noqa: E402

BOARDS = ["b-clean", "b-loss", "b-rate", "b-kill", "b-hole"]


def agent_running(board: str) -> bool:
    return any(any("gem_agent" in a for a in p.argv) and any(f"gem-hil-{board}/" in a
                                                            for a in p.argv)
               for p in processes())


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nights", type=int, default=5)
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "img" / "dashboard.png")
    args = ap.parse_args()
    reason = netns_farm.unavailable_reason() or chromium.unavailable_reason()
    if reason:
        print(f"cannot run: {reason}")
        return 1
    tmp = Path(tempfile.mkdtemp(prefix="gem-hil-farm-docs-"))
    farm = netns_farm.NetnsFarm(BOARDS, Path("/tmp")).start()
    try:
        targets = tmp / "targets"
        targets.mkdir()
        for name, board in farm.boards.items():
            board.profile(targets, min_duration_s=3.0 if name in ("b-kill", "b-hole") else 1.0,
                          max_duration_s=5.0, min_count=50, timeout_s=40.0)
        inv = tmp / "farm.toml"
        lines = ["[farm]", 'name = "nightly"', 'targets_dir = "targets"', "heartbeat_s = 1",
                 "lease_expiry_s = 10", "transport_retries = 1", "retry_backoff_s = 0.5", ""]
        for name in BOARDS:
            lines += ["[[device]]", f'name = "{name}"', ""]
        inv.write_text("\n".join(lines))
        farm.loss("b-loss", 5)
        farm.rate_limit("b-rate", "2mbit")
        for night in range(1, args.nights + 1):
            fault = {2: "b-kill", 4: "b-hole"}.get(night)
            done = threading.Event()

            def inject(fault=fault, done=done):
                while fault and not done.is_set():
                    if agent_running(fault):
                        time.sleep(1.0)
                        if fault == "b-kill":
                            farm.boards[fault].kill_sshd()
                        else:
                            farm.black_hole(fault)
                        return
                    time.sleep(0.2)

            t = threading.Thread(target=inject, daemon=True)
            t.start()
            t0 = time.perf_counter()
            res = farm.run(["-m", "harness.cli", "farm", "run", "--inventory", str(inv)])
            done.set()
            t.join(5)
            camp = sorted((tmp / "reports").glob("nightly-*"))[-1]
            summary = json.loads((camp / "campaign.json").read_text())["devices"]
            print(f"night {night} ({fault or 'no fault'}): exit {res.returncode} in "
                  f"{time.perf_counter() - t0:.0f} s: "
                  + ", ".join(f"{n} {d['verdict']}" for n, d in summary.items()))
            if fault:
                farm.heal(fault)
        res = farm.run(["-m", "harness.cli", "report", "--inventory", str(inv)])
        page = tmp / "reports" / "index.html"
        print(res.stdout.strip(), f"({page.stat().st_size / 2**20:.1f} MB)")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        chromium.screenshot(page, args.out.resolve(), size="1400,2600")
        print(f"screenshot: {args.out}")
    finally:
        farm.cleanup()
        farm.remove_created_user()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
