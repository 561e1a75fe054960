"""`gem-hil devices`: which profiles exist, whether they are valid, whether they answer."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.cli import ExitCode
from harness.errors import HarnessError
from harness.plan import add_argparse_options


def add_parser(sub: argparse._SubParsersAction) -> None:
    d = sub.add_parser("devices", help="list device profiles (valid? reachable?)",
                       description="List device profiles. With NAMEs, exit 3 when one of "
                                   "them is invalid or (with --check) unreachable; a plain "
                                   "listing reports every profile and exits 0.")
    d.add_argument("names", nargs="*", metavar="NAME", help="only these profiles")
    d.add_argument("--check", action="store_true",
                   help="try to reach each listed device (one trivial command; boots a "
                        "QEMU device)")
    add_argparse_options(d, ["--targets-dir", "--accept-new-host-key"])
    d.set_defaults(func=cmd_devices)


def cmd_devices(args: argparse.Namespace) -> int:
    from harness.profiles import profile_paths

    targets = Path(args.targets_dir) if args.targets_dir else None
    paths = profile_paths(targets)
    unknown = [n for n in args.names if n not in paths]
    if unknown:
        print(f"gem-hil: error: unknown device(s) {', '.join(unknown)}; available: "
              f"{', '.join(paths)}", file=sys.stderr)
        return ExitCode.ERROR
    rows = [("name", "transport", "platform", "runtime", "format", "model", "state")]
    problems: list[str] = []
    for name in args.names or list(paths):
        state, row = _describe(name, paths[name], targets, args)
        rows.append(row)
        if state:
            problems.append(f"{name}: {state}")
    from harness.report import text_table

    for line in text_table(rows[0], rows[1:]):
        print(line)
    for msg in problems:
        print(f"  {msg}", file=sys.stderr)
    return ExitCode.ERROR if problems and args.names else ExitCode.PASS


def _describe(name: str, path: Path, targets: Path | None, args: argparse.Namespace
              ) -> tuple[str, tuple[str, ...]]:
    """(problem or "", table row) for one profile."""
    from harness.profiles import load_profile

    try:
        p = load_profile(name, targets)
    except HarnessError as exc:
        return f"INVALID: {exc}", (name, "?", "?", "?", "?", "?", "INVALID")
    state, problem = "valid", ""
    if args.check:
        problem = check_reachable(p, args.accept_new_host_key)
        state = "reachable" if not problem else "UNREACHABLE"
    from harness.artifacts import format_for_runtime

    return problem, (p.name, p.transport, p.platform, p.runtime, format_for_runtime(p.runtime),
                     f"{p.run.model}-{p.run.variant}", state)


def check_reachable(profile, accept_new_host_key: bool = False) -> str:  # -> "" when it answers
    """One trivial command over the real link: the cheapest honest check.

    Returns "" when the device answered, else the whole reason (never cut: the
    fix is usually at its end)."""
    from harness.device import open_device

    try:
        with open_device(profile, accept_new_host_key=accept_new_host_key) as dev:
            res = dev.transport.run(["true"], timeout_s=15)
            behind = getattr(dev.platform, "check_reachable", None)
            if res.ok and behind is not None:  # a device behind the link (an iPhone on a Mac)
                behind(dev.transport)
        return "" if res.ok else f"unreachable: `true` exited {res.rc}: {res.stderr.strip()}"
    except HarnessError as exc:
        return f"unreachable: {exc}"
