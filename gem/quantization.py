"""Hybrid quantization policy: int8 where it is safe, fp32 where precision matters.

GEM's hybrid quantization is a *policy over parameter groups* (defined here,
used by the ONNX exporter and anything that inspects the model):

========== ====================================== =========
group      parameters                             hybrid-v1
========== ====================================== =========
expert     SCAR expert banks (w_up/w_down)        int8
attention  attention qkv / out projections        int8
ffn        shared generalist FFN up / down        int8
router     DTR gate, SCAR query and keys          fp32
embedding  token and position embeddings          fp32
norm       LayerNorms                             fp32
classifier final classification head              fp32
========== ====================================== =========

Why: the big matrices (experts dominate the parameter count) tolerate int8
well and are where size and bandwidth go; the router's decisions are hard
thresholds / top-k, so a small error there flips which experts a token uses,
and embeddings, norms and the head are tiny but error-sensitive.

It is applied to ONNX with ``onnxruntime.quantization.quantize_dynamic``:
every MatMul whose B input is an initializer is mapped to its parameter name
(the exporter keeps parameter names, and gem.model.Proj / the stacked expert
weights make the parameter the MatMul's B input directly), looked up in its
group, and listed in ``nodes_to_quantize`` or ``nodes_to_exclude``.
Activation x activation MatMuls (attention scores) are always kept fp32.
This module imports no torch (the cache-hit path must stay light).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gem.errors import BuildError

# Parameter-name groups. A parameter belongs to the first group one of whose
# needles occurs in its name; tests check every model parameter lands in one.
QUANT_GROUPS: dict[str, tuple[str, ...]] = {
    "expert": ("scar.w_up", "scar.w_down", "scar.b_up", "scar.b_down"),
    "attention": ("attn.qkv.", "attn.out."),
    "ffn": ("ffn.up.", "ffn.down."),
    "router": ("dtr.", "scar.query.", "scar.keys"),
    "embedding": ("tok_emb.", "pos_emb"),
    "norm": ("ln_attn.", "ln_ffn.", "ln_route.", "ln_final."),
    "lm_head": ("next_token.",),  # the causal LM head (GemModel.next_token)
    "classifier": ("head.",),
}


def quant_group(param_name: str) -> str:
    """Group of a parameter name (e.g. 'layers.0.scar.w_up' -> 'expert')."""
    for group, needles in QUANT_GROUPS.items():
        if any(n in param_name for n in needles):
            return group
    raise KeyError(
        f"parameter {param_name!r} is in no quantization group; add it to "
        "gem.quantization.QUANT_GROUPS"
    )


@dataclass(frozen=True)
class QuantPolicy:
    """Which parameter groups' MatMuls are quantized to int8."""

    name: str
    int8_groups: frozenset[str]
    description: str = ""


HYBRID_V1 = QuantPolicy(
    name="hybrid-v1",
    int8_groups=frozenset({"expert", "attention", "ffn"}),
    description="int8 experts, attention and FFN projections; fp32 router, "
    "embeddings, norms and classifier",
)
HYBRID_V2 = QuantPolicy(
    name="hybrid-v2",
    int8_groups=frozenset({"expert", "attention", "ffn", "lm_head", "embedding"}),
    description="int8 experts, attention, FFN and LM head MatMuls; int8 weight-only token "
    "and position embeddings (dequantized after the lookup); fp32 router, norms and "
    "classifier",
)
POLICIES: dict[str, QuantPolicy] = {p.name: p for p in (HYBRID_V1, HYBRID_V2)}

#: Lookup ops whose table may be stored int8 and dequantized after the lookup:
#: a Gather of rows (token embedding) and a Slice of rows (position embedding)
#: only move values, so with one scale per tensor DequantizeLinear commutes with them.
_LOOKUPS = ("Gather", "Slice")


@dataclass
class MatMulPlan:
    """Decision per MatMul node of one ONNX graph."""

    quantize: list[str] = field(default_factory=list)  # node names
    exclude: list[str] = field(default_factory=list)
    rows: list[dict[str, str]] = field(default_factory=list)  # node, weight, group, decision


_PASS_THROUGH = ("Gather", "Reshape", "Unsqueeze", "Squeeze")


def _weight_source(name: str, producers: dict[str, Any], inits: set[str]) -> tuple[str, str]:
    """(parameter name, kind) feeding a MatMul's B input.

    kind is "direct" (B is the initializer), "gathered" (B is a Gather of the
    initializer -- SCAR's selected experts -- possibly reshaped) or
    "activation" (B is computed, e.g. attention keys).
    """
    if name in inits:
        return name, "direct"
    node = producers.get(name)
    while node is not None and node.op_type in _PASS_THROUGH:
        src = node.input[0]
        if src in inits:
            return (src, "gathered") if node.op_type == "Gather" else ("", "activation")
        node = producers.get(src)
    return "", "activation"


def plan_matmuls(model: Any, policy: QuantPolicy) -> MatMulPlan:
    """Map every MatMul node of ``model`` (onnx.ModelProto) to a policy decision."""
    inits = {i.name for i in model.graph.initializer}
    producers = {out: n for n in model.graph.node for out in n.output}
    plan = MatMulPlan()
    for node in model.graph.node:
        if node.op_type != "MatMul":
            continue
        if not node.name:
            raise BuildError("an ONNX MatMul node has no name; cannot target it for quantization")
        weight, kind = _weight_source(node.input[1], producers, inits)
        group = quant_group(weight) if weight else "activation"
        decision = "int8" if group in policy.int8_groups else "fp32"
        # quantize_dynamic handles direct weights; gathered ones get our rewrite
        (plan.quantize if decision == "int8" and kind == "direct" else plan.exclude).append(
            node.name
        )
        plan.rows.append(
            {
                "node": node.name,
                "weight": weight,
                "group": group,
                "decision": decision,
                "kind": kind,
            }
        )
    return plan


def quantize_gathered_matmuls(model: Any, rows: list[dict[str, str]]) -> None:
    """Quantize MatMuls whose B input is a Gather of a weight (in place).

    quantize_dynamic only quantizes MatMuls whose B is an initializer, but
    SCAR applies the selected experts by gathering them from the stacked
    weights first (that is what makes expert compute sparse). So we store the
    stacked weight as int8 (symmetric, per tensor: scale = max|W| / 127, zero
    point 0), let the Gather/Reshape move int8 data, and replace
    ``MatMul(A, B)`` with the same pattern quantize_dynamic emits:
    ``DynamicQuantizeLinear(A) -> MatMulInteger -> Cast(float) -> Mul(a_scale * w_scale)``.
    """
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    producers = {out: n for n in model.graph.node for out in n.output}
    todo = {
        r["node"]: r["weight"] for r in rows if r["kind"] == "gathered" and r["decision"] == "int8"
    }
    done_weights: dict[str, tuple[str, str, str]] = {}
    retyped: set[str] = set()
    new_nodes = []
    for node in model.graph.node:
        if node.name not in todo:
            new_nodes.append(node)
            continue
        wname = todo[node.name]
        if wname not in done_weights:
            w = numpy_helper.to_array(inits[wname]).astype(np.float32)
            scale = float(np.max(np.abs(w))) / 127.0 or 1.0
            q = np.clip(np.round(w / scale), -127, 127).astype(np.int8)
            qname, sname, zname = f"{wname}_quantized", f"{wname}_scale", f"{wname}_zero_point"
            model.graph.initializer.remove(inits[wname])
            model.graph.initializer.extend(
                [
                    numpy_helper.from_array(q, qname),
                    numpy_helper.from_array(np.asarray(scale, dtype=np.float32), sname),
                    numpy_helper.from_array(np.asarray(0, dtype=np.int8), zname),
                ]
            )
            for n in model.graph.node:  # every Gather reading the weight now reads int8
                if n.op_type == "Gather" and n.input[0] == wname:
                    n.input[0] = qname
            done_weights[wname] = (qname, sname, zname)
        _, sname, zname = done_weights[wname]
        a, b_in = node.input[0], node.input[1]
        out = node.output[0]
        p = f"{node.name}_q"
        # tensors between the Gather and this MatMul change type: drop stale value_info
        t = b_in
        while t in producers and producers[t].op_type in _PASS_THROUGH:
            retyped.add(t)
            t = producers[t].input[0]
        new_nodes.extend(
            [
                helper.make_node(
                    "DynamicQuantizeLinear", [a], [f"{p}_a", f"{p}_as", f"{p}_az"], name=f"{p}_dql"
                ),
                helper.make_node(
                    "MatMulInteger",
                    [f"{p}_a", b_in, f"{p}_az", zname],
                    [f"{p}_i32"],
                    name=f"{p}_mmi",
                ),
                helper.make_node(
                    "Cast", [f"{p}_i32"], [f"{p}_f"], to=TensorProto.FLOAT, name=f"{p}_cast"
                ),
                helper.make_node("Mul", [f"{p}_as", sname], [f"{p}_s"], name=f"{p}_scale"),
                helper.make_node("Mul", [f"{p}_f", f"{p}_s"], [out], name=f"{p}_mul"),
            ]
        )
    del model.graph.node[:]
    model.graph.node.extend(new_nodes)
    keep = [vi for vi in model.graph.value_info if vi.name not in retyped]
    del model.graph.value_info[:]
    model.graph.value_info.extend(keep)


def quantize_lookup_tables(model: Any, groups: frozenset[str]) -> list[str]:
    """Store every embedding table of ``groups`` int8 (in place), weight-only.

    The tables are read by a Gather (token ids) or a Slice (positions), not by a
    MatMul, so neither quantize_dynamic nor the gathered-MatMul rewrite touches
    them -- and the position table alone is a fifth of tiny's weights. Stored
    symmetric per tensor (``scale = max|W| / 127``, zero point 0), the lookup
    moves int8 rows and a ``DequantizeLinear`` after it turns only the rows
    looked up back into float (dequantizing the whole 1025-row table on every
    decode step would cost more than the step). Returns the tables quantized.
    """
    import numpy as np
    from onnx import helper, numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    done: list[str] = []
    new_nodes = []
    consumers: dict[str, list[Any]] = {}
    for node in model.graph.node:
        for x in node.input:
            consumers.setdefault(x, []).append(node)
    targets = []
    for name in inits:
        users = consumers.get(name, [])
        if _group_or_none(name) == "embedding" and "embedding" in groups and users and all(
                u.op_type in _LOOKUPS and u.input[0] == name for u in users):
            targets.append(name)
    for name in targets:
        w = numpy_helper.to_array(inits[name]).astype(np.float32)
        scale = float(np.max(np.abs(w))) / 127.0 or 1.0
        q = np.clip(np.round(w / scale), -127, 127).astype(np.int8)
        model.graph.initializer.remove(inits[name])
        model.graph.initializer.extend([
            numpy_helper.from_array(q, f"{name}_quantized"),
            numpy_helper.from_array(np.asarray(scale, dtype=np.float32), f"{name}_scale"),
            numpy_helper.from_array(np.asarray(0, dtype=np.int8), f"{name}_zero_point"),
        ])
        done.append(name)
    retyped: set[str] = set()
    for node in model.graph.node:
        new_nodes.append(node)
        if node.op_type in _LOOKUPS and node.input and node.input[0] in done:
            name, out = node.input[0], node.output[0]
            node.input[0] = f"{name}_quantized"
            node.output[0] = f"{out}_int8"
            retyped.add(out)
            new_nodes.append(helper.make_node(
                "DequantizeLinear", [f"{out}_int8", f"{name}_scale", f"{name}_zero_point"],
                [out], name=f"{node.name}_dequantize"))
    del model.graph.node[:]
    model.graph.node.extend(new_nodes)
    keep = [vi for vi in model.graph.value_info if vi.name not in retyped]
    del model.graph.value_info[:]
    model.graph.value_info.extend(keep)
    return sorted(done)


class _DropQuantizerNoise(logging.Filter):
    """quantize_dynamic logs an advice ("consider pre-processing") on the root
    logger on every call; it is not actionable for our graphs."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()


@contextlib.contextmanager
def _quiet_root() -> Iterator[None]:
    flt = _DropQuantizerNoise()
    root = logging.getLogger()
    root.addFilter(flt)
    try:
        yield
    finally:
        root.removeFilter(flt)


def quantize_onnx(
    src: Path, dst: Path, policy: QuantPolicy = HYBRID_V1, external_data: bool = False
) -> dict[str, Any]:
    """Quantize ``src`` into ``dst`` with the policy and verify the result.

    Returns the manifest's ``quantization`` section. Raises BuildError when a
    MatMul the policy marks int8 did not become a MatMulInteger fed by an int8
    weight (e.g. an exporter change that routes weights through a Transpose).
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model = onnx.load(str(src), load_external_data=False)
    plan = plan_matmuls(model, policy)
    if not plan.quantize:
        raise BuildError(f"{src}: no MatMul matches policy {policy.name}; nothing to quantize")
    with _quiet_root():
        quantize_dynamic(
            model_input=str(src),
            model_output=str(dst),
            op_types_to_quantize=["MatMul"],
            nodes_to_quantize=plan.quantize,
            nodes_to_exclude=plan.exclude,
            per_channel=False,
            reduce_range=False,
            weight_type=QuantType.QInt8,
            use_external_data_format=external_data,
        )
    lookups: list[str] = []
    if any(r["kind"] == "gathered" and r["decision"] == "int8" for r in plan.rows) or \
            "embedding" in policy.int8_groups:
        qmodel = onnx.load(str(dst), load_external_data=True)
        quantize_gathered_matmuls(qmodel, plan.rows)
        lookups = quantize_lookup_tables(qmodel, policy.int8_groups)
        data = dst.with_name(dst.name + ".data")
        if data.exists():
            data.unlink()
        onnx.save_model(
            qmodel,
            str(dst),
            save_as_external_data=external_data,
            all_tensors_to_one_file=True,
            location=data.name,
            size_threshold=1024,
        )
    try:
        onnx.checker.check_model(str(dst))
    except onnx.checker.ValidationError as exc:
        raise BuildError(f"{dst}: quantized model fails onnx.checker: {exc}") from exc
    summary = summarize_quantized(onnx.load(str(dst), load_external_data=False))
    wanted = {r["weight"] for r in plan.rows if r["decision"] == "int8"}
    missing = sorted(wanted - set(summary["int8_weights"]))
    if missing:
        raise BuildError(
            f"{dst}: policy {policy.name} marks {len(missing)} weights int8 but they were not "
            f"quantized: {', '.join(missing[:5])}; check gem.quantization.plan_matmuls"
        )
    wanted_tables = {n for n in (i.name for i in model.graph.initializer)
                     if _group_or_none(n) == "embedding"} if "embedding" in policy.int8_groups \
        else set()
    if sorted(wanted_tables) != lookups:
        raise BuildError(
            f"{dst}: policy {policy.name} marks the embedding tables int8 but "
            f"{sorted(wanted_tables - set(lookups)) or lookups} were not stored int8 (a "
            "table read by something other than a Gather/Slice?); check "
            "gem.quantization.quantize_lookup_tables")
    groups: dict[str, dict[str, int]] = {}
    for r in plan.rows:
        g = groups.setdefault(r["group"], {"int8": 0, "fp32": 0})
        g[r["decision"]] += 1
    return {
        "policy": policy.name,
        "description": policy.description,
        "method": "ort quantize_dynamic: int8 per-tensor weights, dynamic uint8 activations",
        "matmul_int8": summary["matmul_integer"],
        "matmul_fp32": summary["matmul_fp32"],
        "by_group": groups,
        "int8_groups": sorted(policy.int8_groups),
        "int8_weight_only": lookups,
    }


def _group_or_none(name: str) -> str | None:
    try:
        return quant_group(name)
    except KeyError:
        return None


def summarize_quantized(model: Any) -> dict[str, Any]:
    """Count quantized vs float MatMuls in an ONNX graph and list int8 weights.

    A weight counts as int8 when its ``<name>_quantized`` initializer is INT8
    and feeds a MatMulInteger node, directly or through a Gather (experts).
    """
    import onnx

    int8_inits = {i.name for i in model.graph.initializer if i.data_type == onnx.TensorProto.INT8}
    producers = {out: n for n in model.graph.node for out in n.output}
    int8_weights: list[str] = []
    counts = {"matmul_integer": 0, "matmul_fp32": 0, "dynamic_quantize_linear": 0}
    for node in model.graph.node:
        if node.op_type == "MatMulInteger":
            counts["matmul_integer"] += 1
            weight, _ = _weight_source(node.input[1], producers, int8_inits)
            if weight:
                int8_weights.append(weight.removesuffix("_quantized"))
        elif node.op_type == "MatMul":
            counts["matmul_fp32"] += 1
        elif node.op_type == "DynamicQuantizeLinear":
            counts["dynamic_quantize_linear"] += 1
    return {**counts, "int8_weights": sorted(int8_weights)}
