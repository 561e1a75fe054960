"""Export backends that turn a trained GemModel into device files.

One module per format (``onnx`` now; ``tflite`` and ``coreml`` later). Each
backend writes model file(s) into a folder and runs them on the host so the
artifact's reference outputs come from the same runtime the device uses.
Importing this package does not import torch.
"""

from __future__ import annotations

#: Formats build_artifact() accepts, and the variants each supports.
FORMATS: dict[str, tuple[str, ...]] = {"onnx": ("fp32", "int8")}
