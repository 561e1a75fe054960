"""`gem-hil build` and `gem-hil bench`: one artifact, one device, one run."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from harness.cli import ExitCode
from harness.plan import OPTION_BY_FLAG, add_argparse_options
from harness.profiles import VARIANTS

#: which overall verdict maps to which exit code
VERDICT_EXIT = {"pass": ExitCode.PASS, "fail": ExitCode.FAIL}


def add_build_parser(sub: argparse._SubParsersAction) -> None:
    b = sub.add_parser("build", help="build (or fetch from cache) a GEM artifact",
                       description="Build (or fetch from the cache) one artifact and print "
                                   "its folder. With --device, build what that profile runs "
                                   "(its model, variant and format; the flags override them) "
                                   "without touching the device.")
    b.add_argument("--device", default=None, metavar="NAME",
                   help="build the artifact this device profile runs, without running it")
    b.add_argument("--model", default=None, help="GEM config (default: the device's "
                   "[run] model, else tiny)")
    b.add_argument("--variant", default=None, choices=VARIANTS,
                   help="default: the device's [run] variant, else int8")
    b.add_argument("--format", default=None, help="artifact format: onnx, tflite or coreml "
                   "(default: the device runtime's format, else onnx); coreml is validated "
                   "here, run only on an Apple device")
    add_argparse_options(b, ["--targets-dir", "--artifact-cache"])
    b.set_defaults(func=cmd_build)


def add_bench_parser(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser("bench", help="run the GEM benchmark on a device and gate it")
    add_argparse_options(r, ["--device", "--targets-dir", "--report-dir", "--budget",
                             "--gem-model", "--gem-variant", "--ab-variant",
                             "--artifact-cache", "--accept-new-host-key"])
    # the shared --gem-format (pytest's name), also spelt --format like build's
    r.add_argument("--gem-format", "--format", **OPTION_BY_FLAG["--gem-format"].kwargs())
    r.add_argument("--json", action="store_true", help="print the result record as JSON")
    r.add_argument("--benchmark", choices=("latency", "eval"), default="latency",
                   help="latency (forward pass + generation timing) or eval (also runs the "
                        "evaluation set on the device and scores quality, docs/quality.md)")
    r.set_defaults(func=cmd_bench)


def cmd_build(args: argparse.Namespace) -> int:
    from harness.artifacts import build_artifact

    cache = Path(args.artifact_cache) if args.artifact_cache else None
    model, variant, fmt = args.model or "tiny", args.variant or "int8", args.format or "onnx"
    device = None
    if args.device:
        from harness.plan import make_plan

        plan = make_plan({"device": args.device, "targets_dir": args.targets_dir,
                          "gem_model": args.model, "gem_variant": args.variant,
                          "gem_format": args.format})
        model, variant, fmt, device = plan.model, plan.variant, plan.fmt, plan.profile.name
    art = build_artifact(model, variant, fmt, cache)
    m = art.manifest
    from harness.artifacts import validate_artifact

    validation = validate_artifact(art)  # Core ML: what can be checked without running it
    print(json.dumps({"folder": str(art.folder), "device": device, "model": m["model"],
                      "variant": m["variant"], "format": m["format"], "sha256": art.sha256,
                      "seq_buckets": m.get("seq_buckets"), "files": art.files,
                      **({"validation": validation} if validation else {})}, indent=1))
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
        outcome = dev.run_benchmark(art, name=getattr(args, "benchmark", "latency"),
                                    budget_overrides=plan.budget_overrides,
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
        summary = rec.get("latency_summary_ms")
        if lat is None and summary:  # a runner without raw samples (benchmark_model)
            print(f"\n{summary['count']} runs by {summary['source']} (its summary only, no "
                  f"samples): mean {summary['mean_ms']:.3f} ms, std {summary['std_ms']:.3f}, "
                  f"min {summary['min_ms']:.3f}, max {summary['max_ms']:.3f} ms, "
                  f"peak memory {_mb(rec['memory']['peak_rss_mb'])}")
        else:
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
        sched = ((rec.get("environment") or {}).get("conditioning") or {}).get("scheduling")
        if sched and sched.get("policy"):
            print(f"timed at {sched['policy']} priority {sched['priority']}" if sched["applied"]
                  else f"real-time priority not applied: {sched['reason']}")
        print(f"record: {outcome.path}")
        print(f"verdict: {rec['overall_verdict'].upper()}")
    return VERDICT_EXIT.get(rec["overall_verdict"], ExitCode.INCONCLUSIVE)


def _ms(value: float | None) -> str:
    return "unbounded" if value is None else f"{value:.3f}"


def _mb(value: float | None) -> str:
    return "null (no sensor)" if value is None else f"{value:.1f} MB"
