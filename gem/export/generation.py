"""ONNX export of GEM for generation: a prefill graph and a decode-step graph
with the KV cache (and SCAR's routing state) as explicit inputs and outputs.

``prefill.onnx``: ``input_ids`` int64 ``[batch, seq]`` -> ``logits`` float32
``[batch, vocab]`` (the last position's next-token logits), ``present_k`` /
``present_v`` float32 ``[layers, batch, heads, seq, head_dim]``, ``route_sum``
float32 ``[layers, batch, experts]``.

``decode.onnx``: ``input_ids`` ``[batch, 1]``, ``past_k`` / ``past_v`` ``[layers,
batch, heads, past, head_dim]``, ``past_route_sum`` ``[layers, batch, experts]``
-> ``logits`` ``[batch, vocab]``, ``present_k`` / ``present_v`` with ``past + 1``
positions, ``route_sum``. ``seq`` and ``past`` are dynamic (up to
``max_len_tokens``); the position of the new token is ``past`` (read from the
cache's shape), so the device needs no position input.

Greedy decoding with the two graphs must give the same tokens as torch's greedy
decoding (``GemModel.step``) on the reference prompts: checked at build time
(:func:`greedy_onnx` vs :func:`greedy_torch`), and the prompts with their
expected tokens go into ``generation.json`` for the device to check too.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from gem.errors import BuildError
from gem.export.onnx import OPSET, _quiet_exporter, _strip_debug_info

PREFILL_INPUTS = ("input_ids",)
DECODE_INPUTS = ("input_ids", "past_k", "past_v", "past_route_sum")
OUTPUTS = ("logits", "present_k", "present_v", "route_sum")


def _export(module: Any, args: tuple, names: tuple[str, ...], dims: tuple, target: Path) -> None:
    import onnx
    import torch

    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".export-") as tmp:
        raw = Path(tmp) / "raw.onnx"
        try:
            with _quiet_exporter(), torch.no_grad():
                torch.onnx.export(
                    module.eval(), args, str(raw), dynamo=True, input_names=list(names),
                    output_names=list(OUTPUTS), dynamic_shapes=dims, opset_version=OPSET,
                    verbose=False, external_data=True,
                )
        except Exception as exc:  # the exporter raises many unrelated types
            raise BuildError(f"torch.onnx.export of {target.name} failed: {exc}") from exc
        proto = onnx.load(str(raw), load_external_data=True)
        _strip_debug_info(proto)
        onnx.save_model(proto, str(target))
    onnx.checker.check_model(str(target))


def export_generation(model: Any, out_dir: Path) -> tuple[list[Path], float]:
    """Export prefill.onnx and decode.onnx of ``model`` (a GemModel in eval mode)."""
    import torch
    from torch.export import Dim

    from gem.model import DecodeGraph, PrefillGraph

    cfg = model.cfg
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    batch = Dim("batch", max=1 << 10)
    seq = Dim("seq", max=cfg.max_len_tokens)
    past = Dim("past", max=cfg.max_len_tokens - 1)
    ids = torch.full((2, 24), 101, dtype=torch.int64)
    prefill = out_dir / "prefill.onnx"
    _export(PrefillGraph(model), (ids,), PREFILL_INPUTS, ({0: batch, 1: seq},), prefill)
    with torch.no_grad():
        _, k, v, r = model.step(ids)
    decode = out_dir / "decode.onnx"
    cache = {0: None, 1: batch, 3: past}
    _export(
        DecodeGraph(model), (ids[:, :1], k, v, r), DECODE_INPUTS,
        ({0: batch}, cache, cache, {1: batch}), decode,
    )
    return [prefill, decode], time.perf_counter() - start


def greedy_torch(model: Any, prompt: list[int], new_tokens: int) -> list[int]:
    """Greedy next-token decoding with torch and the KV cache."""
    import torch

    with torch.no_grad():
        logits, k, v, r = model.step(torch.tensor([prompt], dtype=torch.int64))
        out = []
        for _ in range(new_tokens):
            nxt = int(logits[0].argmax())
            out.append(nxt)
            logits, k, v, r = model.step(torch.tensor([[nxt]], dtype=torch.int64), k, v, r)
    return out


def greedy_onnx(prefill: Any, decode: Any, prompt: list[int], new_tokens: int) -> list[int]:
    """The same greedy decoding with onnxruntime sessions of the two graphs."""
    logits, k, v, r = prefill.run(list(OUTPUTS), {"input_ids": np.asarray([prompt], np.int64)})
    out = []
    for _ in range(new_tokens):
        nxt = int(np.argmax(logits[0]))
        out.append(nxt)
        logits, k, v, r = decode.run(
            list(OUTPUTS),
            {"input_ids": np.asarray([[nxt]], np.int64), "past_k": k, "past_v": v,
             "past_route_sum": r},
        )
    return out


def last_token_logits(prefill: Any, prompt: list[int]) -> np.ndarray:
    """The prefill graph's next-token logits ``[vocab]`` for one prompt."""
    return prefill.run(["logits"], {"input_ids": np.asarray([prompt], np.int64)})[0][0]
