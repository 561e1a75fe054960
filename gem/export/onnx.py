"""ONNX export of GEM with dynamic batch and sequence axes, plus host inference.

Exporter choice: torch 2.13's ``torch.onnx.export(..., dynamo=True)`` (the
torch.export-based exporter, needs onnxscript). The TorchScript exporter is
deprecated; the dynamo one handles the DTR's TopK whose K depends on the
symbolic sequence length, and keeps parameter names as initializer names,
which the quantization policy relies on. Its progress chatter and the
"torchvision is not installed" warnings are silenced here.

Files: the exporter's output is re-saved either as a single ``model.onnx``
(default; protobuf's 2 GB limit is far away for tiny/edge) or with weights in
``model.onnx.data`` (``external_data=True``). Callers must treat an artifact as
a list of files, never as one path.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gem.errors import BuildError

OPSET = 18
INPUT_NAME = "input_ids"
OUTPUT_NAME = "logits"


@dataclass
class ExportInfo:
    files: list[Path]  # entrypoint first
    seconds: float
    opset: int


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence the exporter's logging/warnings for the duration of one export."""
    names = ("torch.onnx", "torch.export", "torch._dynamo", "torch.fx", "onnxscript")
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, lvl in zip(loggers, levels, strict=True):
            lg.setLevel(lvl)


def export_onnx(
    model: Any,
    out_dir: Path,
    example_ids: np.ndarray,
    file_name: str = "model.onnx",
    external_data: bool = False,
    opset: int = OPSET,
) -> ExportInfo:
    """Export ``model`` (a GemModel in eval mode) to ``out_dir/file_name``.

    ``example_ids`` int64 [batch>=2, seq>=2] of real tokens drives tracing;
    batch and seq are exported as dynamic axes (seq up to max_len_tokens).
    """
    import onnx
    import torch

    max_len = model.cfg.max_len_tokens
    if example_ids.ndim != 2 or example_ids.shape[0] < 2 or example_ids.shape[1] < 2:
        raise BuildError(f"example_ids must be [batch>=2, seq>=2], got {example_ids.shape}")
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".export-") as tmp:
        raw = Path(tmp) / "raw.onnx"
        dims = (
            {0: torch.export.Dim("batch", max=1 << 16), 1: torch.export.Dim("seq", max=max_len)},
        )
        try:
            with _quiet_exporter(), torch.no_grad():
                torch.onnx.export(
                    model.eval(),
                    (torch.from_numpy(example_ids),),
                    str(raw),
                    dynamo=True,
                    input_names=[INPUT_NAME],
                    output_names=[OUTPUT_NAME],
                    dynamic_shapes=dims,
                    opset_version=opset,
                    verbose=False,
                    external_data=True,
                )
        except Exception as exc:  # the exporter raises many unrelated types
            raise BuildError(f"torch.onnx.export failed for {model.cfg.name}: {exc}") from exc
        proto = onnx.load(str(raw), load_external_data=True)
        _strip_debug_info(proto)
        target = out_dir / file_name
        data_name = file_name + ".data"
        onnx.save_model(
            proto,
            str(target),
            save_as_external_data=external_data,
            all_tensors_to_one_file=True,
            location=data_name,
            size_threshold=1024,  # small shape constants must stay inline for ORT
        )
    try:
        onnx.checker.check_model(str(target))
    except onnx.checker.ValidationError as exc:
        raise BuildError(f"{target}: exported model fails onnx.checker: {exc}") from exc
    files = [target] + ([out_dir / data_name] if external_data else [])
    opset_found = next(
        (o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), opset
    )
    return ExportInfo(files=files, seconds=time.perf_counter() - start, opset=opset_found)


def _strip_debug_info(proto: Any) -> None:
    """Drop the exporter's per-node metadata (source stack traces, FX names).

    It is a quarter of a tiny model's file, leaks host paths into the
    artifact, and nothing on the device reads it.
    """
    for node in proto.graph.node:
        del node.metadata_props[:]
        node.doc_string = ""
    for vi in [*proto.graph.input, *proto.graph.output, *proto.graph.value_info]:
        del vi.metadata_props[:]
    for init in proto.graph.initializer:
        del init.metadata_props[:]


def make_session(path: Path, threads: int = 1, optimize: bool = True) -> Any:
    """An onnxruntime CPU session; ``optimize=False`` disables graph fusions
    (used to measure how much results move between execution configurations)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    so.graph_optimization_level = (
        ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if optimize
        else ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    )
    return ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])


def run_session(session: Any, input_ids: np.ndarray) -> np.ndarray:
    """Logits float32 [batch, num_classes] for int64 ``input_ids``."""
    return session.run(
        [OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(input_ids, dtype=np.int64)}
    )[0]
