"""Training-free, Hessian-based compression of GEM with cross-calibration.

spec       the compressed variant names and their settings (no torch)
obs        the layer solvers: SparseGPT pruning (unstructured, n:m), GPTQ
           quantization (int8 / int4, per channel or per group), and the naive
           baselines (magnitude pruning, round-to-nearest)
calibrate  layer-input Hessians from in-domain and general texts, mixed with λ
apply      compress every linear layer of a trained GemModel (experts included)

docs/compression.md has the definitions and the measured comparison. Importing
this package (and gem.compress.spec) does not import torch.
"""

from gem.compress.spec import (
    COMPRESSED_VARIANTS,
    CompressionSpec,
    base_variant,
    is_compressed,
    parse_variant,
)

__all__ = ["COMPRESSED_VARIANTS", "CompressionSpec", "base_variant", "is_compressed",
           "parse_variant"]
