"""Measure GEM artifact builds and host inference latency in onnxruntime.

Usage (from the repo root):
    PYTHONPATH=. python tests/benchmarks/bench_gem_export.py --model tiny edge \
        --variant fp32 int8 --cache-dir /tmp/gem-bench-cache [--json]

For each (model, variant) it builds (or reuses from the cache) the artifact,
then reports: parameter counts, model file size, build/train/export seconds
(from the manifest, i.e. measured when the artifact was built; pass a fresh
--cache-dir to measure them now), and the p50/p90 latency of one forward pass
(batch 1) at several sequence lengths and thread counts, timed with
perf_counter_ns around session.run only, after a warmup. Not a pytest test:
the machine is shared and noisy, so figures go to docs/gem.md with the command.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from gem.artifacts import build_artifact, load_manifest
from gem.export.onnx import make_session, run_session

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.benchmarks.goals import judge, met, word  # noqa: E402

#: the paper's latency budget, for a forward pass of up to 128 tokens (DESIGN.md: a Pi 4;
#: this host is faster, so a FAIL here means the model is far too slow for any board)
GOAL_P50_MS, GOAL_SEQ = 100.0, 128


def latency_ms(folder: Path, seq: int, threads: int, warmup: int, runs: int) -> dict[str, float]:
    sess = make_session(folder / "model.onnx", threads=threads)
    ids = np.random.default_rng(seq).integers(0, 256, size=(1, seq), dtype=np.int64)
    for _ in range(warmup):
        run_session(sess, ids)
    samples = []
    for _ in range(runs):
        t = time.perf_counter_ns()
        run_session(sess, ids)
        samples.append((time.perf_counter_ns() - t) / 1e6)
    samples.sort()
    return {
        "p50_ms": round(statistics.median(samples), 3),
        "p90_ms": round(samples[int(0.9 * (len(samples) - 1))], 3),
        "min_ms": round(samples[0], 3),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", nargs="+", default=["tiny"])
    ap.add_argument("--variant", nargs="+", default=["fp32", "int8"])
    ap.add_argument("--cache-dir", type=Path, default=None)
    ap.add_argument("--seq", type=int, nargs="+", default=[16, 64, 128, 256])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--json", action="store_true", help="print one JSON document")
    args = ap.parse_args(argv)
    rows = []
    for model in args.model:
        for variant in args.variant:
            t = time.perf_counter()
            folder = build_artifact(model, variant, cache_dir=args.cache_dir)
            wall = time.perf_counter() - t
            m = load_manifest(folder)
            row = {
                "model": model,
                "variant": variant,
                "params_total": m["params_total"],
                "params_active_per_token": m["params_active_per_token"],
                "files": {f["name"]: f["size_bytes"] for f in m["files"]},
                "build_seconds": m["build"]["build_seconds"],
                "train_seconds": m["build"]["train_seconds"],
                "export_seconds": m["build"]["export_seconds"],
                "train_accuracy": m["build"]["train_accuracy"],
                "holdout_accuracy": m["build"]["holdout_accuracy"],
                "build_artifact_call_seconds": round(wall, 3),
                "quantization": {
                    k: m["quantization"].get(k) for k in ("matmul_int8", "matmul_fp32")
                },
                "latency": {
                    f"seq{seq}_t{th}": latency_ms(folder, seq, th, args.warmup, args.runs)
                    for seq in args.seq
                    if seq <= m["max_len_tokens"]
                    for th in args.threads
                },
            }
            short = {k: v["p50_ms"] for k, v in row["latency"].items()
                     if int(k[3:].split("_")[0]) <= GOAL_SEQ}
            worst = max(short.values(), default=None)
            row["goal"] = {"p50_ms_at_most": GOAL_P50_MS, "up_to_seq_len_tokens": GOAL_SEQ,
                           "worst_p50_ms": worst,
                           "verdict": "NOT MEASURED" if worst is None
                           else word(met(worst, GOAL_P50_MS, "max"))}
            rows.append(row)
            if not args.json:
                print(json.dumps(row, indent=1), flush=True)
                print(f"{model}-{variant}: worst p50 up to {GOAL_SEQ} tokens "
                      + (f"{worst:.3f} ms {judge(worst, GOAL_P50_MS, 'max', ' ms')}"
                         if worst is not None else "not measured (no --seq <= "
                         f"{GOAL_SEQ})"), flush=True)
    if args.json:
        doc = {
            "host": {"machine": platform.machine(), "python": platform.python_version()},
            "rows": rows,
        }
        print(json.dumps(doc, indent=1))
    return 0 if all(r["goal"]["verdict"] == "PASS" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
