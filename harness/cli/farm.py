"""`gem-hil farm`: run the inventory's devices, see and change their state.

    gem-hil farm run --inventory farm.toml [--device NAME ...] [--history URL]
    gem-hil farm status --inventory farm.toml
    gem-hil farm release DEVICE --inventory farm.toml    free a device's lease
    gem-hil farm return DEVICE --inventory farm.toml     back to service after quarantine
    gem-hil farm worker --inventory farm.toml --host-name H   serve H's queue (PostgreSQL)
    gem-hil farm enqueue --inventory farm.toml           a campaign as jobs for the workers
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.cli import ExitCode


def add_farm_parser(sub: argparse._SubParsersAction) -> None:
    f = sub.add_parser("farm", help="the device farm: campaigns, leases, health",
                       description=(__doc__ or "").split("\n", 1)[1],
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    fs = f.add_subparsers(dest="farm_command", required=True, parser_class=type(f))

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--inventory", required=True, type=Path, metavar="FILE",
                       help="the farm's farm.toml (docs/farm.md)")
        p.add_argument("--history", metavar="URL", default=None,
                       help="history store (default: the inventory's, else $GEM_HIL_HISTORY, "
                            "else <report_dir>/history.sqlite)")

    r = fs.add_parser("run", help="run every device of the inventory in parallel")
    common(r)
    r.add_argument("--device", action="append", default=[], metavar="NAME",
                   help="only this device (repeatable)")
    r.add_argument("--campaign", default=None, metavar="ID", help="campaign id (default: "
                   "<farm name>-<time>)")
    r.set_defaults(func=cmd_run)
    s = fs.add_parser("status", help="health, lease holder and last result of each device")
    common(s)
    s.set_defaults(func=cmd_status)
    for name, func, what in (("release", cmd_release, "free a device's lease (its holder's "
                              "run stops at its next heartbeat)"),
                             ("return", cmd_return, "put a quarantined (bad) or maintenance "
                              "device back in service (unknown: the next run checks it)"),
                             ("maintenance", cmd_maintenance, "take a device out of service")):
        p = fs.add_parser(name, help=what)
        p.add_argument("device", metavar="DEVICE")
        common(p)
        p.set_defaults(func=func)
    w = fs.add_parser("worker", help="serve one farm host's queue (procrastinate, PostgreSQL)")
    common(w)
    w.add_argument("--host-name", required=True, metavar="H",
                   help="this farm host's name (its queue: farm-H)")
    w.add_argument("--concurrency", type=int, default=8,
                   help="devices run at once by this worker (default 8)")
    w.add_argument("--wait", action="store_true", default=True, help=argparse.SUPPRESS)
    w.add_argument("--once", action="store_true",
                   help="stop once the queue is empty (tests, cron)")
    w.set_defaults(func=cmd_worker)
    e = fs.add_parser("enqueue", help="a campaign as one job per device on its host's queue")
    common(e)
    e.add_argument("--campaign", default=None, metavar="ID")
    e.set_defaults(func=cmd_enqueue)


def _open(args: argparse.Namespace, check_profiles: bool = False):
    from harness.farm.inventory import load_inventory
    from harness.history.store import open_store

    inv = load_inventory(args.inventory, check_profiles=check_profiles)
    url = inv.history_url(args.history)
    return inv, url, open_store(url)


def cmd_run(args: argparse.Namespace) -> int:
    from harness.farm.campaign import Campaign, LiveTable

    inv, url, store = _open(args, check_profiles=True)
    try:
        camp = Campaign(inv, store, url, args.campaign, args.device or None)
        print(f"campaign {camp.id}: {len(camp.entries)} device(s), reports in {camp.folder}",
              file=sys.stderr)
        table = LiveTable()
        try:
            code = camp.run(table)
        finally:
            table.close()
        _print_summary(camp)
        print(f"campaign summary: {camp.folder / 'campaign.json'}")
        return code
    finally:
        store.close()


def _print_summary(camp) -> None:
    from harness.report import text_table

    rows = []
    for name, p in camp.progress.items():
        why = "; ".join(f.get("reason", "")[:100] for f in p.failures) or \
            "; ".join(r.get("reason", "") for r in p.records if r.get("reason"))
        rows.append([name, p.health or "-", str(len(p.records)), p.verdict.upper(),
                     f"{p.elapsed_s:.1f} s", why])
    for line in text_table(["device", "health", "records", "verdict", "wall", "why"], rows):
        print(line)


def cmd_status(args: argparse.Namespace) -> int:
    from harness.farm.leases import state
    from harness.report import text_table

    inv, _url, store = _open(args)
    try:
        rows = []
        for d in inv.devices:
            row = store.device(d.name)
            lease = state(store, d.name)
            holder = "-"
            if lease.holder:
                holder = f"{lease.holder} (until {lease.expires_utc:%H:%M:%S} UTC" + \
                    (")" if lease.active else ", EXPIRED)")
            rows.append([d.name, d.host or "-", row.health if row else "unknown", holder,
                         f"{row.last_verdict or '-'} {row.last_run_utc:%Y-%m-%d %H:%M}"
                         if row and row.last_run_utc else "-",
                         (row.health_note or "")[:80] if row else ""])
        for line in text_table(["device", "host", "health", "lease", "last result", "note"],
                               rows):
            print(line)
        return ExitCode.PASS
    finally:
        store.close()


def cmd_release(args: argparse.Namespace) -> int:
    from harness.farm.leases import release, state

    inv, _url, store = _open(args)
    try:
        inv.device(args.device)
        before = state(store, args.device)
        if release(store, args.device):
            print(f"released {args.device} (was held by {before.holder})")
        else:
            print(f"{args.device}: no lease to release")
        return ExitCode.PASS
    finally:
        store.close()


def _set(args: argparse.Namespace, health: str, note: str) -> int:
    from harness.farm.health import set_health

    inv, _url, store = _open(args)
    try:
        inv.device(args.device)
        set_health(store, args.device, health, note)
        print(f"{args.device}: {health} ({note})")
        return ExitCode.PASS
    finally:
        store.close()


def cmd_return(args: argparse.Namespace) -> int:
    return _set(args, "unknown", "returned to service by gem-hil farm return; the next run "
                                 "checks its health")


def cmd_maintenance(args: argparse.Namespace) -> int:
    return _set(args, "maintenance", "taken out of service by gem-hil farm maintenance")


def cmd_worker(args: argparse.Namespace) -> int:
    from harness.farm.queue import run_worker

    inv, url, store = _open(args)
    store.close()
    return run_worker(inv, url, args.host_name, concurrency=args.concurrency, once=args.once)


def cmd_enqueue(args: argparse.Namespace) -> int:
    from harness.farm.queue import enqueue_campaign

    inv, url, store = _open(args, check_profiles=True)
    store.close()
    campaign, jobs = enqueue_campaign(inv, url, args.campaign)
    print(f"campaign {campaign}: {len(jobs)} job(s) queued")
    for device, queue, job_id in jobs:
        print(f"  {device}: queue {queue}, job {job_id}")
    return ExitCode.PASS
