"""The torch side of building a Core ML (.mlpackage) artifact (imported only on a cache miss).

Steps, each failing with BuildError naming what broke: train (the same
deterministic run as every format, gem/export/common.py) -> torch.export with a
dynamic sequence axis -> coremltools ML program, fp16, one enumerated input
shape per sequence bucket -> (int8: linear-quantize the weights) -> inspect and
validate the saved package against the manifest it gets (I/O names, dtypes,
shapes, size, MIL op inventory, expected Neural Engine placement) ->
reference inputs with torch outputs -> manifest -> the package zipped.

What this host cannot do: run the model. Core ML's ``predict`` exists only on
macOS/iOS, so the references' outputs come from torch (fp32), and the parity
tolerance is an *estimate* of what the program's arithmetic moves: the spread
between the model in torch fp32 and an emulation in torch (:func:`emulate`:
weights rounded to fp16, int8-fake-quantized first for ``int8``, every module's
output rounded to fp16), ``atol = max(floor, 10 x spread)`` with floors fp16
2e-2 and int8 5e-2. ``reference.parity`` says plainly that Core ML's own parity
has not run; a Mac (the ios platform) runs it. Likewise int8 vs fp16 agreement
on the hold-out needs a Core ML runtime: its measured value is null with the
reason, beside the emulated one (labelled so), never assumed.
"""

from __future__ import annotations

import platform
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from gem.errors import BuildError
from gem.export import BuildProgress
from gem.export.build_onnx import REF_FILE, _candidate_inputs
from gem.export.build_tflite import REFERENCE_LENGTHS, _version
from gem.export.common import model_fields, train_fields, train_model
from gem.export.coreml import (
    DEPLOYMENT_TARGET,
    INPUT_NAME,
    MODEL_FILE,
    OUTPUT_NAME,
    PACKAGE_NAME,
    export_coreml,
    inspect_package,
    neural_engine_placement,
    package_size_bytes,
    quantize_int8_weights,
    validate_package,
    zip_package,
)
from gem.export.tflite import seq_buckets
from gem.manifest import MANIFEST_VERSION

ATOL_FLOOR = {"fp16": 2e-2, "int8": 5e-2}
NOT_ON_LINUX = ("Core ML runs models only on macOS/iOS (coremltools predict: 'only supported "
                "on macOS'); run the ios platform's parity check on a Mac")


INT8_MIN_ELEMENTS = 2048  # coremltools' default weight_threshold: smaller weights stay fp16


def emulate(net: Any, variant: str) -> Any:
    """A torch copy of ``net`` that computes roughly what the Core ML program does:
    weights rounded to fp16 (``int8``: first fake-quantized linear symmetric int8 per
    output channel, as linear_quantize_weights does for weights of at least 2048
    elements) and every module's output rounded to fp16. An estimate for the
    tolerance and the int8 agreement on this host, not Core ML's kernels."""
    import copy

    import torch

    from gem.model import Proj

    sim = copy.deepcopy(net).eval()
    with torch.no_grad():
        for module in sim.modules():
            for p in module.parameters(recurse=False):
                w = p.data
                if variant == "int8" and w.dim() >= 2 and w.numel() >= INT8_MIN_ELEMENTS:
                    # the program stores Proj weights transposed ([out, in]): channel = last axis
                    axis = w.dim() - 1 if isinstance(module, Proj) else 0
                    dims = [d for d in range(w.dim()) if d != axis]
                    scale = w.abs().amax(dim=dims, keepdim=True).clamp(min=1e-12) / 127.0
                    w = torch.round(w / scale).clamp(-127, 127) * scale
                p.data = w.half().float()

    def round_fp16(_m: Any, _inp: Any, out: Any) -> Any:
        if isinstance(out, torch.Tensor) and out.is_floating_point():
            return out.half().float()
        return out

    for module in sim.modules():
        module.register_forward_hook(round_fp16)
    return sim


def _spreads(net: Any, sim: Any, inputs: list[np.ndarray]) -> list[float]:
    """max |torch fp32 - emulated Core ML| per input."""
    import torch

    with torch.no_grad():
        return [float(torch.max(torch.abs(net(torch.from_numpy(x)) - sim(torch.from_numpy(x))))
                      .item()) for x in inputs]


def build_coreml_artifact(
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
    cfg, net = trained.cfg, trained.net
    buckets = seq_buckets(cfg.max_len_tokens)

    work = out / ".work"
    report(f"convert to Core ML ({len(buckets)} enumerated shapes)", 0, None)
    info = export_coreml(net, work / "fp16.mlpackage", buckets)
    package = work / PACKAGE_NAME
    if variant == "int8":
        report("quantize weights to int8", 0, None)
        quant = quantize_int8_weights(info.package, package)
        quant["size_vs_fp16"] = package_size_bytes(package) / package_size_bytes(info.package)
        hold = torch.from_numpy(trained.holdout_ids())
        with torch.no_grad():
            emu16, emu8 = emulate(net, "fp16")(hold), emulate(net, "int8")(hold)
        quant["vs_fp16_holdout"] = {
            "top1_agreement": None, "reason": NOT_ON_LINUX,
            "emulated_in_torch": {
                "top1_agreement": float((emu8.argmax(-1) == emu16.argmax(-1)).float().mean()),
                "max_abs_diff": float(torch.max(torch.abs(emu8 - emu16))),
                "n": int(hold.shape[0]),
                "how": "gem.export.build_coreml.emulate: torch with int8/fp16-rounded weights "
                       "and fp16-rounded module outputs, not Core ML"},
        }
    else:
        info.package.rename(package)
        quant = {"policy": "fp16", "description": "weights and compute float16 "
                 "(coremltools compute_precision=FLOAT16); input int32, output float32"}
    facts = inspect_package(package)
    quant["precision"] = {"weights_by_op": facts["weights_by_op"],
                          "weight_tensors": facts["weight_tensors"]}
    placement = neural_engine_placement(facts["op_inventory"])

    report("reference inputs", 0, None)
    sim = emulate(net, variant)
    floor = ATOL_FLOOR[variant]
    refs, ref_out, spreads = [], [], []
    for i, length in enumerate(x for x in REFERENCE_LENGTHS if x <= cfg.max_len_tokens):
        cands = _candidate_inputs(cfg, trained.data, length, i)
        cand_spreads = _spreads(net, sim, cands)
        # the steadiest candidate: one on a routing boundary moves most under fp16
        best = int(np.argmin(cand_spreads))
        spreads.append(cand_spreads[best])
        refs.append(cands[best].astype(np.int32))
        with torch.no_grad():
            ref_out.append(net(torch.from_numpy(cands[best])).numpy())
    spread = max(spreads)
    atol = max(floor, 10.0 * spread)
    write_json(out / REF_FILE, {"inputs": [{INPUT_NAME: x.tolist()} for x in refs],
                                "outputs": [{OUTPUT_NAME: y.tolist()} for y in ref_out]})

    size = package_size_bytes(package)
    manifest: dict[str, Any] = {
        "manifest_version": MANIFEST_VERSION,
        "model": model,
        "variant": variant,
        "format": "coreml",
        "files": [],  # filled below, once the package is zipped
        "entrypoint": MODEL_FILE,
        "sha256": "",
        "inputs": [{"name": INPUT_NAME, "dtype": "int32", "shape": [1, "seq"]}],
        "outputs": [{"name": OUTPUT_NAME, "dtype": "float32", "shape": [1, cfg.num_classes]}],
        "seq_buckets": list(buckets),
        "op_inventory": facts["op_inventory"],
        "checked_with": {"coremltools": versions.get("coremltools", _version("coremltools"))},
        "coreml": {
            "package": PACKAGE_NAME,
            "minimum_deployment_target": DEPLOYMENT_TARGET,
            "spec_version": facts["spec_version"],
            "opset": facts["opset"],
            "compute_precision": "float16",
            "input_shapes": {"kind": "enumerated", "shapes": [[1, b] for b in buckets],
                             "default": [1, buckets[0]],
                             "why": "enumerated shapes can run on the Neural Engine; a "
                                    "RangeDim input runs on the CPU/GPU"},
            "size_bytes": size,
            "op_inventory": facts["op_inventory"],
            "neural_engine": placement,
            "converter": {"path": "torch.export.export(dynamic seq) -> coremltools.convert "
                                  "(mlprogram)", "metadata": facts["metadata"]},
        },
        "reference": {
            "file": REF_FILE,
            "atol": atol,
            "n": len(refs),
            "seq_lens": [int(x.shape[1]) for x in refs],
            "outputs_from": "torch fp32 (Core ML cannot run on this host)",
            "parity": {"status": "not_run", "max_abs_diff": None, "reason": NOT_ON_LINUX},
            "fp16_spreads": spreads,
            "atol_basis": {
                "floor": floor,
                "host_spread": spread,
                "rule": "max(floor, 10 x max|torch fp32 - emulated Core ML|) (emulate(): "
                        "fp16 rounding, int8 weights for int8): an estimate, not measured "
                        "on Core ML",
            },
        },
        **model_fields(trained),
        "quantization": quant,
        "build": {
            "seed": seed,
            "train_steps": train_steps,
            "torch": versions.get("torch", torch.__version__),
            "coremltools": versions.get("coremltools", _version("coremltools")),
            "python": platform.python_version(),
            "cache_key": cache_key,
            **train_fields(trained),
            "export_seconds": round(info.seconds, 3),
        },
    }
    report("validate the package", 0, None)
    manifest["coreml"]["validation"] = validate_package(package, manifest)
    zip_package(package, out / MODEL_FILE)
    shutil.rmtree(work)

    files = describe_files(out, [MODEL_FILE])
    (ref_entry,) = describe_files(out, [REF_FILE])
    manifest["files"], manifest["sha256"] = files, files_digest(files)
    manifest["reference"].update(sha256=ref_entry["sha256"], size_bytes=ref_entry["size_bytes"])
    manifest["build"].update(build_seconds=round(time.perf_counter() - t0, 3),
                             created_utc=timestamp())
    if not manifest["files"][0]["size_bytes"]:
        raise BuildError(f"{out / MODEL_FILE}: empty package zip")
    report("manifest", 0, None)
    write_manifest(out, manifest)
    return manifest
