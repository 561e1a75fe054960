"""The torch side of building a LiteRT (.tflite) artifact (imported only on a cache miss).

Steps, each failing with BuildError naming what broke: train (the same
deterministic run as every format, gem/export/common.py) -> convert fp32 with
one signature per sequence bucket -> check every bucket against torch ->
quantize (int8: ai-edge-quantizer dynamic range, verified against fp32 on the
hold-out set) -> reference inputs/outputs computed with ai-edge-litert from the
final file -> tolerance -> manifest.

Reference inputs: one per bucket up to 128 tokens (16, 32, 64, 128), each the
first real-text candidate whose output under TFLite's reference kernels (no
XNNPACK, 2 threads) stays within a tenth of the variant's floor of the
XNNPACK output. A candidate that moves more sits on a routing decision (the
DTR threshold or a TopK cut) that a different CPU's kernels may flip, which
would fail parity on a healthy device. The tolerance is then set like the ONNX
one: ``atol = max(floor, 10 x spread)`` over the chosen references, floors
fp32 1e-4 and int8 1e-2 (dynamic-range int8 quantizes activations per run:
one quantization step moves a logit by ~range/255).
"""

from __future__ import annotations

import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from gem.compress.spec import base_variant
from gem.errors import BuildError
from gem.export import BuildProgress
from gem.export.build_onnx import (
    ATOL_FLOOR,
    REF_FILE,
    TORCH_PARITY_ATOL,
    _candidate_inputs,
    _max_diff,
)
from gem.export.common import model_fields, train_fields, train_model
from gem.export.tflite import (
    INPUT_NAME,
    OUTPUT_NAME,
    export_tflite,
    make_interpreter,
    op_inventory,
    pad_to_bucket,
    quantize_dynamic_int8,
    quantize_static_int8,
    run_padded,
    run_tflite,
    seq_buckets,
    signature_name,
    strip_tensor_names,
)
from gem.manifest import MANIFEST_VERSION

MODEL_FILE = "model.tflite"
REFERENCE_LENGTHS = (16, 32, 64, 128)
#: full-integer int8 also quantizes every activation on calibrated ranges, so one
#: step of the logits' own int8 scale is the smallest difference kernels can make
TFLITE_ATOL_FLOOR = {**ATOL_FLOOR, "int8_full": 5e-2}
CALIBRATION_PER_BUCKET = 16  # training texts per signature for the activation ranges

#: fp32 conversions of this process, by (net, buckets): the fp32, int8 and
#: int8_full builds of one trained net convert the same model (several minutes
#: for seven signatures), so the later builds copy the first one's file
_CONVERTED: dict[tuple[int, tuple[int, ...]], tuple[Any, bytes, float]] = {}


def _convert_once(net: Any, path: Path, buckets: tuple[int, ...]) -> Any:
    from gem.export.tflite import TfliteExport

    key = (id(net), tuple(buckets))
    hit = _CONVERTED.get(key)
    if hit is not None and hit[0] is net:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(hit[1])
        return TfliteExport(path, hit[2], tuple(buckets))
    info = export_tflite(net, path, buckets)
    _CONVERTED.clear()
    _CONVERTED[key] = (net, path.read_bytes(), info.seconds)
    return info


def _stripped_size(path: Path) -> int:
    """Size of the fp32 file as the fp32 variant ships it (tensor names stripped)."""
    copy = path.with_name(path.stem + ".stripped.tflite")
    copy.write_bytes(path.read_bytes())
    strip_tensor_names(copy)
    size = copy.stat().st_size
    copy.unlink()
    return size


def calibration_set(samples: list[Any], buckets: tuple[int, ...], pad_id: int
                    ) -> dict[str, list[dict[str, np.ndarray]]]:
    """Per signature, up to CALIBRATION_PER_BUCKET training texts (never hold-out
    ones: the agreement is measured there) padded to that bucket; a bucket no
    text fills on its own gets texts joined to its full length."""
    from gem.tokenizer import BOS_ID

    out: dict[str, list[dict[str, np.ndarray]]] = {signature_name(b): [] for b in buckets}
    for s in samples:
        ids = np.asarray([BOS_ID, *s.text.encode("utf-8")][: buckets[-1]], dtype=np.int32)
        x = pad_to_bucket(ids, buckets, pad_id)
        rows = out[signature_name(int(x.shape[1]))]
        if len(rows) < CALIBRATION_PER_BUCKET:
            rows.append({INPUT_NAME: x})
    joined = [BOS_ID, *" ".join(s.text for s in samples[:400]).encode("utf-8")]
    for b in buckets:
        rows = out[signature_name(b)]
        start = 0
        while len(rows) < CALIBRATION_PER_BUCKET // 2 and start + b <= len(joined):
            rows.append({INPUT_NAME: np.asarray([joined[start:start + b]], dtype=np.int32)})
            start += b
    return out


def _version(name: str) -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "missing"


def precision_summary(inventory: dict[str, Any]) -> dict[str, Any]:
    """Constant weights by op kind and dtype, in one signature (all share them)."""
    first = next(iter(inventory.values()))
    by_dtype: dict[str, int] = {}
    for counts in first["weights_by_op"].values():
        for dtype, n in counts.items():
            by_dtype[dtype] = by_dtype.get(dtype, 0) + n
    return {"weights_by_op": first["weights_by_op"], "weight_tensors_by_dtype": by_dtype}


def build_tflite_artifact(
    out: Path,
    *,
    model: str,
    variant: str,
    seed: int,
    train_steps: int,
    cache_key: str,
    versions: dict[str, str],
    progress: BuildProgress | None = None,
) -> dict[str, Any]:
    """Build the artifact into the (empty) folder ``out``; returns the manifest."""
    import torch

    from gem.artifacts import describe_files, files_digest, timestamp, write_json, write_manifest

    report: BuildProgress = progress or (lambda stage, done, total: None)
    t0 = time.perf_counter()
    trained = train_model(model, seed, train_steps, report, variant)
    precision = base_variant(variant)  # a compressed variant ships an fp32 file
    cfg, net = trained.cfg, trained.net
    buckets = seq_buckets(cfg.max_len_tokens)

    work = out / ".work"
    report(f"convert to LiteRT ({len(buckets)} signatures)", 0, None)
    info = _convert_once(net, work / "fp32.tflite", buckets)
    fp32 = make_interpreter(info.path)

    report("check LiteRT against torch", 0, None)
    checks = [_candidate_inputs(cfg, trained.data, b, i)[0] for i, b in enumerate(buckets)]
    with torch.no_grad():
        torch_out = [net(torch.from_numpy(x)).numpy() for x in checks]
    tfl_out = [run_tflite(fp32, x) for x in checks]
    torch_diff = _max_diff(torch_out, tfl_out)
    if not torch_diff <= TORCH_PARITY_ATOL:
        raise BuildError(
            f"{model}/{variant}: LiteRT differs from torch by {torch_diff:.3g} (> "
            f"{TORCH_PARITY_ATOL}) on one full-length input per bucket; the conversion or the "
            "rewrite in gem/export/tflite.py is wrong")
    holdout_ids = trained.holdout_ids()
    fp32_hold = run_padded(fp32, holdout_ids, buckets, cfg.pad_id)
    with torch.no_grad():  # torch on the same bucket-padded rows
        torch_hold = np.stack([net(torch.from_numpy(
            pad_to_bucket(r, buckets, cfg.pad_id, np.int64))).numpy()[0]
                               for r in holdout_ids])
    flipped = float(np.mean(np.max(np.abs(torch_hold - fp32_hold), axis=1) > TORCH_PARITY_ATOL))
    if flipped > 0.05:
        raise BuildError(f"{model}/{variant}: {flipped:.0%} of hold-out rows differ between "
                         f"torch and LiteRT by more than {TORCH_PARITY_ATOL}; the export is wrong")

    final = out / MODEL_FILE
    if precision in ("int8", "int8_full"):
        if precision == "int8":
            report("quantize to int8 (dynamic range)", 0, None)
            quant = quantize_dynamic_int8(info.path, final)
        else:
            report("quantize to full-integer int8 (calibrated)", 0, None)
            quant = quantize_static_int8(info.path, final, calibration_set(
                trained.train_set, buckets, cfg.pad_id))
        int8_hold = run_padded(make_interpreter(final), holdout_ids, buckets, cfg.pad_id)
        quant["vs_fp32_holdout"] = {
            "top1_agreement": float(np.mean(int8_hold.argmax(-1) == fp32_hold.argmax(-1))),
            "max_abs_diff": float(np.max(np.abs(int8_hold - fp32_hold))),
            "n": len(holdout_ids),
        }
        quant["size_vs_fp32"] = final.stat().st_size / _stripped_size(info.path)
    else:
        info.path.rename(final)
        strip_tensor_names(final)
        quant = {"policy": "none"}
    for leftover in work.iterdir():
        leftover.unlink()
    work.rmdir()
    inventory = op_inventory(final)
    quant["precision"] = precision_summary(inventory)

    report("reference outputs", 0, None)
    sess, alt = make_interpreter(final), make_interpreter(final, threads=2, reference_kernels=True)
    floor = TFLITE_ATOL_FLOOR[precision]
    refs, ref_out, spreads = [], [], []
    for i, length in enumerate(x for x in REFERENCE_LENGTHS if x <= cfg.max_len_tokens):
        best: tuple[float, np.ndarray, np.ndarray] | None = None
        for cand in _candidate_inputs(cfg, trained.data, length, i):
            y = run_tflite(sess, cand)
            spread = float(np.max(np.abs(y - run_tflite(alt, cand))))
            if best is None or spread < best[0]:
                best = (spread, cand, y)
            if spread <= floor / 10:
                break
        assert best is not None  # _candidate_inputs raises when it finds none
        spreads.append(best[0])
        refs.append(best[1].astype(np.int32))
        ref_out.append(best[2])
    spread = max(spreads)
    atol = max(floor, 10.0 * spread)
    write_json(out / REF_FILE, {"inputs": [{INPUT_NAME: x.tolist()} for x in refs],
                                "outputs": [{OUTPUT_NAME: y.tolist()} for y in ref_out]})

    files = describe_files(out, [MODEL_FILE])
    (ref_entry,) = describe_files(out, [REF_FILE])
    manifest = {
        "manifest_version": MANIFEST_VERSION,
        "model": model,
        "variant": variant,
        "format": "tflite",
        "files": files,
        "entrypoint": MODEL_FILE,
        "sha256": files_digest(files),
        "inputs": [{"name": INPUT_NAME, "dtype": "int32", "shape": [1, "seq"]}],
        "outputs": [{"name": OUTPUT_NAME, "dtype": "float32", "shape": [1, cfg.num_classes]}],
        "signatures": [{"name": signature_name(b), "seq_len_tokens": b,
                        "ops_total": inventory[signature_name(b)]["ops_total"]}
                       for b in buckets],
        "seq_buckets": list(buckets),
        "op_inventory": inventory[signature_name(buckets[0])]["ops"],
        "checked_with": {"ai-edge-litert": _version("ai-edge-litert")},
        "reference": {
            "file": REF_FILE,
            "sha256": ref_entry["sha256"],
            "size_bytes": ref_entry["size_bytes"],
            "atol": atol,
            "n": len(refs),
            "seq_lens": [int(x.shape[1]) for x in refs],
            "kernel_spreads": spreads,
            "atol_basis": {
                "floor": floor,
                "host_spread": spread,
                "rule": "max(floor, 10 x max|XNNPACK 1 thread - reference kernels 2 threads|)",
            },
        },
        **model_fields(trained),
        "quantization": quant,
        "quality": trained.quality,
        "build": {
            "seed": seed,
            "train_steps": train_steps,
            "torch": versions.get("torch", torch.__version__),
            "litert-torch": versions.get("litert-torch", _version("litert-torch")),
            "ai-edge-litert": versions.get("ai-edge-litert", _version("ai-edge-litert")),
            "ai-edge-quantizer": versions.get("ai-edge-quantizer",
                                              _version("ai-edge-quantizer")),
            "python": platform.python_version(),
            "cache_key": cache_key,
            **train_fields(trained),
            "export_seconds": round(info.seconds, 3),
            "build_seconds": round(time.perf_counter() - t0, 3),
            "torch_vs_tflite_max_abs_diff": torch_diff,
            "torch_vs_tflite_holdout_rows_over_atol": flipped,
            "created_utc": timestamp(),
        },
    }
    report("manifest", 0, None)
    write_manifest(out, manifest)
    return manifest
