"""`gem-hil gate`: the command-line face of harness.gate.

It also runs alone: `python -m harness.cli.gate --results DIR ...`. The gate's
statistics are imported only when the gate runs, so `gem-hil bench` does not
pay for them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from harness.cli import ExitCode, Parser
from harness.errors import HarnessError


def _configure(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--results", required=True, type=Path, metavar="DIR",
                   help="folder of result records (*.json, searched recursively)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--baseline", type=Path, metavar="DIR",
                     help="folder of baseline result records to check regressions against")
    src.add_argument("--history", metavar="URL",
                     help="history store to take the baseline from: the last N good runs of "
                          "the same device x model x variant (sqlite:///FILE, a file path, or "
                          "postgresql://...; see docs/farm.md)")
    p.add_argument("--last", type=int, default=5, metavar="N",
                   help="with --history: how many good runs form the baseline (default 5)")
    p.add_argument("--targets-dir", "--targets", dest="targets_dir", type=Path, metavar="DIR",
                   default=None,
                   help="your own device profiles, searched before the shipped ones; the "
                        "profiles' current budgets override the records' limits")
    p.add_argument("--no-profiles", action="store_true",
                   help="gate only on the limits stored in the records")
    p.add_argument("--min-effect", type=float, default=0.03, metavar="FRACTION",
                   help="smallest latency change that counts as a regression (default 0.03)")
    p.add_argument("--confidence", type=float, default=0.95,
                   help="confidence of the regression test (default 0.95)")
    p.add_argument("--run-sd", type=float, default=None, metavar="FRACTION",
                   help="the device's run-to-run (boot-to-boot) sd of a run's median, a "
                        "floor for the value estimated from several boots (default: the profile's "
                        "[validity] run_to_run_sd, 0.01)")
    p.add_argument("--lenient-regression", action="store_true",
                   help="treat an inconclusive regression test as a pass")
    p.add_argument("--markdown", type=Path, metavar="FILE",
                   help="also write the Markdown summary here ($GITHUB_STEP_SUMMARY gets it "
                        "too when set)")
    p.add_argument("--json", type=Path, metavar="FILE", dest="json_out",
                   help="write the gate's rows as JSON (for dashboards)")
    p.set_defaults(func=handle_gate)
    return p


def add_gate_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the `gate` sub-command to a `gem-hil` sub-parser set."""
    p = subparsers.add_parser(
        "gate", help="release gate: budgets + regressions over result records",
        description="Apply budgets and regression checks to result records. Exit 0 pass, "
                    "1 fail (budget, regression or a failed run), 2 inconclusive or invalid.")
    return _configure(p)


def handle_gate(args: argparse.Namespace) -> int:
    """Run the gate; print the table; write Markdown; return the exit code."""
    if args.last < 1:
        print("gem-hil gate: --last must be at least 1", file=sys.stderr)
        return ExitCode.USAGE
    if args.history:
        from harness.history.url import normalize_url

        try:
            normalize_url(args.history)
        except HarnessError as exc:
            print(f"gem-hil gate: --history {exc}", file=sys.stderr)
            return ExitCode.USAGE
    if not 0.0 < args.confidence < 1.0 or args.min_effect < 0 or (args.run_sd or 0) < 0:
        print("gem-hil gate: --confidence must be in (0, 1), --min-effect and --run-sd >= 0",
              file=sys.stderr)
        return ExitCode.USAGE
    targets = getattr(args, "targets_dir", None)
    if targets is not None and not Path(targets).is_dir():
        print(f"gem-hil gate: --targets-dir {targets}: not a folder", file=sys.stderr)
        return ExitCode.USAGE
    from harness.gate import render_markdown, render_table, run_gate

    kwargs = dict(use_profiles=not args.no_profiles, min_effect=args.min_effect,
                  confidence=args.confidence, lenient_regression=args.lenient_regression,
                  run_sd=args.run_sd)
    try:
        if args.history:
            report = _gate_on_history(args, targets, kwargs)
        else:
            report = run_gate(args.results, args.baseline, targets, **kwargs)
    except HarnessError as exc:
        print(f"gem-hil gate: {exc}", file=sys.stderr)
        return ExitCode.ERROR
    print(render_table(report))
    md = render_markdown(report)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(md, encoding="utf-8")
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        with open(summary, "a", encoding="utf-8") as f:
            f.write(md)
    if args.json_out:
        args.json_out.write_text(json.dumps(report.as_dict(), indent=1) + "\n", encoding="utf-8")
    return report.exit_code


def _gate_on_history(args: argparse.Namespace, targets, kwargs: dict):
    """The candidate's records against the last N good runs in the store."""
    try:
        from harness.history.baseline import baseline_for
        from harness.history.store import open_store
    except ImportError as exc:
        raise HarnessError(f"--history needs the farm extra (pip install 'gem-hil[farm]'): "
                           f"{exc}") from None
    from harness.gate import gate_records, load_records

    results = load_records(args.results, "--results")
    store = open_store(args.history)
    try:
        baseline = baseline_for(store, [r for _, r in results], last=args.last)
    finally:
        store.close()
    report = gate_records(results, baseline, targets, **kwargs)
    if not baseline:
        report.warnings.append("--history: no good runs of these devices and variants in the "
                               "store before the candidate: regression not checked")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = _configure(Parser(prog="gem-hil gate"))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
