"""The torch side of building an ONNX artifact (imported only on a cache miss).

Steps, in order, each failing with BuildError naming what broke:
train (deterministic) -> export fp32 -> check ONNX vs torch -> quantize
(int8 variant, hybrid policy, verified) -> reference inputs/outputs computed
with onnxruntime from the final file -> tolerance -> manifest.

Reference tolerance (``atol``): the device compares its runtime's output with
the host runtime's output for the *same* file, so differences come only from
kernels and float summation order (CPU ISA, thread count, graph fusions). We
measure that spread on the host by re-running the references with 2 threads
and graph optimisations disabled (different kernels/fusions), and set
``atol = max(floor, 10 x measured)``. Floors: fp32 1e-4 (float rounding on
O(1) logits); int8 1e-2, because DynamicQuantizeLinear derives each
activation's scale from its min/max, so a 1-ulp change upstream can move a
value by one quantization step (~range/255) and the int8 GEMM kernels differ
between x86 (AVX2/VNNI) and ARM (NEON dot product). Measured: edge-int8 built
on x86 and run by onnxruntime 1.32.0 for aarch64 (qemu-user-pi4) differs by
1.5e-3, tiny-int8 by 5e-5; the host alone by ~5e-7. A 1e-3 floor failed the
edge case, 1e-2 leaves ~6x headroom, and top-1 agreement stays exact.
"""

from __future__ import annotations

import json
import platform
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from gem.compress.spec import base_variant
from gem.config import DOMAINS, GemConfig
from gem.data import Sample
from gem.errors import BuildError
from gem.export import BuildProgress
from gem.export.common import model_fields, train_fields, train_model
from gem.export.onnx import INPUT_NAME, OUTPUT_NAME, export_onnx, make_session, run_session
from gem.manifest import MANIFEST_VERSION
from gem.quantization import HYBRID_V2, quantize_onnx, summarize_quantized
from gem.tokenizer import BOS_ID, EOS_ID, encode_batch

TORCH_PARITY_ATOL = 1e-4  # fp32 ONNX vs torch, checked at build time
#: the int8 variant's policy, for model.onnx and the generation graphs alike
INT8_POLICY = HYBRID_V2
ATOL_FLOOR = {"fp32": 1e-4, "int8": 1e-2}
REF_FILE = "reference.json"
GEN_FILE = "generation.json"
GEN_PROMPT_BYTES = 32  # reference prompts: <bos> + the first bytes of hold-out texts
GEN_NEW_TOKENS = 16


# Reference inputs must sit away from GEM's discrete routing decisions (DTR
# threshold, DTR capacity cut, SCAR top-k): a runtime difference of 1e-6 that
# flips one decision changes the logits by far more than any sensible atol. We
# measure each decision's margin in the *final* ONNX file with onnxruntime and
# keep only candidates whose smallest margin exceeds this (int8 activations
# move by ~1e-3 between kernels, fp32 ones by ~1e-6).
MIN_ROUTING_MARGIN = {"fp32": 1e-3, "int8": 5e-3}
_CANDIDATES_PER_LENGTH = 24


def _candidate_inputs(
    cfg: GemConfig, samples: list[Sample], length: int, i: int
) -> list[np.ndarray]:
    """Full-length [1, L] inputs from real texts: ``<bos>`` then one domain's
    texts joined by spaces, cut at exactly L tokens; several domains and
    start offsets so a robust one can be chosen."""
    out = []
    for j in range(_CANDIDATES_PER_LENGTH):
        domain = DOMAINS[(i * 3 + j) % len(DOMAINS)]  # first: healthcare, stem, multilingual, law
        texts = [s.text for s in samples if s.domain == domain]
        text = " ".join(texts[j // len(DOMAINS) :])
        ids = [BOS_ID, *text.encode("utf-8")][:length]
        if len(ids) == length:
            out.append(np.asarray([ids], dtype=np.int64))
    if not out:
        raise BuildError(f"data set too small for a {length}-token reference input")
    return out


class RoutingProbe:
    """Runs an ONNX GEM with its routing tensors exposed as extra outputs and
    returns the smallest margin of any discrete decision for an input."""

    def __init__(self, model_path: Path, threshold: float) -> None:
        import onnx
        import onnxruntime as ort
        from onnx import TensorProto, helper, numpy_helper

        proto = onnx.load(str(model_path), load_external_data=True)
        inits = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
        self.threshold = threshold
        self.sigmoids: list[str] = []
        self.topks: list[tuple[str, str | int]] = []  # (values tensor, K tensor name or const)
        outputs = {o.name for o in proto.graph.output}

        def expose(name: str, dtype: int) -> None:
            if name not in outputs:
                proto.graph.output.append(helper.make_tensor_value_info(name, dtype, None))
                outputs.add(name)

        for node in proto.graph.node:
            if node.op_type == "Sigmoid":
                self.sigmoids.append(node.output[0])
                expose(node.output[0], TensorProto.FLOAT)
            elif node.op_type == "TopK":
                k_name = node.input[1]
                k: str | int = int(inits[k_name].reshape(-1)[0]) if k_name in inits else k_name
                if isinstance(k, str):
                    expose(k, TensorProto.INT64)
                expose(node.input[0], TensorProto.FLOAT)
                self.topks.append((node.input[0], k))
        if not self.sigmoids or not self.topks:
            raise BuildError(f"{model_path}: no DTR Sigmoid / TopK nodes found to probe routing")
        so = ort.SessionOptions()
        so.log_severity_level = 3
        self.session = ort.InferenceSession(
            proto.SerializeToString(), sess_options=so, providers=["CPUExecutionProvider"]
        )
        self.names = [o.name for o in self.session.get_outputs()]

    def margin(self, ids: np.ndarray) -> float:
        values = dict(zip(self.names, self.session.run(None, {INPUT_NAME: ids}), strict=True))
        best = float("inf")
        for name in self.sigmoids:
            best = min(best, float(np.min(np.abs(values[name] - self.threshold))))
        for vname, k in self.topks:
            kk = int(np.asarray(values[k]).reshape(-1)[0]) if isinstance(k, str) else k
            v = -np.sort(-values[vname], axis=-1)
            if kk >= v.shape[-1]:
                continue
            lo, hi = v[..., kk - 1], v[..., kk]
            gaps = np.where(hi > 0, lo - hi, np.inf) if vname.startswith("mul") else lo - hi
            best = min(best, float(np.min(gaps)))
        return best


def reference_inputs(
    cfg: GemConfig,
    samples: list[Sample],
    lengths: tuple[int, ...],
    probe: RoutingProbe | None = None,
    min_margin: float = 0.0,
) -> tuple[list[np.ndarray], list[float]]:
    """One [1, L] int64 input per length (<= max_len) from real data-set texts,
    each the first candidate whose routing margin (``probe``) is at least
    ``min_margin`` (else the candidate with the largest margin), and those margins."""
    chosen, margins = [], []
    for i, length in enumerate(x for x in lengths if x <= cfg.max_len_tokens):
        cands = _candidate_inputs(cfg, samples, length, i)
        if probe is None:
            chosen.append(cands[0])
            margins.append(float("nan"))
            continue
        best_m, best = -1.0, cands[0]
        for c in cands:
            m = probe.margin(c)
            if m > best_m:
                best_m, best = m, c
            if m >= min_margin:
                break
        chosen.append(best)
        margins.append(best_m)
    return chosen, margins


def _max_diff(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    return max(float(np.max(np.abs(x - y))) for x, y in zip(a, b, strict=True))


def build_onnx_artifact(
    out: Path,
    *,
    model: str,
    variant: str,
    seed: int,
    train_steps: int,
    cache_key: str,
    versions: dict[str, str],
    external_data: bool = False,
    progress: BuildProgress | None = None,
) -> dict[str, Any]:
    """Build the artifact into the (empty) folder ``out``; returns the manifest.

    ``progress`` hears each stage (train, with its steps; export; check; quantize;
    references; manifest) as it starts."""
    import onnx
    import onnxruntime as ort
    import torch

    from gem.artifacts import describe_files, files_digest, timestamp, write_json, write_manifest

    report: BuildProgress = progress or (lambda stage, done, total: None)
    t0 = time.perf_counter()
    trained = train_model(model, seed, train_steps, report, variant)
    precision = base_variant(variant)  # a compressed variant ships an fp32 file
    cfg, net, data, holdout = trained.cfg, trained.net, trained.data, trained.holdout

    example, _ = encode_batch([s.text for s in holdout[:2]], max_len=24, pad_to=24)
    check_rows = trained.check_rows()
    holdout_ids = trained.holdout_ids()
    quality = trained.quality

    work = out / ".work"
    report("export to ONNX", 0, None)
    info = export_onnx(net, work, example, external_data=external_data)
    fp32_path = info.files[0]
    # torch vs ONNX, strictly, on inputs away from routing decision boundaries
    report("check ONNX against torch", 0, None)
    check_refs, _ = reference_inputs(
        cfg, data, (16, 32, 64, 128), RoutingProbe(fp32_path, cfg.dtr_threshold), 1e-3
    )
    fp32_sess = make_session(fp32_path)
    with torch.no_grad():
        torch_out = [net(torch.from_numpy(x)).numpy() for x in [*check_refs, holdout_ids]]
    fp32_out = [run_session(fp32_sess, x) for x in [*check_refs, holdout_ids]]
    torch_diff = _max_diff(torch_out[:-1], fp32_out[:-1])
    if not torch_diff <= TORCH_PARITY_ATOL:
        raise BuildError(
            f"{model}/{variant}: exported ONNX differs from torch by {torch_diff:.3g} "
            f"(> {TORCH_PARITY_ATOL}) on the reference inputs; the export is wrong "
            "(check gem/model.py for export-unfriendly code)"
        )
    # On the padded hold-out batch a few rows may sit on a routing boundary and
    # flip; more than a few means a real export problem.
    row_diff = np.max(np.abs(torch_out[-1] - fp32_out[-1]), axis=1)
    flipped = float(np.mean(row_diff > TORCH_PARITY_ATOL))
    if flipped > 0.05:
        raise BuildError(
            f"{model}/{variant}: {flipped:.0%} of hold-out rows differ between torch and "
            f"ONNX by more than {TORCH_PARITY_ATOL}; the export is wrong"
        )

    quant: dict[str, Any]
    if precision == "int8":
        report("quantize to int8", 0, None)
        quant = quantize_onnx(fp32_path, out / "model.onnx", INT8_POLICY,
                              external_data=external_data)
        int8_sess = make_session(out / "model.onnx")
        int8_hold = run_session(int8_sess, holdout_ids)
        quant["vs_fp32_holdout"] = {
            "top1_agreement": float(np.mean(int8_hold.argmax(-1) == fp32_out[-1].argmax(-1))),
            "max_abs_diff": float(np.max(np.abs(int8_hold - fp32_out[-1]))),
            "n": len(check_rows),
        }
    else:
        for f in info.files:
            shutil.move(str(f), out / f.name)
        summary = summarize_quantized(onnx.load(str(out / "model.onnx"), load_external_data=False))
        quant = {"policy": "none", "matmul_int8": 0, "matmul_fp32": summary["matmul_fp32"]}
    shutil.rmtree(work)

    report("export prefill + decode graphs", 0, None)
    generation = _export_generation(net, out, holdout, variant, check_rows)

    final = out / "model.onnx"
    report("reference outputs", 0, None)
    min_margin = MIN_ROUTING_MARGIN[precision]
    refs, margins = reference_inputs(
        cfg, data, (16, 32, 64, 128), RoutingProbe(final, cfg.dtr_threshold), min_margin
    )
    sess = make_session(final, threads=1)
    ref_out = [run_session(sess, x) for x in refs]
    alt = make_session(final, threads=2, optimize=False)
    spread = _max_diff(ref_out, [run_session(alt, x) for x in refs])
    atol = max(ATOL_FLOOR[precision], 10.0 * spread)
    write_json(
        out / REF_FILE,
        {
            "inputs": [{INPUT_NAME: x.tolist()} for x in refs],
            "outputs": [{OUTPUT_NAME: y.tolist()} for y in ref_out],
        },
    )

    # "files" are the model file(s); reference.json is hashed in "reference"
    # (the harness pushes it beside them).
    names = sorted(
        p.name for p in out.iterdir() if p.is_file() and p.name not in ("manifest.json", REF_FILE)
    )
    files = describe_files(out, names)
    (ref_entry,) = describe_files(out, [REF_FILE])
    manifest = {
        "manifest_version": MANIFEST_VERSION,
        "model": model,
        "variant": variant,
        "format": "onnx",
        "files": files,
        "entrypoint": "model.onnx",
        "sha256": files_digest(files),
        "opset": info.opset,
        "inputs": [{"name": INPUT_NAME, "dtype": "int64", "shape": ["batch", "seq"]}],
        "outputs": [{"name": OUTPUT_NAME, "dtype": "float32", "shape": ["batch", cfg.num_classes]}],
        "checked_with": {"onnxruntime": ort.__version__},
        "reference": {
            "file": REF_FILE,
            "sha256": ref_entry["sha256"],
            "size_bytes": ref_entry["size_bytes"],
            "atol": atol,
            "n": len(refs),
            "seq_lens": [int(x.shape[1]) for x in refs],
            "routing_margins": margins,
            "routing_margin_required": min_margin,
            "atol_basis": {
                "floor": ATOL_FLOOR[precision],
                "host_spread": spread,
                "rule": "max(floor, 10 x max|threads=1,optimized - threads=2,unoptimized|)",
            },
        },
        **model_fields(trained),
        "quantization": quant,
        "generation": generation,
        "quality": quality,
        "data": trained.data_summary,
        "build": {
            "seed": seed,
            "train_steps": train_steps,
            "torch": versions.get("torch", torch.__version__),
            "onnx": versions.get("onnx", onnx.__version__),
            "onnxscript": versions.get("onnxscript", "?"),
            "onnxruntime": ort.__version__,
            "python": platform.python_version(),
            "cache_key": cache_key,
            **train_fields(trained),
            "export_seconds": round(info.seconds, 3),
            "build_seconds": round(time.perf_counter() - t0, 3),
            "torch_vs_onnx_max_abs_diff": torch_diff,
            "torch_vs_onnx_holdout_rows_over_atol": flipped,
            "external_data": external_data,
            "created_utc": timestamp(),
        },
    }
    report("manifest", 0, None)
    write_manifest(out, manifest)  # checked against gem/schemas/artifact_manifest.schema.json
    return manifest


def _export_generation(net: Any, out: Path, holdout: list[Sample], variant: str = "fp32",
                       check_rows: list[Sample] | None = None) -> dict[str, Any]:
    """prefill.onnx + decode.onnx + generation.json (reference prompts and the
    tokens the shipped graphs' greedy decoding produces); BuildError when
    onnxruntime's greedy decoding of the fp32 graphs gives other tokens than
    torch's. The int8 variant then quantizes both graphs with INT8_POLICY; its
    expected tokens are the int8 graphs' own (the device checks its runtime
    against the host's, like reference.json), and how far int8 moved from fp32
    is recorded: greedy tokens vs torch, next-token top-1 vs the fp32 prefill."""
    from gem.export.generation import (
        DECODE_INPUTS,
        OUTPUTS,
        PREFILL_INPUTS,
        export_generation,
        greedy_onnx,
        greedy_torch,
    )

    files, seconds = export_generation(net, out)
    pre, dec = make_session(files[0]), make_session(files[1])
    prompts = []
    for d in ("healthcare", "law", "multilingual"):
        text = next(s.text for s in holdout if s.domain == d)
        ids = [BOS_ID, *text.encode("utf-8")][: GEN_PROMPT_BYTES + 1]
        want = greedy_torch(net, ids, GEN_NEW_TOKENS)
        got = greedy_onnx(pre, dec, ids, GEN_NEW_TOKENS)
        if got != want:
            raise BuildError(
                f"greedy decoding with prefill.onnx/decode.onnx gives {got}, torch gives "
                f"{want} for a {d} prompt; the generation export is wrong"
            )
        prompts.append({"domain": d, "input_ids": ids, "expected_tokens": want})
    precision: dict[str, Any] = {"precision": "fp32"}
    if variant == "int8":
        precision = _quantize_generation(files, pre, prompts, check_rows or holdout[:128])
    (out / GEN_FILE).write_text(json.dumps({"new_tokens": GEN_NEW_TOKENS, "prompts": prompts}))
    cfg = net.cfg
    return {
        **precision,
        "prefill": files[0].name,
        "decode": files[1].name,
        "reference_file": GEN_FILE,
        "tokens": "bytes",
        "prefill_inputs": list(PREFILL_INPUTS),
        "decode_inputs": list(DECODE_INPUTS),
        "outputs": list(OUTPUTS),
        "cache_shape": ["layers", "batch", "heads", "positions", "head_dim"],
        "n_layers": cfg.n_layers,
        "n_heads": cfg.n_heads,
        "head_dim": cfg.d_model // cfg.n_heads,
        "num_experts": cfg.num_experts,
        "eos_id": EOS_ID,
        "bos_id": BOS_ID,
        "max_len_tokens": cfg.max_len_tokens,
        "parity": "greedy tokens equal torch's on every reference prompt (checked at build)",
        "export_seconds": round(seconds, 3),
    }


def _quantize_generation(files: list[Path], fp32_prefill: Any, prompts: list[dict[str, Any]],
                         rows: list[Sample]) -> dict[str, Any]:
    """Quantize prefill/decode in place (INT8_POLICY); the prompts' expected tokens
    become the int8 graphs' greedy tokens; returns the manifest's precision facts."""
    from gem.export.generation import greedy_onnx, last_token_logits

    with_fp32 = [p["input_ids"] for p in prompts]
    fp32_next = [last_token_logits(fp32_prefill, ids) for ids in _prefixes(rows)]
    quant: dict[str, Any] = {}
    for f in files:
        tmp = f.with_name(f.stem + ".int8.onnx")
        quant[f.name] = quantize_onnx(f, tmp, INT8_POLICY)
        tmp.replace(f)
    pre, dec = make_session(files[0]), make_session(files[1])
    same = total = 0
    for p, ids in zip(prompts, with_fp32, strict=True):
        got = greedy_onnx(pre, dec, ids, GEN_NEW_TOKENS)
        same += sum(a == b for a, b in zip(got, p["expected_tokens"], strict=True))
        total += len(got)
        p["torch_fp32_tokens"] = p["expected_tokens"]
        p["expected_tokens"] = got
    int8_next = [last_token_logits(pre, ids) for ids in _prefixes(rows)]
    agree = float(np.mean([np.argmax(a) == np.argmax(b)
                           for a, b in zip(fp32_next, int8_next, strict=True)]))
    return {"precision": "int8", "quantization": {
        name: {k: q[k] for k in ("policy", "matmul_int8", "matmul_fp32", "int8_weight_only")}
        for name, q in quant.items()},
        "vs_fp32": {"greedy_token_agreement_with_torch": same / total,
                    "next_token_top1_agreement": agree, "n": len(int8_next)}}


def _prefixes(rows: list[Sample]) -> list[list[int]]:
    """One prompt per row: <bos> + the text's bytes (at most 256), for next-token checks."""
    return [[BOS_ID, *s.text.encode("utf-8")][:256] for s in rows]
