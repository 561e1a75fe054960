"""LiteRT (TFLite) export of GEM with litert-torch, int8 with ai-edge-quantizer,
host inference with ai-edge-litert.

Why one signature per sequence-length bucket: litert-torch 0.10 cannot export a
dynamic sequence length (the DTR's capacity and the SCAR TopK depend on it), so
the file holds one signature per bucket (``seq_16``, ``seq_32``, ... up to the
model's max_len_tokens), converted together so they share one copy of the
weights. A device picks the smallest bucket that fits and pads with ``<pad>``
(the model masks padding; the DTR capacity is that of the bucket).

Rewrites for the runtime: LiteRT's STABLEHLO_SCATTER kernel refuses the
scatter-add SCAR uses to put expert rows back at their token positions ("Only
update, Add, ... are currently supported", failing at AllocateTensors), so the
export swaps ``SparseCrossAttentionRouter.scatter_tokens`` on a copy of the
model for a one-hot matmul that computes the same sum (exact: each row is added
once, at its index). Likewise the selection of the top-k experts' stacked
weights (``take_experts``: an ``index_select``, a GATHER whose table the
quantizer leaves float32) becomes a one-hot matmul, so the experts -- most of
GEM's weights -- are int8 in the int8 variant. The build checks the result
against the untouched torch model, so neither swap can silently change what is
computed.

I/O: litert-torch turns int64 inputs into int32 (``enable_x64=False``, what
on-device runtimes support): ``input_ids`` is int32 ``[1, L]``, ``logits``
float32 ``[1, num_classes]``.

Quantization (ai-edge-quantizer 0.10 on the fp32 file): ``int8`` is its
dynamic-range int8 recipe, per tensor (int8 weights of FULLY_CONNECTED /
BATCH_MATMUL / EMBEDDING_LOOKUP, activations quantized on the fly). Constants
that are no op's weight (the sliced position embeddings and causal mask of each
bucket) stay as they are: the manifest's precision summary counts both.
"""

from __future__ import annotations

import contextlib
import copy
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gem.errors import BuildError
from gem.export.common import named_io, quiet_converter

INPUT_NAME = "input_ids"
OUTPUT_NAME = "logits"
SMALLEST_BUCKET = 16


def seq_buckets(max_len: int) -> tuple[int, ...]:
    """Powers of two from 16 below max_len, then max_len itself (so every
    length up to the model's limit has a bucket)."""
    out, b = [], SMALLEST_BUCKET
    while b < max_len:
        out.append(b)
        b *= 2
    return (*out, max_len)


def signature_name(bucket: int) -> str:
    return f"seq_{bucket}"


@dataclass
class TfliteExport:
    path: Path
    seconds: float
    buckets: tuple[int, ...]


def _onehot_scatter(x: Any, sel_t: Any, y: Any) -> Any:
    """scatter_add of rows ``y [B, C, d]`` at ``sel_t [B, C]`` as a one-hot matmul."""
    import torch

    onehot = (sel_t.unsqueeze(-1) == torch.arange(x.shape[1], dtype=sel_t.dtype)).to(y.dtype)
    return torch.matmul(onehot.transpose(1, 2), y)  # [B, T, C] @ [B, C, d]


def _onehot_take(weight: Any, flat: Any) -> Any:
    """``weight.index_select(0, flat)`` as one-hot ``[n, E] @ weight [E, rest]``: a
    matmul with a constant weight, which the dynamic-range recipe stores int8
    (a Gather's table it leaves float32). Exact: each row picks one expert."""
    import torch

    n_exp = weight.shape[0]
    onehot = (flat.unsqueeze(-1) == torch.arange(n_exp, dtype=flat.dtype)).to(weight.dtype)
    return torch.matmul(onehot, weight.reshape(n_exp, -1)).reshape(-1, *weight.shape[1:])


def _onehot_select(z: Any, idx: Any) -> Any:
    """``z.gather(2, idx)`` over the expert axis as ``z [B, T, E] @ onehot [B, E, k]``:
    no index grid constant per signature. Exact: each column picks one expert."""
    import torch

    onehot = (idx.unsqueeze(1) == torch.arange(z.shape[-1], dtype=idx.dtype).view(1, -1, 1))
    return torch.matmul(z, onehot.to(z.dtype))


def strip_tensor_names(path: Path) -> None:
    """Rewrite the .tflite without the tensor names no signature exposes (in place).

    litert-torch names every tensor after its module path (~130 bytes each,
    ~40 KB per signature for tiny: a tenth of the int8 file), and nothing reads
    them at run time: signatures map their inputs and outputs by index, and
    those tensors keep their names. Only for a FINAL file: ai-edge-quantizer
    keys its calibration and parameters by tensor name, so it must see the
    named float file. Buffers the quantizer appended after the flatbuffer
    (offset/size) are moved inline, which repacking needs."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as fb

    raw = path.read_bytes()
    model = fb.ModelT.InitFromObj(fb.Model.GetRootAsModel(raw, 0))
    for buf in model.buffers:
        if (buf.offset or 0) > 1:
            buf.data = np.frombuffer(raw[buf.offset: buf.offset + buf.size], dtype=np.uint8)
            buf.offset = buf.size = 0
    keep = {(sd.subgraphIndex, t.tensorIndex) for sd in model.signatureDefs or []
            for t in [*(sd.inputs or []), *(sd.outputs or [])]}
    for si, sg in enumerate(model.subgraphs):
        for ti, tensor in enumerate(sg.tensors):
            if (si, ti) not in keep:
                tensor.name = b""
    builder = flatbuffers.Builder(len(raw))
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    path.write_bytes(bytes(builder.Output()))


def _runtime_positions(input_ids: Any, past: int) -> Any:
    """Positions 0..T-1 computed from the input at run time (a cumulative sum over
    ``input_ids >= 0``, always true for token ids), so the converter cannot fold
    them: each signature then computes its causal mask and looks its position
    rows up in the one shared table instead of storing both as constants."""
    import torch

    ones = (input_ids[0] >= 0).to(torch.int32)
    return torch.cumsum(ones, 0) - 1 + past


def litert_friendly(model: Any) -> Any:
    """A copy of ``model`` with the scatter LiteRT cannot run swapped out, and
    positions computed at run time."""
    net = copy.deepcopy(model).eval()
    net.positions = _runtime_positions
    swapped = 0
    for module in net.modules():
        if type(module).__name__ == "SparseCrossAttentionRouter":
            module.scatter_tokens = _onehot_scatter
            module.take_experts = _onehot_take
            module.select_scores = _onehot_select
            swapped += 1
    if not swapped:
        raise BuildError("no SparseCrossAttentionRouter found to rewrite for LiteRT")
    return net


def quiet() -> contextlib.AbstractContextManager[None]:
    """Silence the converter's and quantizer's progress lines and warnings
    (the harness shows its own progress), and absl/TF logging on stderr."""
    return quiet_converter(("torch.export", "torch._dynamo", "torch.fx", "absl", "litert_torch",
                            "root"), {"TF_CPP_MIN_LOG_LEVEL": "3"})


def export_tflite(model: Any, path: Path, buckets: tuple[int, ...]) -> TfliteExport:
    """Convert ``model`` (a GemModel) into one .tflite with a signature per bucket."""
    import torch

    try:
        import litert_torch
    except ImportError as exc:
        raise BuildError(f"a tflite artifact needs litert-torch ({exc}); install the litert "
                         "extra: pip install -e '.[litert]'") from None

    net = named_io(litert_friendly(model), OUTPUT_NAME)
    conv = litert_torch.Converter()
    for b in buckets:
        # a real-token example (not pad): the trace must not specialise on padding
        example = torch.full((1, b), 65, dtype=torch.long)
        conv.signature(signature_name(b), net, sample_kwargs={INPUT_NAME: example})
    path.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    try:
        with quiet(), torch.no_grad():
            conv.convert().export(str(path))
    except Exception as exc:  # the converter raises many unrelated types
        raise BuildError(f"litert-torch conversion failed for {model.cfg.name}: {exc}") from exc
    return TfliteExport(path, time.perf_counter() - start, tuple(buckets))


def quantize_dynamic_int8(src: Path, dst: Path) -> dict[str, Any]:
    """ai-edge-quantizer's dynamic-range int8 (int8 weights, float activations), per tensor.

    Per tensor, not the recipe's default per channel: the quantization parameters
    live on each signature's tensors, so per-channel scales and zero points are
    stored once per bucket -- for the one-hot expert weights (4096 output
    channels of 8 inputs each in tiny) they outweighed the int8 weights
    themselves (measured: 0.79x fp32 per channel, 0.40x per tensor, two buckets).
    Per tensor is also what the ONNX int8 variant uses (gem/quantization.py)."""
    from ai_edge_quantizer import qtyping, recipe_manager

    rm = recipe_manager.RecipeManager()
    rm.add_dynamic_config(regex=".*", operation_name=qtyping.TFLOperationName.ALL_SUPPORTED,
                          num_bits=8, granularity=qtyping.QuantGranularity.TENSORWISE)
    _quantize(src, dst, rm, None, "dynamic int8")
    return {
        "policy": "dynamic_wi8_afp32_tensorwise",
        "description": "ai-edge-quantizer dynamic range: int8 per-tensor weights of every "
                       "supported op (matmuls incl. the one-hot expert selection, embedding "
                       "lookup), float32 activations quantized at run time",
        "method": "ai_edge_quantizer RecipeManager.add_dynamic_config(num_bits=8, "
                  "granularity=TENSORWISE)",
    }


def quantize_static_int8(src: Path, dst: Path,
                         calibration: dict[str, list[dict[str, np.ndarray]]]) -> dict[str, Any]:
    """ai-edge-quantizer's full-integer int8 (static range): int8 weights per tensor
    and int8 activations whose ranges come from ``calibration`` (per signature,
    a list of ``{input_name: int32 [1, L]}``: real training texts padded to the
    bucket). Where the quantizer has no int8 kernel for an op it leaves it float
    (the precision summary counts what happened)."""
    from ai_edge_quantizer import qtyping, recipe_manager

    rm = recipe_manager.RecipeManager()
    rm.add_static_config(regex=".*", operation_name=qtyping.TFLOperationName.ALL_SUPPORTED,
                         activation_num_bits=8, weight_num_bits=8,
                         weight_granularity=qtyping.QuantGranularity.TENSORWISE)
    _quantize(src, dst, rm, calibration, "full-integer int8")
    return {
        "policy": "static_wi8_ai8_tensorwise",
        "description": "ai-edge-quantizer static range: int8 per-tensor weights and int8 "
                       "activations calibrated on training texts, for every op it supports",
        "method": "ai_edge_quantizer RecipeManager.add_static_config(activation_num_bits=8, "
                  "weight_num_bits=8, TENSORWISE) + Quantizer.calibrate",
        "calibration": {sig: len(rows) for sig, rows in calibration.items()},
    }


def _quantize(src: Path, dst: Path, rm: Any, calibration: dict[str, Any] | None,
              what: str) -> None:
    """Run ai-edge-quantizer with recipe manager ``rm`` (calibrating first when
    given data), write ``dst`` and strip its tensor names."""
    from ai_edge_quantizer import quantizer

    try:
        with quiet():
            q = quantizer.Quantizer(str(src), rm.get_quantization_recipe())
            result = q.calibrate(calibration, num_threads=1) if calibration else None
            q.quantize(result, enable_progress_report=False).export_model(str(dst),
                                                                          overwrite=True)
    except Exception as exc:  # noqa: BLE001 - the quantizer raises many types
        raise BuildError(f"{src}: ai-edge-quantizer {what} failed: {exc}") from exc
    strip_tensor_names(dst)


def make_interpreter(path: Path, threads: int = 1, reference_kernels: bool = False) -> Any:
    """An ai-edge-litert Interpreter (XNNPACK by default; ``reference_kernels``
    = TFLite's reference kernels, no delegate: used to measure kernel spread)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    kind = OpResolverType.BUILTIN_REF if reference_kernels else OpResolverType.AUTO
    return Interpreter(model_path=str(path), num_threads=threads,
                       experimental_op_resolver_type=kind)


def run_tflite(interp: Any, input_ids: np.ndarray) -> np.ndarray:
    """Logits float32 [1, num_classes] for one [1, L] input whose L is a bucket."""
    runner = interp.get_signature_runner(signature_name(int(input_ids.shape[1])))
    out = runner(**{INPUT_NAME: np.ascontiguousarray(input_ids, dtype=np.int32)})[OUTPUT_NAME]
    return dequantized(out, runner.get_output_details()[OUTPUT_NAME])


def dequantized(value: np.ndarray, details: dict[str, Any]) -> np.ndarray:
    """Float32 logits from a signature output: a full-integer model's int8 output
    is ``(q - zero_point) * scale`` (its quantization parameters); float passes."""
    if value.dtype == np.float32:
        return value
    scale, zero = details["quantization"]
    return ((value.astype(np.float32) - zero) * scale).astype(np.float32)


def pad_to_bucket(row: np.ndarray, buckets: tuple[int, ...], pad_id: int,
                  dtype: Any = np.int32) -> np.ndarray:
    """One row without its padding, right-padded to its bucket: ``[1, bucket]``."""
    real = row[row != pad_id]
    bucket = next(b for b in buckets if b >= len(real))
    x = np.full((1, bucket), pad_id, dtype=dtype)
    x[0, : len(real)] = real
    return x


def run_padded(interp: Any, ids: np.ndarray, buckets: tuple[int, ...], pad_id: int
               ) -> np.ndarray:
    """Logits [N, classes] for rows of any length <= the largest bucket, each
    right-padded to its bucket (as the agent does)."""
    return np.stack([run_tflite(interp, pad_to_bucket(r, buckets, pad_id))[0] for r in ids])


_TFL_TYPES = {0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 9: "int8",
              7: "int16", 10: "float64", 6: "bool"}


def op_inventory(path: Path) -> dict[str, Any]:
    """Per signature: op counts by name, and the precision of constant weights
    (tensor dtype per op kind), read from the flatbuffer itself."""
    from ai_edge_litert import schema_py_generated as fb

    model = fb.ModelT.InitFromObj(fb.Model.GetRootAsModel(path.read_bytes(), 0))
    names = {v: k for k, v in vars(fb.BuiltinOperator).items() if not k.startswith("_")}
    subgraph_of = {sig.signatureKey.decode(): sig.subgraphIndex for sig in model.signatureDefs}
    out: dict[str, Any] = {}
    for key, index in sorted(subgraph_of.items(), key=lambda kv: kv[1]):
        sg = model.subgraphs[index]
        ops: Counter[str] = Counter()
        weights: dict[str, Counter[str]] = {}
        for op in sg.operators or []:
            code = model.operatorCodes[op.opcodeIndex]
            name = names.get(max(code.builtinCode, code.deprecatedBuiltinCode), "CUSTOM")
            ops[name] += 1
            for t in op.inputs if op.inputs is not None else []:
                if t < 0:
                    continue
                tensor = sg.tensors[t]
                buf = model.buffers[tensor.buffer]
                if (buf.data is not None and len(buf.data)) or buf.size:
                    if tensor.shape is not None and len(tensor.shape) >= 2:
                        dtype = _TFL_TYPES.get(tensor.type, str(tensor.type))
                        weights.setdefault(name, Counter())[dtype] += 1
        out[key] = {"ops_total": sum(ops.values()), "ops": dict(sorted(ops.items())),
                    "weights_by_op": {k: dict(v) for k, v in sorted(weights.items())}}
    return out
