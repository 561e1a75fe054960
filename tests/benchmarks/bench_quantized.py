"""Quantized variants measured, not assumed: size and top-1 agreement vs fp32, per format.

Usage (from the repo root):
    PYTHONPATH=. python tests/benchmarks/bench_quantized.py --model tiny \
        --format onnx tflite [--n 512] [--cache-dir DIR] [--json]

For each (model, format) it builds (or reuses from the cache) the fp32 artifact
and every quantized variant of that format (onnx: int8; tflite: int8 and
int8_full), then runs them with the host runtime of the format (onnxruntime;
ai-edge-litert for tflite, each row padded to its sequence bucket as the agent
does) on --n evaluation texts the model never trained on: the corpus hold-out
of the artifacts' own split (seed 0, split by source document), every domain.
Per variant it prints the artifact's model bytes (every model file the device
receives: for ONNX model.onnx + prefill.onnx + decode.onnx), int8/fp32 size
and the share of inputs whose top-1 class matches fp32 -- and, for artifacts
with generation graphs, the share whose next byte (prefill graph, last
position) matches fp32's. Goal (issue 9): at most 0.35x the fp32 size AND at
least 99 % top-1 agreement; PASS/FAIL is printed beside each figure.
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
from gem.errors import GemError
from gem.export import FORMATS
from gem.tokenizer import BOS_ID, encode_batch

GOAL_SIZE_RATIO = 0.35
GOAL_AGREEMENT = 0.99
MIN_INPUTS = 500


def eval_texts(n: int, seed: int = 0) -> list[str]:
    """n hold-out texts of the artifacts' split (never trained on), every domain."""
    from gem.corpus import load_corpus

    holdout = load_corpus(seed=seed).holdout
    if len(holdout) < n:
        raise SystemExit(f"the hold-out has {len(holdout)} texts, fewer than --n {n}")
    return [s.text for s in holdout[:: len(holdout) // n][:n]]


def class_logits(fmt: str, folder: Path, ids: np.ndarray) -> np.ndarray:
    manifest = load_manifest(folder)
    entry = folder / manifest["entrypoint"]
    if fmt == "tflite":
        from gem.export.tflite import make_interpreter, run_padded

        return run_padded(make_interpreter(entry), ids, tuple(manifest["seq_buckets"]),
                          manifest["pad_id"])
    from gem.export.onnx import make_session, run_session

    sess = make_session(entry)
    return np.concatenate([run_session(sess, ids[i:i + 64]) for i in range(0, len(ids), 64)])


def next_bytes(folder: Path, texts: list[str]) -> np.ndarray | None:
    """The prefill graph's next-token argmax for each text (<bos> + its first 256 bytes)."""
    gen = load_manifest(folder).get("generation")
    if not gen:
        return None
    from gem.export.generation import last_token_logits
    from gem.export.onnx import make_session

    pre = make_session(folder / gen["prefill"])
    return np.asarray([int(np.argmax(last_token_logits(pre, [BOS_ID, *t.encode()][:256])))
                       for t in texts])


def model_bytes(folder: Path) -> int:
    return sum(int(f["size_bytes"]) for f in load_manifest(folder)["files"])


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def measure(model: str, fmt: str, texts: list[str], cache_dir: Path | None) -> list[dict]:
    ids, _ = encode_batch(texts, max_len=get_config(model).max_len_tokens)
    fp32 = build_artifact(model, "fp32", fmt, cache_dir=cache_dir)
    a = class_logits(fmt, fp32, ids)
    a_next = next_bytes(fp32, texts)
    size_fp32 = model_bytes(fp32)
    rows = []
    for variant in (v for v in FORMATS[fmt] if v != "fp32"):
        try:
            q = build_artifact(model, variant, fmt, cache_dir=cache_dir)
        except GemError as exc:  # a variant the converter cannot build is a result too
            rows.append({"model": model, "format": fmt, "variant": variant,
                         "build_error": str(exc)})
            continue
        b = class_logits(fmt, q, ids)
        size = model_bytes(q)
        ratio = size / size_fp32
        agreement = float(np.mean(a.argmax(-1) == b.argmax(-1)))
        row = {"model": model, "format": fmt, "variant": variant, "n": len(ids),
               "fp32_bytes": size_fp32, "quantized_bytes": size, "size_ratio": round(ratio, 4),
               "top1_agreement": round(agreement, 4),
               "max_abs_logit_diff": round(float(np.max(np.abs(a - b))), 5),
               "size_goal": verdict(ratio <= GOAL_SIZE_RATIO),
               "agreement_goal": verdict(agreement >= GOAL_AGREEMENT),
               "files": {f["name"]: f["size_bytes"] for f in load_manifest(q)["files"]},
               "quantization": load_manifest(q)["quantization"].get("policy")}
        b_next = next_bytes(q, texts)
        if a_next is not None and b_next is not None:
            nxt = float(np.mean(a_next == b_next))
            row["next_byte_agreement"] = round(nxt, 4)
            row["next_byte_goal"] = verdict(nxt >= GOAL_AGREEMENT)
        rows.append(row)
        print(f"measured {model} {fmt} {variant}: {json.dumps(row)}", file=sys.stderr, flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", nargs="+", default=["tiny"])
    ap.add_argument("--format", nargs="+", default=["onnx", "tflite"])
    ap.add_argument("--n", type=int, default=512, help=f"evaluation inputs (>= {MIN_INPUTS})")
    ap.add_argument("--cache-dir", type=Path, default=None)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if args.n < MIN_INPUTS:
        ap.error(f"--n must be at least {MIN_INPUTS} (the issue's minimum)")
    texts = eval_texts(args.n)
    rows = [r for m in args.model for f in args.format for r in measure(m, f, texts,
                                                                        args.cache_dir)]
    if args.json:
        print(json.dumps(rows, indent=1))
    print(f"goal: quantized <= {GOAL_SIZE_RATIO}x fp32 size and >= {GOAL_AGREEMENT:.0%} "
          f"top-1 agreement with fp32; {len(texts)} hold-out texts")
    print(f"{'model':6} {'format':7} {'variant':9} {'policy':26} {'n':>4} {'fp32 KiB':>9} "
          f"{'quant KiB':>9} {'ratio':>6} {'size':>5} {'top-1':>7} {'agree':>5} "
          f"{'next-byte':>9} {'agree':>5}")
    for r in rows:
        if "build_error" in r:
            print(f"{r['model']:6} {r['format']:7} {r['variant']:9} BUILD FAILED: "
                  f"{r['build_error']}")
            continue
        nxt = (f"{r['next_byte_agreement']:>9.2%} {r['next_byte_goal']:>5}"
               if "next_byte_agreement" in r else f"{'-':>9} {'-':>5}")
        print(f"{r['model']:6} {r['format']:7} {r['variant']:9} {r['quantization']:26} "
              f"{r['n']:>4} {r['fp32_bytes'] / 1024:>9.1f} {r['quantized_bytes'] / 1024:>9.1f} "
              f"{r['size_ratio']:>6.3f} {r['size_goal']:>5} "
              f"{r['top1_agreement']:>7.2%} {r['agreement_goal']:>5} {nxt}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
