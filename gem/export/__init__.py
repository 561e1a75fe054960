"""Export backends that turn a trained GemModel into device files.

One module per format (``onnx``; ``tflite`` for LiteRT; ``coreml`` for Core ML). Each
backend writes model file(s) into a folder and runs them on the host so the
artifact's reference outputs come from the same runtime the device uses.
Importing this package does not import torch.
"""

from __future__ import annotations

from collections.abc import Callable

from gem.compress.spec import COMPRESSED_VARIANTS

#: Formats build_artifact() accepts, and the variants each supports (the
#: compressed ones, gem/compress, are fp32 files of a pruned / GPTQ model;
#: Core ML and rknn have none yet: their builds convert the trained model itself).
FORMATS: dict[str, tuple[str, ...]] = {"onnx": ("fp32", "int8", *COMPRESSED_VARIANTS),
                                       "tflite": ("fp32", "int8", "int8_full",
                                                  *COMPRESSED_VARIANTS),
                                       "coreml": ("fp16", "int8"),
                                       "rknn": ("fp16", "int8")}

#: The packages whose versions change what a format's build writes: part of its
#: cache key and its manifest (a format's key ignores the others' packages).
FORMAT_PACKAGES: dict[str, tuple[str, ...]] = {
    "onnx": ("torch", "onnx", "onnxscript", "onnxruntime"),
    "tflite": ("torch", "litert-torch", "ai-edge-litert", "ai-edge-quantizer"),
    "coreml": ("torch", "coremltools"),
    # rknn-toolkit2 lives in its own environment (.venv-rknn): gem.artifacts
    # reads its version there (gem.export.rknn.toolkit_version)
    "rknn": ("torch", "onnx", "onnxscript", "rknn-toolkit2"),
}

#: What every backend's builder takes as ``progress``: called as
#: ``progress(stage, done, total)`` when a stage starts (done 0, total None when
#: it is not counted) and after each training step (done/total steps). A plain
#: callback, so gem needs no progress library and never imports the harness,
#: whose harness.progress Task is one.
BuildProgress = Callable[[str, int, int | None], None]
