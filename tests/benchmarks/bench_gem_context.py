"""Cost of GEM's context length: prefill time (TTFT) and decode-step time per
doubling of the context, with the ONNX generation graphs in onnxruntime.

Usage (from the repo root):
    PYTHONPATH=. python tests/benchmarks/bench_gem_context.py --model tiny \
        --cache-dir /tmp/gem-bench-cache [--lengths 128 256 512 1024] [--runs 10]

For each length L it times prefill.onnx on an L-token prompt (batch 1, 1
thread) and one decode.onnx step with an L-token KV cache, and prints the
growth factor per doubling. Tokens are bytes. Goal (from the issue): the
context reaches 1024 tokens; the growth per doubling is reported, and PASS
means the 1024-token prefill ran (attention is quadratic, so a factor between
2 and 4 per doubling is expected). Not a pytest test: figures go to
docs/gem.md with the command.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from gem.artifacts import build_artifact, load_manifest
from gem.export.onnx import make_session


def _median_ms(fn, runs: int) -> float:
    """Median of ``runs`` timed calls after one warm-up (min when --stat min)."""
    fn()
    out = []
    for _ in range(runs):
        t = time.perf_counter_ns()
        fn()
        out.append((time.perf_counter_ns() - t) / 1e6)
    return min(out) if _STAT == "min" else statistics.median(out)


_STAT = "median"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--variant", default="fp32")
    ap.add_argument("--cache-dir", type=Path, default=None)
    ap.add_argument("--lengths", type=int, nargs="+", default=[128, 256, 512, 1024])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--artifact-dir", type=Path, default=None,
                    help="an already built artifact folder (instead of --model/--cache-dir)")
    ap.add_argument("--stat", choices=("median", "min"), default="median",
                    help="min is the least disturbed by neighbours on a shared machine")
    args = ap.parse_args(argv)
    global _STAT
    _STAT = args.stat
    folder = args.artifact_dir or build_artifact(args.model, args.variant,
                                                 cache_dir=args.cache_dir)
    gen = load_manifest(folder)["generation"]  # generation graphs are fp32 in both variants
    pre = make_session(folder / gen["prefill"])
    dec = make_session(folder / gen["decode"])
    rows = []
    for n in args.lengths:
        ids = np.random.default_rng(n).integers(0, 256, size=(1, n), dtype=np.int64)
        ttft = _median_ms(lambda ids=ids: pre.run(None, {"input_ids": ids}), args.runs)
        _, k, v, r = pre.run(None, {"input_ids": ids[:, :-1]})
        feeds = {"input_ids": ids[:, -1:], "past_k": k, "past_v": v, "past_route_sum": r}
        step = _median_ms(lambda feeds=feeds: dec.run(None, feeds), args.runs * 5)
        rows.append((n, ttft, step))
    m = load_manifest(folder)
    print(f"{m['model']}-{m['variant']}, onnxruntime 1 thread, {args.stat} of {args.runs} "
          "runs, tokens are bytes")
    print(f"{'context':>8} {'prefill_ms':>11} {'x/doubling':>10} {'decode_step_ms':>15} "
          f"{'x/doubling':>10}")
    for i, (n, ttft, step) in enumerate(rows):
        gp = f"{ttft / rows[i - 1][1]:.2f}" if i else "-"
        gs = f"{step / rows[i - 1][2]:.2f}" if i else "-"
        print(f"{n:>8} {ttft:>11.2f} {gp:>10} {step:>15.3f} {gs:>10}")
    ok = max(args.lengths) >= 1024
    print(f"goal: context >= 1024 tokens runs: {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
