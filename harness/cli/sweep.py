"""`gem-hil sweep`: the design-space sweep over devices x models x variants x formats."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.cli import ExitCode
from harness.plan import add_argparse_options


def _csv(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def add_sweep_parser(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser(
        "sweep", help="run a grid of models x variants x formats on devices; Pareto report",
        description="Benchmark every combination of --devices, --models, --variants and "
                    "--formats (one `gem-hil bench` run each, artifacts from the cache), then "
                    "render <report-dir>/sweep.html: quality against latency, memory and "
                    "energy per device with the Pareto front, each point linked to its "
                    "record. Progress is kept in <report-dir>/sweep-state.json: run the same "
                    "command again after an interruption and finished points are not redone.")
    s.add_argument("--devices", type=_csv, required=True, metavar="A,B",
                   help="device profiles, comma separated")
    s.add_argument("--variants", type=_csv, required=True, metavar="V,W",
                   help="artifact variants, e.g. fp32,int8,sparse50-mix,gptq8-mix")
    s.add_argument("--models", type=_csv, default=["tiny"], metavar="M,N",
                   help="GEM configs (model size), default tiny")
    s.add_argument("--formats", type=_csv, default=None, metavar="F,G",
                   help="artifact formats, e.g. onnx,tflite (default: each device's own)")
    s.add_argument("--report-dir", default="reports/sweep", metavar="DIR",
                   help="the sweep's folder: state file, records, sweep.html "
                        "(default reports/sweep)")
    s.add_argument("--quality", choices=("device", "host"), default="device",
                   help="device (default): also run the eval benchmark at every point, "
                        "quality from the device's predictions; host: skip it and use the "
                        "build's host evaluation (labelled host in the report)")
    add_argparse_options(s, ["--targets-dir", "--budget", "--artifact-cache",
                             "--accept-new-host-key"])
    s.set_defaults(func=cmd_sweep)


def cmd_sweep(args: argparse.Namespace) -> int:
    from gem.config import config_names
    from harness.errors import ConfigError
    from harness.profiles import VARIANTS
    from harness.sweep import grid, run_sweep
    from harness.sweep_report import render_sweep

    bad = [v for v in args.variants if v not in VARIANTS]
    if bad:
        raise ConfigError(f"--variants: unknown {', '.join(bad)}; known: {', '.join(VARIANTS)}")
    bad = [m for m in args.models if m not in config_names()]
    if bad:
        raise ConfigError(f"--models: unknown {', '.join(bad)}; known: "
                          f"{', '.join(config_names())}")
    points = grid(args.devices, args.models, args.variants, args.formats or [None])
    values = {"targets_dir": args.targets_dir, "artifact_cache": args.artifact_cache,
              "budget": args.budget, "accept_new_host_key": args.accept_new_host_key}
    report_dir = Path(args.report_dir)
    result = run_sweep(points, values, report_dir,
                       say=lambda m: print(m, file=sys.stderr, flush=True),
                       quality=args.quality)
    page = render_sweep(result.state, report_dir)
    failed = [k for k, e in result.state["points"].items() if e["status"] == "failed"]
    print(f"sweep: {len(result.ran)} points run, {len(result.skipped)} already finished "
          f"(resumed), {len(failed)} failed")
    for k in failed:
        print(f"  failed: {k}: {result.state['points'][k].get('error')}")
    print(f"state: {report_dir / 'sweep-state.json'}")
    print(f"report: {page}")
    return ExitCode.ERROR if failed else ExitCode.PASS
