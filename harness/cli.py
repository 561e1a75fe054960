"""`gem-hil`: the harness without pytest.

    gem-hil devices [NAME...] [--check]   list profiles (and whether they answer)
    gem-hil build [--model M --variant V]  build or fetch the cached artifact
    gem-hil bench --device NAME [--json]   build, push, run, gate, write a record
    gem-hil gate --results DIR [--baseline DIR]   release gate over result records
    gem-hil qemu build|up|down pi4         the emulated Raspberry Pi 4 (QEMU arm64 VM)

Exit codes: 0 every budget passed; 1 a budget failed; 2 inconclusive or
invalid run; 3 the run itself failed (device, agent, config).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from harness.errors import HarnessError

EXIT_PASS, EXIT_FAIL, EXIT_INCONCLUSIVE, EXIT_ERROR = 0, 1, 2, 3



def _targets(args: argparse.Namespace) -> Path | None:
    return Path(args.targets_dir) if args.targets_dir else None


def cmd_devices(args: argparse.Namespace) -> int:
    from harness.profiles import available_devices, load_profile

    rows = [("name", "transport", "platform", "runtime", "model", "reachable")]
    problems = []
    names = available_devices(_targets(args))
    unknown = [n for n in args.names if n not in names]
    if unknown:
        print(f"gem-hil: error: unknown device(s) {', '.join(unknown)}; available: "
              f"{', '.join(names)}", file=sys.stderr)
        return EXIT_ERROR
    for name in args.names or names:
        try:
            p = load_profile(name, _targets(args))
        except HarnessError as exc:
            problems.append(str(exc))
            rows.append((name, "?", "?", "?", "?", "invalid profile"))
            continue
        reach = "-"
        if args.check:
            reach = check_reachable(p, args.accept_new_host_key)
        rows.append((p.name, p.transport, p.platform, p.runtime,
                     f"{p.run.model}-{p.run.variant}", reach))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    for msg in problems:
        print(f"error: {msg}", file=sys.stderr)
    return EXIT_ERROR if problems else EXIT_PASS


def check_reachable(profile, accept_new_host_key: bool = False) -> str:
    """One trivial command over the real transport: the cheapest honest check."""
    from harness.transports import open_transport

    try:
        with open_transport(profile, accept_new_host_key) as t:
            res = t.run(["true"], timeout_s=15)
        return "yes" if res.ok else f"no (rc={res.rc})"
    except HarnessError as exc:
        first = str(exc).splitlines()[0]
        return f"no: {first[:100]}"


def cmd_build(args: argparse.Namespace) -> int:
    from harness.artifacts import build_artifact

    art = build_artifact(args.model, args.variant, args.format,
                         Path(args.artifact_cache) if args.artifact_cache else None)
    print(json.dumps({"folder": str(art.folder), "sha256": art.sha256,
                      "files": art.files}, indent=1))
    return EXIT_PASS


def cmd_bench(args: argparse.Namespace) -> int:
    from harness.artifacts import build_artifact, format_for_runtime
    from harness.bench import DeviceSession
    from harness.budgets import parse_budget_override
    from harness.profiles import load_profile
    from harness.report import summary_lines

    profile = load_profile(args.device, _targets(args))
    overrides = dict(parse_budget_override(b) for b in args.budget)
    model = args.gem_model or profile.run.model
    variant = args.gem_variant or profile.run.variant
    if not args.json:
        print(f"building {model}-{variant} for {profile.name} ...", file=sys.stderr)
    art = build_artifact(model, variant, format_for_runtime(profile.runtime),
                         Path(args.artifact_cache) if args.artifact_cache else None)
    from datetime import UTC, datetime

    run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    report_dir = Path(args.report_dir) / f"{run_id}_{profile.name}"
    with DeviceSession(profile, accept_new_host_key=args.accept_new_host_key) as dev:
        if not args.json:
            print(f"running on {profile.name} ({profile.transport}) ...", file=sys.stderr)
        outcome = dev.run_benchmark(art, budget_overrides=overrides, report_dir=report_dir,
                                    run_id=run_id)
    rec = outcome.record
    if args.json:
        print(json.dumps(rec))
    else:
        for line in summary_lines([rec]):
            print(line)
        lat = rec["latency_ms"]
        print(f"\n{lat['count']} samples, p50 {lat['p50_ms']:.3f} ms, p95 {lat['p95_ms']:.3f} "
              f"ms (95% CI {lat['p95_ci_ms'][0]:.3f}-{lat['p95_ci_ms'][1]:.3f}), "
              f"peak RSS {rec['memory']['peak_rss_mb']:.1f} MB, "
              f"harness overhead {rec['harness']['overhead_ms']:.0f} ms")
        print(f"record: {outcome.path}")
        print(f"verdict: {rec['overall_verdict'].upper()}")
    return {"pass": EXIT_PASS, "fail": EXIT_FAIL}.get(rec["overall_verdict"], EXIT_INCONCLUSIVE)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gem-hil", description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n", 1)[1])
    p.add_argument("--targets-dir", default=None, help="folder of device profiles")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("devices", help="list device profiles")
    d.add_argument("names", nargs="*", metavar="NAME", help="only these profiles")
    d.add_argument("--check", action="store_true",
                   help="try to reach each listed device (one trivial command; boots a "
                        "QEMU device)")
    d.add_argument("--accept-new-host-key", action="store_true")
    d.set_defaults(func=cmd_devices)

    def artifact_opts(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--artifact-cache", default=None, help="artifact cache folder")

    b = sub.add_parser("build", help="build (or fetch from cache) a GEM artifact")
    b.add_argument("--model", default="tiny")
    b.add_argument("--variant", default="int8", choices=("fp32", "int8"))
    b.add_argument("--format", default="onnx")
    artifact_opts(b)
    b.set_defaults(func=cmd_build)

    r = sub.add_parser("bench", help="run the GEM benchmark on a device and gate it")
    r.add_argument("--device", default="local")
    r.add_argument("--json", action="store_true", help="print the result record as JSON")
    r.add_argument("--budget", action="append", default=[], metavar="METRIC=VALUE")
    r.add_argument("--report-dir", default="reports")
    r.add_argument("--gem-model", default=None)
    r.add_argument("--gem-variant", default=None, choices=("fp32", "int8"))
    r.add_argument("--accept-new-host-key", action="store_true")
    artifact_opts(r)
    r.set_defaults(func=cmd_bench)

    from harness.gate_cli import add_gate_parser
    from harness.qemu_cli import add_qemu_parser

    add_gate_parser(sub)
    add_qemu_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except HarnessError as exc:
        print(f"gem-hil: error: {exc}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
