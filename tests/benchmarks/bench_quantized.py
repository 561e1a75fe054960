"""Quantized variants measured, not assumed: size and top-1 agreement vs fp32, per format.

Usage (from the repo root):
    PYTHONPATH=. python tests/benchmarks/bench_quantized.py --model tiny \
        --format onnx tflite [--n 512] [--cache-dir DIR] [--json]

For each (model, format) it builds (or reuses from the cache) the fp32 and int8
artifacts, then runs both with the host runtime of that format (onnxruntime;
ai-edge-litert for tflite, each row padded to its sequence bucket as the agent
does) on --n evaluation texts the model never trained on (gem.data with seed
1; the artifacts train on seed 0), and prints, per format: the model file
size of each variant, int8/fp32 size, and the share of inputs whose top-1
class matches fp32. Goal (issue 9): int8 at most 0.35x the fp32 size AND at
least 99 % top-1 agreement; each row prints PASS/FAIL beside its figures.
Not a pytest test: figures and the command go into docs/gem.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from gem.artifacts import build_artifact, load_manifest
from gem.config import get_config
from gem.data import generate_dataset
from gem.tokenizer import encode_batch

GOAL_SIZE_RATIO = 0.35
GOAL_AGREEMENT = 0.99


def eval_ids(model: str, n: int) -> np.ndarray:
    """n held-out texts (seed 1: not the training set), right-padded int64."""
    cfg = get_config(model)
    samples = generate_dataset(n_per_domain=-(-n // len(cfg.domains)), seed=1)[:n]
    ids, _ = encode_batch([s.text for s in samples], max_len=cfg.max_len_tokens)
    return ids


def logits(fmt: str, folder: Path, ids: np.ndarray) -> np.ndarray:
    manifest = load_manifest(folder)
    entry = folder / manifest["entrypoint"]
    if fmt == "tflite":
        from gem.export.tflite import make_interpreter, run_padded

        return run_padded(make_interpreter(entry), ids, tuple(manifest["seq_buckets"]),
                          manifest["pad_id"])
    from gem.export.onnx import make_session, run_session

    sess = make_session(entry)
    return np.concatenate([run_session(sess, ids[i:i + 64]) for i in range(0, len(ids), 64)])


def model_bytes(folder: Path) -> int:
    return sum(int(f["size_bytes"]) for f in load_manifest(folder)["files"])


def measure(model: str, fmt: str, n: int, cache_dir: Path | None) -> dict:
    ids = eval_ids(model, n)
    fp32 = build_artifact(model, "fp32", fmt, cache_dir=cache_dir)
    int8 = build_artifact(model, "int8", fmt, cache_dir=cache_dir)
    a, b = logits(fmt, fp32, ids), logits(fmt, int8, ids)
    size_fp32, size_int8 = model_bytes(fp32), model_bytes(int8)
    ratio = size_int8 / size_fp32
    agreement = float(np.mean(a.argmax(-1) == b.argmax(-1)))
    return {"model": model, "format": fmt, "n": len(ids), "fp32_bytes": size_fp32,
            "int8_bytes": size_int8, "size_ratio": round(ratio, 4),
            "top1_agreement": round(agreement, 4),
            "max_abs_logit_diff": round(float(np.max(np.abs(a - b))), 5),
            "size_goal": "PASS" if ratio <= GOAL_SIZE_RATIO else "FAIL",
            "agreement_goal": "PASS" if agreement >= GOAL_AGREEMENT else "FAIL",
            "quantization": load_manifest(int8)["quantization"].get("policy")}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", nargs="+", default=["tiny"])
    ap.add_argument("--format", nargs="+", default=["onnx", "tflite"])
    ap.add_argument("--n", type=int, default=512, help="evaluation inputs (>= 500)")
    ap.add_argument("--cache-dir", type=Path, default=None)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if args.n < 500:
        ap.error("--n must be at least 500 (the issue's minimum)")
    rows = [measure(m, f, args.n, args.cache_dir) for m in args.model for f in args.format]
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        print(f"goal: int8 <= {GOAL_SIZE_RATIO}x fp32 size and >= {GOAL_AGREEMENT:.0%} top-1 "
              "agreement with fp32")
        print(f"{'model':6} {'format':7} {'policy':28} {'n':>4} {'fp32 KiB':>9} {'int8 KiB':>9} "
              f"{'ratio':>6} {'size':>5} {'top-1':>7} {'agree':>5}")
        for r in rows:
            print(f"{r['model']:6} {r['format']:7} {r['quantization']:28} {r['n']:>4} "
                  f"{r['fp32_bytes'] / 1024:>9.1f} {r['int8_bytes'] / 1024:>9.1f} "
                  f"{r['size_ratio']:>6.3f} {r['size_goal']:>5} "
                  f"{r['top1_agreement']:>7.2%} {r['agreement_goal']:>5}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
