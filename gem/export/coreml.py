"""Core ML export of GEM with coremltools 9: torch.export -> ML program
(``.mlpackage``), fp16 or int8 weights, validated on a host that cannot run it.

Why torch.export: ``torch.jit.trace`` of GEM failed (issue 9), and coremltools'
ExportedProgram frontend is the maintained path. The sequence axis is exported
dynamic (``torch.export.Dim``); an earlier model's DTR capacity guard
(``min(seq, ceil(0.5 seq))``) made that impossible, but the DTR is a per-token
threshold since the causal LM, so the graph has no length-dependent branch and
one export covers every bucket (tested: the model's outputs are untouched).

Why enumerated shapes, not a RangeDim: both convert, but Core ML prepares an
enumerated shape ahead of time and the Neural Engine runs enumerated shapes,
while a range-flexible input is executed on the CPU/GPU (Apple's coremltools
guide, "Flexible input shapes"). The shapes are the LiteRT sequence buckets
(16, 32, ... max_len): a device pads a request to the smallest that fits, as
the LiteRT agent does, and the manifest's ``seq_buckets`` says which exist.

Variants: ``fp16`` (weights and compute fp16, ``compute_precision=FLOAT16``) and
``int8`` (the fp16 program with its constant weights linear-symmetric int8 per
channel through ``coremltools.optimize.coreml.linear_quantize_weights``; they
are dequantized to fp16 on load, so compute stays fp16).

Validation (Linux: ``predict`` needs macOS): reload the saved package with
``skip_model_load=True`` and check the input name, dtype and enumerated shapes
and the output against the manifest, the size on disk, and the op inventory of
the ML program against :data:`ANE_OPS`, the MIL ops expected to run on the
Neural Engine. That list is *expected* placement, compiled from Apple's
documentation and public measurements (the ANE computes fp16 tensor math; ops
on int32 index tensors and data-dependent selection -- gather, topk, range_1d,
shape, integer comparisons and casts -- are scheduled on the CPU); the real
placement is known only on a Mac (MLComputePlan). Ops outside it are reported
as ``cpu_fallback_ops`` by name.
"""

from __future__ import annotations

import contextlib
import shutil
import time
import zipfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gem.errors import BuildError
from gem.export.common import named_io, quiet_converter

INPUT_NAME = "input_ids"
OUTPUT_NAME = "logits"
PACKAGE_NAME = "model.mlpackage"  # the folder inside the zip (xcrun coremlcompiler's input)
MODEL_FILE = "model.mlpackage.zip"
DEPLOYMENT_TARGET = "iOS17"  # A15 (iPhone 13) runs iOS 17+; ML program opset CoreML7
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
#: written by coremltools for ExecuTorch debugging, not listed in the package's
#: Manifest.json, never read by Core ML: dropped from the shipped package
_DEBUG_FILES = ("executorch_debug_handle_mapping.json",)

#: MIL ops expected on the Neural Engine (fp16 tensor math and layout ops).
#: Sources: Apple's coremltools guide (ML programs, "Typed execution": the ANE
#: runs fp16), Apple's "Deploying Transformers on the Apple Neural Engine"
#: (linear/matmul/softmax/layer_norm/gelu/reshape/transpose/split/concat run on
#: it), and public per-op measurements (github.com/hollance/neural-engine,
#: "Unsupported layers": gather, topk, integer ops, dynamic shapes run on the
#: CPU). Expected, not measured: a Mac's MLComputePlan reports the truth.
ANE_OPS = frozenset({
    "add", "sub", "mul", "real_div", "maximum", "minimum", "pow", "sqrt", "rsqrt", "exp",
    "linear", "matmul", "conv", "softmax", "layer_norm", "batch_norm", "instance_norm",
    "gelu", "relu", "sigmoid", "tanh", "silu", "clip",
    "reduce_sum", "reduce_mean", "reduce_max", "reduce_min",
    "reshape", "transpose", "concat", "split", "slice_by_index", "slice_by_size",
    "expand_dims", "squeeze", "tile", "pad", "select",
})
#: ops that hold weights, not computation (excluded from placement counts)
WEIGHT_OPS = frozenset({"const", "constexpr_affine_dequantize", "constexpr_blockwise_shift_scale",
                        "constexpr_lut_to_dense", "constexpr_sparse_to_dense"})


@dataclass
class CoreMLExport:
    package: Path  # the saved .mlpackage folder
    seconds: float  # torch.export + ct.convert
    buckets: tuple[int, ...]


def quiet() -> contextlib.AbstractContextManager[None]:
    """Silence coremltools' progress bars, its "torch version not tested" and
    "Failed to load libcoremlpython" lines (expected on Linux), and torch.export
    chatter: the harness shows its own progress."""
    return quiet_converter(("coremltools", "torch.export", "torch._dynamo", "torch.fx", "root"),
                           {"TQDM_DISABLE": "1"}, stderr=True)


def import_coremltools() -> Any:
    """coremltools, quietly, or a BuildError saying which extra installs it."""
    try:
        with quiet():
            import coremltools
    except ImportError as exc:
        raise BuildError(f"a coreml artifact needs coremltools ({exc}); install the coreml "
                         "extra: pip install -e '.[coreml]'") from None
    return coremltools


def export_coreml(model: Any, package: Path, buckets: tuple[int, ...]) -> CoreMLExport:
    """Convert ``model`` (a GemModel) into an fp16 ML program with one enumerated
    input shape ``[1, L]`` per bucket; saves the ``.mlpackage`` folder."""
    import numpy as np
    import torch

    ct = import_coremltools()
    net = named_io(model)
    seq = torch.export.Dim("seq", min=1, max=max(buckets))
    example = torch.full((1, buckets[min(2, len(buckets) - 1)]), 65, dtype=torch.long)  # not pad
    default = [1, buckets[0]]
    start = time.perf_counter()
    try:
        with quiet(), torch.no_grad():
            program = torch.export.export(net, (example,), dynamic_shapes={INPUT_NAME: {1: seq}})
            program = program.run_decompositions({})
            mlmodel = ct.convert(
                program,
                inputs=[ct.TensorType(name=INPUT_NAME, dtype=np.int32, shape=ct.EnumeratedShapes(
                    shapes=[[1, b] for b in buckets], default=default))],
                outputs=[ct.TensorType(name=OUTPUT_NAME, dtype=np.float32)],
                convert_to="mlprogram",
                minimum_deployment_target=getattr(ct.target, DEPLOYMENT_TARGET),
                compute_precision=ct.precision.FLOAT16,
            )
    except Exception as exc:  # the exporter and converter raise many unrelated types
        raise BuildError(f"Core ML conversion (torch.export -> coremltools "
                         f"{ct.__version__}) failed for {model.cfg.name}: {exc}") from exc
    seconds = time.perf_counter() - start
    save_package(mlmodel, package)
    return CoreMLExport(package, seconds, tuple(buckets))


def save_package(mlmodel: Any, package: Path) -> None:
    if package.exists():
        shutil.rmtree(package)
    package.parent.mkdir(parents=True, exist_ok=True)
    with quiet():
        mlmodel.save(str(package))
    for name in _DEBUG_FILES:
        (package / name).unlink(missing_ok=True)


def quantize_int8_weights(src: Path, dst: Path) -> dict[str, Any]:
    """int8 weights (linear symmetric, per output channel) of the fp16 program at ``src``."""
    ct = import_coremltools()
    import coremltools.optimize.coreml as cto

    config = cto.OptimizationConfig(global_config=cto.OpLinearQuantizerConfig(
        mode="linear_symmetric", dtype="int8", granularity="per_channel"))
    try:
        with quiet():
            model = ct.models.MLModel(str(src), skip_model_load=True)
            quantized = cto.linear_quantize_weights(model, config)
    except Exception as exc:  # noqa: BLE001 - the optimizer raises many types
        raise BuildError(f"{src}: coremltools linear_quantize_weights (int8) failed: {exc}") \
            from exc
    save_package(quantized, dst)
    return {
        "policy": "coreml_wi8_linear_symmetric_per_channel",
        "description": "coremltools.optimize linear quantization: int8 weights (symmetric, "
                       "per output channel) of every constant above the default size "
                       "threshold, dequantized to fp16 at load (constexpr ops); fp16 compute",
        "method": "coremltools.optimize.coreml.linear_quantize_weights(OpLinearQuantizerConfig"
                  "(mode='linear_symmetric', dtype='int8', granularity='per_channel'))",
    }


def package_size_bytes(package: Path) -> int:
    return sum(p.stat().st_size for p in package.rglob("*") if p.is_file())


def zip_package(package: Path, dst: Path) -> None:
    """The package folder as one deterministic zip (sorted entries, fixed times,
    stored): manifest ``files`` are plain names, and the same folder always
    gives the same bytes. Entries sit under ``model.mlpackage/``."""
    files = sorted(p for p in package.rglob("*") if p.is_file())
    with zipfile.ZipFile(dst, "w", compression=zipfile.ZIP_STORED) as zf:
        for p in files:
            info = zipfile.ZipInfo(f"{PACKAGE_NAME}/{p.relative_to(package).as_posix()}",
                                   date_time=_ZIP_TIME)
            info.external_attr = 0o644 << 16
            zf.writestr(info, p.read_bytes())


def unzip_package(archive: Path, into: Path) -> Path:
    """Extract ``archive`` into ``into`` and return the ``.mlpackage`` folder;
    refuses entries outside ``model.mlpackage/`` (a zip may name any path)."""
    with zipfile.ZipFile(archive) as zf:
        for name in zf.namelist():
            parts = Path(name).parts
            if not name.startswith(f"{PACKAGE_NAME}/") or ".." in parts or name.startswith("/"):
                raise BuildError(f"{archive}: entry {name!r} is outside {PACKAGE_NAME}/; "
                                 "rebuild the artifact")
        zf.extractall(into)
    return into / PACKAGE_NAME


_DTYPES = {1: "bool", 10: "float16", 11: "float32", 21: "int8", 22: "int16", 23: "int32",
           24: "int64", 31: "uint8", 25: "int4", 35: "uint4"}
_ARRAY_DTYPES = {65568: "float32", 65552: "float16", 131104: "int32", 65600: "float64"}


def _walk(block: Any) -> Iterator[Any]:
    for op in block.operations:
        yield op
        for inner in op.blocks:
            yield from _walk(inner)


def inspect_package(package: Path) -> dict[str, Any]:
    """What a host without Core ML can learn from a saved package: its I/O
    (name, dtype, enumerated shapes), spec version, opset, MIL op counts and
    the weights' precision (every constant tensor of rank >= 2: stored dtype,
    the dtype compute sees, the ops using it), without loading it into a runtime."""
    ct = import_coremltools()
    with quiet():
        spec = ct.models.MLModel(str(package), skip_model_load=True).get_spec()
    func = spec.mlProgram.functions["main"]
    program = list(_walk(func.block_specializations[func.opset]))
    ops = Counter(op.type for op in program)
    consumers: dict[str, set[str]] = {}
    for op in program:
        for arg in op.inputs.values():
            for a in arg.arguments:
                consumers.setdefault(a.name, set()).add(op.type)
    tensors = []
    for op in program:
        t = op.outputs[0].type.tensorType
        if op.type not in WEIGHT_OPS or t.rank < 2:
            continue  # scalars, biases, shapes: not the weights a precision summary means
        # constexpr_* ops store their data quantized; the output is what compute sees
        data = op.attributes.get("quantized_data") or op.attributes.get("val")
        stored = data.type.tensorType.dataType if data is not None else t.dataType
        name = op.outputs[0].name
        tensors.append({"name": name, "shape": [d.constant.size for d in t.dimensions],
                        "stored_dtype": _DTYPES.get(stored, str(stored)),
                        "compute_dtype": _DTYPES.get(t.dataType, str(t.dataType)),
                        "used_by": sorted(consumers.get(name, ()))})
    by_op: dict[str, Counter[str]] = {}
    for w in tensors:
        for user in w["used_by"] or ["unused"]:
            by_op.setdefault(user, Counter())[w["stored_dtype"]] += 1

    def array(desc: Any) -> dict[str, Any]:
        a = desc.type.multiArrayType
        return {"name": desc.name, "dtype": _ARRAY_DTYPES.get(a.dataType, str(a.dataType)),
                "shape": list(a.shape),
                "enumerated_shapes": [list(s.shape) for s in a.enumeratedShapes.shapes],
                "shape_ranges": [[r.lowerBound, r.upperBound]
                                 for r in a.shapeRange.sizeRanges]}

    return {
        "spec_version": spec.specificationVersion,
        "opset": func.opset,
        "inputs": [array(d) for d in spec.description.input],
        "outputs": [array(d) for d in spec.description.output],
        "op_inventory": dict(sorted(ops.items())),
        "weights_by_op": {k: dict(v) for k, v in sorted(by_op.items())},
        "weight_tensors": tensors,
        "metadata": dict(spec.description.metadata.userDefined),
    }


def neural_engine_placement(op_inventory: dict[str, int]) -> dict[str, Any]:
    """Expected placement of the program's compute ops against :data:`ANE_OPS`."""
    compute = {k: v for k, v in op_inventory.items() if k not in WEIGHT_OPS}
    fallback = {k: v for k, v in compute.items() if k not in ANE_OPS}
    return {
        "ops_total": sum(compute.values()),
        "ops_accelerator": sum(compute.values()) - sum(fallback.values()),
        "cpu_fallback_ops": sum(fallback.values()),
        "fallback_op_names": sorted(fallback),
        "fallback_ops_by_name": dict(sorted(fallback.items())),
        "basis": "expected from gem.export.coreml.ANE_OPS (documented list, not measured: "
                 "the real placement needs a Mac's MLComputePlan)",
    }


def _io_problems(kind: str, got: list[dict[str, Any]], want: list[dict[str, Any]]
                 ) -> list[str]:
    """Names, then dtypes, of the package's inputs or outputs against the manifest's."""
    if [g["name"] for g in got] != [w["name"] for w in want]:
        return [f"{kind}s {[g['name'] for g in got]} != manifest {[w['name'] for w in want]}"]
    return [f"{kind} {g['name']} is {g['dtype']}, manifest says {w['dtype']}"
            for g, w in zip(got, want, strict=True) if g["dtype"] != w["dtype"]]


def validate_package(package: Path, manifest: dict[str, Any], where: str | None = None
                     ) -> dict[str, Any]:
    """Check a saved package against what its manifest promises; returns the
    checks made. Raises BuildError naming ``where`` (default: the package) and
    every mismatch."""
    facts = inspect_package(package)
    where = where or str(package)
    problems = [*_io_problems("input", facts["inputs"], manifest["inputs"]),
                *_io_problems("output", facts["outputs"], manifest["outputs"])]
    want_shapes = [[1, b] for b in manifest["seq_buckets"]]
    got_in = facts["inputs"]
    if got_in and sorted(got_in[0]["enumerated_shapes"]) != sorted(want_shapes):
        problems.append(f"input shapes {got_in[0]['enumerated_shapes']} != the manifest's "
                        f"buckets {want_shapes}")
    size = package_size_bytes(package)
    want_size = manifest.get("coreml", {}).get("size_bytes")
    if want_size is not None and size != want_size:
        problems.append(f"package is {size} bytes on disk, manifest says {want_size}")
    want_ops = manifest.get("coreml", {}).get("op_inventory")
    if want_ops is not None and facts["op_inventory"] != want_ops:
        problems.append("op inventory differs from the manifest's")
    if problems:
        raise BuildError(f"{where}: Core ML package does not match its manifest: "
                         f"{'; '.join(problems)}; rebuild the artifact")
    return {
        "reloaded": "coremltools.models.MLModel(skip_model_load=True)",
        "checked": ["input names", "input dtypes", "enumerated input shapes == seq_buckets",
                    "output names and dtypes", "package size on disk", "MIL op inventory"],
        "size_bytes": size,
        "predict": "not run: Core ML predicts only on macOS/iOS",
    }


def validate_artifact(folder: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """Unzip the artifact's package into a temp folder and validate it (what
    ``gem-hil build`` does for a coreml artifact, cached or not)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="gem-coreml-") as tmp:
        archive = Path(folder) / manifest["entrypoint"]
        return validate_package(unzip_package(archive, Path(tmp)), manifest, where=str(archive))
