"""Goal: the dashboard for 1 000 campaigns x 8 devices renders in under 10 s, the
page is under 8 MB, and it opens in headless Chromium in under 3 s.

    python tests/benchmarks/bench_dashboard.py [--campaigns 1000] [--devices 8]
        [--screenshot docs/img/dashboard-1000.png]

The store is filled with synthetic records (tests/support/farm_history.py:
60 raw samples each, a weekly failure on one board, a late regression on
another). "Renders" is `render_dashboard` (query + template + write); "opens"
is the page's own time from its first script to every plot drawn (it writes
it into the DOM; read back with --dump-dom), and the whole Chromium run
(browser start included) is printed beside it. Prints PASS/FAIL per goal.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from harness.dashboard import render_dashboard  # noqa: E402
from harness.history.store import open_store  # noqa: E402
from tests.support import chromium  # noqa: E402
from tests.support.farm_history import populate  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--campaigns", type=int, default=1000)
    ap.add_argument("--devices", type=int, default=8)
    ap.add_argument("--screenshot", type=Path, default=None)
    args = ap.parse_args()
    ok = True
    with tempfile.TemporaryDirectory(prefix="gem-hil-bench-dash-") as tmp:
        d = Path(tmp)
        store = open_store(str(d / "history.sqlite"))
        t0 = time.perf_counter()
        populate(store, args.campaigns, args.devices)
        fill = time.perf_counter() - t0
        t0 = time.perf_counter()
        page = render_dashboard(store, d, campaigns=args.campaigns)
        render = time.perf_counter() - t0
        store.close()
        size = page.stat().st_size
        print(f"store: {args.campaigns} campaigns x {args.devices} devices "
              f"({args.campaigns * args.devices} records) written in {fill:.1f} s")
        for label, value, goal, unit in (("render", render, 10.0, "s"),
                                         ("page size", size / 2**20, 8.0, "MB")):
            v = "PASS" if value < goal else "FAIL"
            ok &= v == "PASS"
            print(f"goal: {label} < {goal:g} {unit}; measured {value:.2f} {unit}  {v}")
        reason = chromium.unavailable_reason()
        if reason:
            print(f"chromium: {reason}: open time not measured  FAIL")
            return 1
        dom, wall = chromium.dump_dom(page, budget_ms=60000)
        m = re.search(r'data-rendered-ms="(\d+)"', dom)
        if not m:
            print("chromium: the page did not finish rendering  FAIL")
            return 1
        opened = int(m.group(1)) / 1000
        points = sum(c.count('class="point"') for c in dom.split('<div class="device-plot')[1:])
        v = "PASS" if opened < 3.0 else "FAIL"
        ok &= v == "PASS"
        print(f"goal: opens in Chromium < 3 s; measured {opened:.2f} s to every plot drawn "
              f"({points} points in the DOM; whole headless run incl. browser start "
              f"{wall:.1f} s)  {v}")
        if args.screenshot:
            args.screenshot.parent.mkdir(parents=True, exist_ok=True)
            chromium.screenshot(page, args.screenshot.resolve(), size="1400,1500")
            print(f"screenshot: {args.screenshot}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
