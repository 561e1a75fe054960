"""The torch side of building an RKNN (.rknn, RK3588 NPU) artifact (cache miss only).

Steps, each failing with BuildError naming what broke: train (the same
deterministic run as every format, gem/export/common.py) -> one static [1, L]
ONNX graph per sequence bucket (gem/export/rknn.py says why per bucket) ->
calibration rows from the project's own hold-out texts (int8) -> rknn-toolkit2
in its own environment converts each bucket and runs the result in its x86
simulator on the reference inputs and hold-out rows -> those outputs are
compared with torch on the same padded inputs -> manifest.

Variants: ``fp16`` (the NPU's float type; the toolkit's default without
quantization) and ``int8`` (the toolkit's w8a8: int8 weights and activations,
asymmetric per-tensor activations, calibrated on CALIBRATION_ROWS hold-out
texts per bucket; its output stays float32 here because the agent compares
logits, see rknn_convert.py).

Reference outputs are the simulator's, and the tolerance the device gets is
``max(floor, 2 x max|simulator - torch|)`` over the references: the board's
NPU is expected nearer the toolkit's simulator of it than the simulator is to
torch. That expectation is untested here (no board): docs/gem.md says so.
"""

from __future__ import annotations

import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from gem.errors import BuildError
from gem.export import BuildProgress
from gem.export.build_onnx import REF_FILE, _candidate_inputs
from gem.export.common import model_fields, train_fields, train_model
from gem.export.onnx import INPUT_NAME, OUTPUT_NAME, _quiet_exporter
from gem.export.rknn import TARGET_PLATFORM, rknn_buckets, rknn_file, run_converter
from gem.manifest import MANIFEST_VERSION
from gem.tokenizer import encode_batch

CALIBRATION_ROWS = 32  # hold-out texts per bucket the int8 calibration sees
PARITY_ROWS = 32  # hold-out rows per bucket run in the simulator against torch
ATOL_FLOOR = {"fp16": 1e-2, "int8": 5e-2}
#: simulator vs torch on the hold-out rows: the build fails below these (a
#: conversion that changes the class this often is broken, not imprecise)
MIN_TOP1_VS_TORCH = {"fp16": 0.97, "int8": 0.85}


def export_static_onnx(net: Any, path: Path, length: int) -> float:
    """A [1, length] ONNX graph (static shapes: what an .rknn holds); returns seconds."""
    import torch

    start = time.perf_counter()
    example = torch.full((1, length), 65, dtype=torch.long)  # real tokens, not pad
    try:
        with _quiet_exporter(), torch.no_grad():
            torch.onnx.export(net.eval(), (example,), str(path), dynamo=True,
                              input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                              opset_version=18, verbose=False, external_data=False)
    except Exception as exc:  # the exporter raises many unrelated types
        raise BuildError(f"static ONNX export ({length} tokens) failed: {exc}") from exc
    return time.perf_counter() - start


def _rows(texts: list[str], length: int) -> np.ndarray:
    ids, _ = encode_batch(texts, max_len=length, pad_to=length)
    return ids.astype(np.int64)


def build_rknn_artifact(
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
    trained = train_model(model, seed, train_steps, report)
    cfg, net = trained.cfg, trained.net.eval()
    buckets = rknn_buckets(cfg.max_len_tokens)
    work = out / ".work"
    work.mkdir(parents=True)
    holdout = [s.text for s in trained.check_rows()]

    report(f"static ONNX graphs ({len(buckets)} buckets)", 0, None)
    jobs, refs, onnx_bytes, export_s = [], [], 0, 0.0
    for i, length in enumerate(buckets):
        onnx_path = work / f"seq_{length}.onnx"
        export_s += export_static_onnx(net, onnx_path, length)
        onnx_bytes += onnx_path.stat().st_size
        ref = _candidate_inputs(cfg, trained.data, length, i)[0]
        refs.append(ref)
        rows = np.concatenate([ref, _rows(holdout[:PARITY_ROWS], length)])
        np.save(work / f"inputs_{length}.npy", rows)
        job = {"seq_len_tokens": length, "onnx": str(onnx_path),
               "rknn": str(out / rknn_file(length)), "inputs": str(work / f"inputs_{length}.npy"),
               "outputs": str(work / f"outputs_{length}.npy")}
        if variant == "int8":
            cal = _rows(holdout[-CALIBRATION_ROWS:], length)  # other rows than the parity ones
            lines = []
            for j, row in enumerate(cal):
                p = work / f"cal_{length}_{j}.npy"
                np.save(p, row[None, :])
                lines.append(str(p))
            (work / f"dataset_{length}.txt").write_text("\n".join(lines) + "\n")
            job["dataset"] = str(work / f"dataset_{length}.txt")
        jobs.append(job)

    report(f"rknn-toolkit2: convert {len(buckets)} buckets and simulate", 0, None)
    conv = run_converter({"target": TARGET_PLATFORM, "quantize": variant == "int8",
                          "buckets": jobs}, work)

    report("compare the simulator with torch", 0, None)
    per_bucket, ref_out, diffs, agree, total = [], [], [], 0, 0
    for job, got in zip(jobs, conv.buckets, strict=True):
        rows = np.load(job["inputs"])
        sim = np.load(job["outputs"])
        with torch.no_grad():
            want = net(torch.from_numpy(rows)).numpy()
        if sim.shape != want.shape:
            raise BuildError(f"bucket {job['seq_len_tokens']}: simulator output {sim.shape} "
                             f"!= torch's {want.shape}")
        ref_out.append(sim[:1])
        diffs.append(float(np.max(np.abs(sim[0] - want[0]))))
        a = int(np.sum(sim[1:].argmax(-1) == want[1:].argmax(-1)))
        agree, total = agree + a, total + len(rows) - 1
        place = got["placement"]
        per_bucket.append({
            "seq_len_tokens": job["seq_len_tokens"], "file": rknn_file(job["seq_len_tokens"]),
            "convert_seconds": got["convert_seconds"],
            "simulator_seconds": got.get("simulator_seconds"),
            "ops_total": place["ops_total"], "ops_npu": place["ops_npu"],
            "ops_cpu": place["ops_cpu"], "cpu_ops": place["cpu_ops"],
            "cpu_op_names": place["cpu_op_names"], "ops_by_dtype": place["ops_by_dtype"],
            "simulator_vs_torch": {"reference_max_abs_diff": diffs[-1],
                                   "holdout_top1_agreement": a / (len(rows) - 1),
                                   "holdout_max_abs_diff": float(np.max(np.abs(sim - want))),
                                   "n": len(rows) - 1},
        })
    top1 = agree / total
    if top1 < MIN_TOP1_VS_TORCH[variant]:
        raise BuildError(f"{model}/{variant}: the rknn simulator agrees with torch on only "
                         f"{top1:.1%} of {total} hold-out rows (< "
                         f"{MIN_TOP1_VS_TORCH[variant]:.0%}); the conversion is broken "
                         f"(log: {conv.log})")
    floor = ATOL_FLOOR[variant]
    atol = max(floor, 2.0 * max(diffs))
    write_json(out / REF_FILE, {"inputs": [{INPUT_NAME: x.tolist()} for x in refs],
                                "outputs": [{OUTPUT_NAME: y.tolist()} for y in ref_out]})
    names = [rknn_file(b) for b in buckets]
    files = describe_files(out, names)
    rknn_bytes = sum(f["size_bytes"] for f in files)
    (ref_entry,) = describe_files(out, [REF_FILE])
    first = per_bucket[0]
    quant: dict[str, Any] = (
        {"policy": "rknn_w8a8", "description": "rknn-toolkit2 int8 weights and activations "
         "(asymmetric, per tensor, 'normal' algorithm) calibrated on hold-out texts",
         "calibration": {"source": "GEM hold-out texts (gem.corpus), padded to each bucket",
                         "rows_per_bucket": CALIBRATION_ROWS}}
        if variant == "int8" else
        {"policy": "fp16", "description": "rknn-toolkit2 float16 (no quantization)"})
    quant["vs_torch_holdout"] = {"top1_agreement": top1, "n": total}
    quant["precision"] = {"ops_by_dtype_first_bucket": first["ops_by_dtype"],
                          "source": "the DataType column of rknn-toolkit2's layer table"}
    for leftover in sorted(work.iterdir()):
        if leftover.name == "rknn-toolkit.log":
            leftover.rename(out / "rknn-toolkit.log")
        else:
            leftover.unlink()
    work.rmdir()
    manifest = {
        "manifest_version": MANIFEST_VERSION,
        "model": model,
        "variant": variant,
        "format": "rknn",
        "files": files,
        "entrypoint": names[-1],
        "sha256": files_digest(files),
        "inputs": [{"name": INPUT_NAME, "dtype": "int64", "shape": [1, "seq"]}],
        "outputs": [{"name": OUTPUT_NAME, "dtype": "float32", "shape": [1, cfg.num_classes]}],
        "target_platform": TARGET_PLATFORM,
        "seq_buckets": list(buckets),
        "rknn_buckets": per_bucket,
        "op_placement": {"accelerator": "RKNPU2", "ops_total": first["ops_total"],
                         "ops_accelerator": first["ops_npu"], "ops_cpu": first["ops_cpu"],
                         "cpu_op_names": first["cpu_op_names"],
                         "source": "rknn-toolkit2's layer table of the first bucket's build"},
        "checked_with": {"rknn-toolkit2 simulator": conv.toolkit_version},
        "reference": {
            "file": REF_FILE,
            "sha256": ref_entry["sha256"],
            "size_bytes": ref_entry["size_bytes"],
            "atol": atol,
            "n": len(refs),
            "seq_lens": [int(x.shape[1]) for x in refs],
            "atol_basis": {"floor": floor, "simulator_vs_torch": max(diffs),
                           "rule": "max(floor, 2 x max|rknn simulator - torch|) on the "
                                   "references"},
        },
        **model_fields(trained),
        "quantization": quant,
        "build": {
            "seed": seed,
            "train_steps": train_steps,
            "torch": versions.get("torch", torch.__version__),
            "rknn-toolkit2": conv.toolkit_version,
            "target_platform": TARGET_PLATFORM,
            "python": platform.python_version(),
            "cache_key": cache_key,
            **train_fields(trained),
            "onnx_export_seconds": round(export_s, 3),
            "convert_seconds": round(sum(b["convert_seconds"] for b in per_bucket), 3),
            "onnx_size_bytes": onnx_bytes,
            "rknn_size_bytes": rknn_bytes,
            "rknn_size_vs_onnx": rknn_bytes / onnx_bytes,
            "build_seconds": round(time.perf_counter() - t0, 3),
            "created_utc": timestamp(),
        },
    }
    report("manifest", 0, None)
    write_manifest(out, manifest)
    return manifest

