"""`gem-hil`: the harness without pytest.

    gem-hil devices [NAME...] [--check]   list profiles (valid? reachable?)
    gem-hil build [--model M --variant V]  build or fetch the cached artifact
    gem-hil bench [--device NAME] [--json] build, push, run, gate, write a record
    gem-hil gate --results DIR [--baseline DIR]   release gate over result records
    gem-hil qemu build|up|down|status pi4  the emulated Raspberry Pi 4 (QEMU arm64 VM)
    gem-hil farm run|status|release|return|worker --inventory farm.toml   the device farm
    gem-hil report [--history URL]         the dashboard: reports/index.html
    gem-hil sweep --devices A,B --variants V,W   design-space sweep, Pareto report

Profiles are searched in --targets-dir DIR (given before or after the
sub-command), then $GEM_HIL_TARGETS, ~/.config/gem-hil/targets, and the
profiles shipped with gem-hil.

Exit codes (every sub-command):
  0 pass   1 a budget failed or a metric regressed   2 inconclusive or invalid run
  3 the run itself failed (device, agent, build, unreachable device)
  64 usage error (bad option or value)   128+N interrupted by signal N (130 = Ctrl-C)
"""

from __future__ import annotations

import argparse
import os
import sys
from enum import IntEnum
from typing import NoReturn

from harness.errors import HarnessError


class ExitCode(IntEnum):
    """One meaning per number, shared by bench, gate, devices and qemu.

    64 is sysexits' EX_USAGE: argparse's own 2 would read as "inconclusive"
    to a CI script that gates on the exit code.
    """

    PASS = 0
    FAIL = 1
    INCONCLUSIVE = 2
    ERROR = 3
    USAGE = 64

    @staticmethod
    def interrupted(signum: int) -> int:
        return 128 + signum


class Parser(argparse.ArgumentParser):
    """argparse that exits with ExitCode.USAGE, not 2, on a bad command line."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(ExitCode.USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> Parser:
    from harness.cli import bench, devices, farm, gate, qemu, report, sweep

    doc = __doc__ or ""
    p = Parser(prog="gem-hil", description=doc.splitlines()[0],
               formatter_class=argparse.RawDescriptionHelpFormatter,
               epilog=doc.split("\n", 1)[1])
    # also accepted here, before the sub-command; the sub-command's own wins
    p.add_argument("--targets-dir", dest="global_targets_dir", default=None, metavar="DIR",
                   help="folder of your own device profiles (also after the sub-command)")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)
    devices.add_parser(sub)
    bench.add_build_parser(sub)
    bench.add_bench_parser(sub)
    gate.add_gate_parser(sub)
    qemu.add_qemu_parser(sub)
    farm.add_farm_parser(sub)
    report.add_report_parser(sub)
    sweep.add_sweep_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    from harness import interrupts

    args = build_parser().parse_args(argv)
    if getattr(args, "targets_dir", None) is None:
        args.targets_dir = args.global_targets_dir
    try:
        with interrupts.signals_as_exceptions():  # SIGTERM too unwinds, cleaning up the device
            return int(args.func(args))
    except HarnessError as exc:
        print(f"gem-hil: error: {exc}", file=sys.stderr)
        return ExitCode.ERROR
    except KeyboardInterrupt as exc:  # one line, no traceback (see harness.interrupts)
        print(f"gem-hil: {interrupts.describe(exc)}", file=sys.stderr)
        return ExitCode.interrupted(interrupts.signum_of(exc))


def entry() -> NoReturn:
    """The `gem-hil` console script: main(), then exit without tearing the
    interpreter down.

    Why: once numpy and jsonschema are loaded, Python's own shutdown (module
    teardown, final garbage collection) took ~70 ms of every `gem-hil bench`,
    a quarter of the harness's overhead budget, for nothing a finished command
    needs. Everything that matters is done by then: records are written and
    closed atomically, devices and VMs are closed by their context managers,
    nothing in gem-hil registers atexit handlers. Output is flushed first.
    In-process callers (tests) use main(), which returns normally.
    """
    try:
        code = main()
    except BrokenPipeError:  # `gem-hil bench --json | head`: the reader left; say nothing
        os._exit(128 + 13)  # as a process killed by SIGPIPE
    except SystemExit as exc:  # argparse's usage errors, --help
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if exc.code is not None and not isinstance(exc.code, int):
            print(exc.code, file=sys.stderr)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more can be said
            pass
    os._exit(code)
