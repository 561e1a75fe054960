"""Compressed artifact variants: their names and the settings each name stands for.

No torch here: the artifact cache key and the harness's variant choices read
this table on every run, and a cache hit must stay torch-free.

A compressed variant is ``<method>-<calibration>``:

============ ======================================================================
method       what it does to every linear layer of the int8 policy's groups
             (experts, attention, shared FFN; never router, embeddings, heads)
============ ======================================================================
sparse50     SparseGPT (OBS) unstructured pruning to 50 % zeros
sparse24     SparseGPT 2:4 semi-structured pruning (2 zeros in every 4 inputs)
gptq8        GPTQ weight quantization, symmetric int8, one scale per output channel
gptq4        GPTQ weight quantization, symmetric int4, one scale per 32 inputs
============ ======================================================================

============ ======================================================================
calibration  where the layer Hessians ``H = X^T X`` come from
============ ======================================================================
gen          general data only: the seven domains other than the target domain
dom          in-domain data only: the target domain (the one GEM is adapted to)
mix          cross-calibration: ``H = λ H_dom + (1 - λ) H_gen`` with λ = 0.5,
             each side normalised by its own token count (so λ, not the number
             of texts, sets the balance)
============ ======================================================================

The file a compressed variant ships is fp32 (ONNX / LiteRT float kernels): the
pruned zeros and the GPTQ grid values are in the weights, and the manifest's
``compression`` section says so. ``CompressionSpec.to_dict()`` is part of the
artifact cache key, so changing any setting here builds a new artifact.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

METHODS = ("sparse50", "sparse24", "gptq8", "gptq4")
CALIBRATIONS = ("gen", "dom", "mix")
#: every compressed variant name, in a stable order (the harness offers these)
COMPRESSED_VARIANTS: tuple[str, ...] = tuple(f"{m}-{c}" for m in METHODS for c in CALIBRATIONS)
#: λ of the "mix" calibration: the in-domain share of the Hessian
MIX_LAMBDA = 0.5
#: texts drawn from each side (general, in-domain) for calibration
CALIBRATION_TEXTS = 128
CALIBRATION_MAX_LEN = 128


@dataclass(frozen=True)
class CompressionSpec:
    """Everything that determines what compression does to a trained model."""

    method: str  # "sparsegpt" | "gptq"
    sparsity: float = 0.0  # unstructured share of zeros (sparsegpt, n_m None)
    n_m: tuple[int, int] | None = None  # (n zeros, in every m inputs)
    bits: int = 0  # gptq
    group_size: int | None = None  # gptq: inputs per scale (None: per output channel)
    calibration: str = "mix"
    domain_weight: float = MIX_LAMBDA  # λ
    calibration_texts: int = CALIBRATION_TEXTS
    calibration_max_len: int = CALIBRATION_MAX_LEN
    damp: float = 0.01  # fraction of mean(diag H) added to the diagonal
    block_size: int = 128
    groups: tuple[str, ...] = ("expert", "attention", "ffn")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["n_m"] = list(self.n_m) if self.n_m else None
        d["groups"] = list(self.groups)
        return d


def is_compressed(variant: str) -> bool:
    return variant in COMPRESSED_VARIANTS


def base_variant(variant: str) -> str:
    """The precision of the file a variant ships: compressed variants are fp32
    files (their zeros / grid values live in the weights)."""
    return "fp32" if is_compressed(variant) else variant


def parse_variant(variant: str) -> CompressionSpec:
    """The settings a compressed variant name stands for (ValueError listing the names)."""
    if variant not in COMPRESSED_VARIANTS:
        raise ValueError(f"{variant!r} is not a compressed variant; known: "
                         f"{', '.join(COMPRESSED_VARIANTS)}")
    method, calib = variant.split("-")
    lam = {"gen": 0.0, "dom": 1.0, "mix": MIX_LAMBDA}[calib]
    if method == "sparse50":
        return CompressionSpec("sparsegpt", sparsity=0.5, calibration=calib, domain_weight=lam)
    if method == "sparse24":
        return CompressionSpec("sparsegpt", sparsity=0.5, n_m=(2, 4), calibration=calib,
                               domain_weight=lam)
    if method == "gptq8":
        return CompressionSpec("gptq", bits=8, calibration=calib, domain_weight=lam)
    return CompressionSpec("gptq", bits=4, group_size=32, calibration=calib, domain_weight=lam)
