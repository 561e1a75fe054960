"""`gem-hil report`: the dashboard, reports/index.html, from the history store."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.cli import ExitCode


def add_report_parser(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser("report", help="render the dashboard (reports/index.html) from the "
                                      "history store",
                       description="Render reports/index.html: per-device trends, the last "
                                   "campaign's table. Opens from disk, no network.")
    r.add_argument("--history", metavar="URL", default=None,
                   help="history store (default: $GEM_HIL_HISTORY, else "
                        "<report-dir>/history.sqlite)")
    r.add_argument("--inventory", type=Path, default=None, metavar="FILE",
                   help="take the store and report folder from this farm.toml")
    r.add_argument("--report-dir", type=Path, default=Path("reports"), metavar="DIR",
                   help="where index.html goes (default: reports)")
    r.add_argument("--campaigns", type=int, default=60, metavar="N",
                   help="campaigns shown in the trends (default 60)")
    r.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    from harness.dashboard import render_dashboard
    from harness.history.store import default_url, open_store

    report_dir = args.report_dir
    url = args.history
    if args.inventory is not None:
        from harness.farm.inventory import load_inventory

        inv = load_inventory(args.inventory, check_profiles=False)
        report_dir = inv.report_root
        url = inv.history_url(url)
    store = open_store(url or default_url(report_dir))
    try:
        path = render_dashboard(store, report_dir, campaigns=args.campaigns)
    finally:
        store.close()
    print(f"dashboard: {path}")
    return ExitCode.PASS
