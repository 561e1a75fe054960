"""Harness overhead per benchmark on `local`, beyond the agent's own run time.

    python tests/benchmarks/bench_overhead.py [--runs 10] [--fixture-artifact]

Overhead = wall time of DeviceSession.run_benchmark (hash checks, push skip,
agent launch bookkeeping, statistics, verdicts, schema validation, record write)
minus the agent process's own wall time. Goal (issue 2): under 300 ms.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))  # run as a script: the repository root, for harness and tests

from harness.artifacts import build_artifact, load_artifact  # noqa: E402
from harness.bench import DeviceSession  # noqa: E402
from harness.profiles import load_profile  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--fixture-artifact", action="store_true",
                    help="use the torch-free test artifact instead of GEM tiny")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="gem-hil-bench-"))
    if args.fixture_artifact:
        from tests.support.onnx_artifact import make_artifact

        art = load_artifact(make_artifact(tmp / "artifact"))
    else:
        art = build_artifact("tiny", "int8")
    profile = load_profile("local")
    profile = replace(profile, run=replace(profile.run, min_duration_s=1.0))
    overheads, walls, agents, counts = [], [], [], []
    with DeviceSession(profile) as dev:
        for _ in range(args.runs):
            rec = dev.run_benchmark(art, report_dir=tmp / "reports").record
            h = rec["harness"]
            overheads.append(h["overhead_ms"])
            walls.append(h["wall_s"])
            agents.append(h["agent_wall_s"])
            counts.append(rec["latency_ms"]["count"])
    print(f"artifact {art.label} ({art.sha256[:12]}), {args.runs} runs, "
          f"~{int(statistics.median(counts))} samples per run")
    print(f"harness overhead ms: median {statistics.median(overheads):.1f}, "
          f"max {max(overheads):.1f} (first run includes the push: {overheads[0]:.1f})")
    print(f"wall s median {statistics.median(walls):.3f}, agent s median "
          f"{statistics.median(agents):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
