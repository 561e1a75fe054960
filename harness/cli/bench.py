"""`gem-hil build` and `gem-hil bench`: one artifact, one device, one run."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from harness.cli import ExitCode
from harness.plan import add_argparse_options
from harness.profiles import VARIANTS

#: which overall verdict maps to which exit code
VERDICT_EXIT = {"pass": ExitCode.PASS, "fail": ExitCode.FAIL}


def add_build_parser(sub: argparse._SubParsersAction) -> None:
    b = sub.add_parser("build", help="build (or fetch from cache) a GEM artifact")
    b.add_argument("--model", default="tiny")
    b.add_argument("--variant", default="int8", choices=VARIANTS)
    b.add_argument("--format", default="onnx")
    add_argparse_options(b, ["--artifact-cache"])
    b.set_defaults(func=cmd_build)


def add_bench_parser(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser("bench", help="run the GEM benchmark on a device and gate it")
    add_argparse_options(r, ["--device", "--targets-dir", "--report-dir", "--budget",
                             "--gem-model", "--gem-variant", "--ab-variant",
                             "--artifact-cache", "--accept-new-host-key"])
    r.add_argument("--json", action="store_true", help="print the result record as JSON")
    r.set_defaults(func=cmd_bench)


def cmd_build(args: argparse.Namespace) -> int:
    from harness.artifacts import build_artifact

    art = build_artifact(args.model, args.variant, args.format,
                         Path(args.artifact_cache) if args.artifact_cache else None)
    print(json.dumps({"folder": str(art.folder), "sha256": art.sha256,
                      "files": art.files}, indent=1))
    return ExitCode.PASS


def cmd_bench(args: argparse.Namespace) -> int:
    from harness.plan import make_plan

    plan = make_plan(vars(args))
    say = (lambda _msg: None) if args.json else (lambda msg: print(msg, file=sys.stderr))
    say(f"building {plan.label} for {plan.profile.name} ...")
    art = plan.build_artifact()
    ab = plan.build_artifact(plan.ab_variant) if plan.ab_variant else None
    from harness import progress

    with plan.open_device() as dev, \
            progress.task(f"{plan.profile.name} ({plan.profile.transport})") as shown:
        dev.progress = shown.update
        outcome = dev.run_benchmark(art, budget_overrides=plan.budget_overrides,
                                    report_dir=plan.report_dir, run_id=plan.run_id,
                                    ab_baseline=ab)
    rec = outcome.record
    if args.json:
        print(json.dumps(rec))
    else:
        from harness.report import summary_lines

        for line in summary_lines([rec]):
            print(line)
        lat = rec["latency_ms"]
        lo, hi = (_ms(v) for v in lat["p95_ci_ms"])
        print(f"\n{lat['count']} samples ({lat['effective_sample_size']:.0f} effective, "
              f"autocorrelation inflation {lat['variance_inflation']:.2f}), p50 "
              f"{lat['p50_ms']:.3f} ms, p95 {lat['p95_ms']:.3f} ms (95% CI {lo}-{hi}), "
              f"peak RSS {_mb(rec['memory']['peak_rss_mb'])}, "
              f"harness overhead {rec['harness']['overhead_ms']:.0f} ms")
        if rec.get("ab"):
            c = rec["ab"]["comparison"]
            b = rec["ab"]["baseline_artifact"]
            print(f"A/B vs {b['model']}-{b['variant']} (interleaved): {c['verdict'].upper()}: "
                  f"{c['reason']}")
        stopping = rec.get("stopping") or {}
        print(f"stopped: {stopping.get('reason') or stopping.get('stopped_by')}"
              + (f" ({stopping['why_not_sequential']})" if stopping.get("why_not_sequential")
                 else ""))
        print(f"record: {outcome.path}")
        print(f"verdict: {rec['overall_verdict'].upper()}")
    return VERDICT_EXIT.get(rec["overall_verdict"], ExitCode.INCONCLUSIVE)


def _ms(value: float | None) -> str:
    return "unbounded" if value is None else f"{value:.3f}"


def _mb(value: float | None) -> str:
    return "null (no sensor)" if value is None else f"{value:.1f} MB"
