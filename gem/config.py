"""GEM model configurations.

Pure Python (no torch import): the artifact cache computes its key from the
config on a cache hit, and a cache hit must not pay for importing torch.

Two named configs ship:

- ``tiny``: < 1 M parameters; used by the unit tests and the ``local`` default
  run, where a 64-token forward pass takes under a millisecond in onnxruntime.
- ``edge``: 10-30 M parameters in total but only ~5 M *active* per token (top-k
  of 16 domain experts), sized from the Pi 4 roofline in DESIGN.md: a 128-token
  pass under 100 ms leaves ~1.6 GFLOP, i.e. roughly 4-6 M active parameters.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from gem.errors import ConfigNotFoundError

#: The eight domains of the GEM paper, in label order (label = index here).
DOMAINS: tuple[str, ...] = (
    "healthcare",
    "law",
    "finance",
    "stem",
    "commonsense",
    "conversational",
    "multilingual",
    "domain-adaptive",
)

#: Byte-level vocabulary: 256 byte values followed by the special tokens.
#: Kept here (not in tokenizer.py) so config and tokenizer cannot disagree.
NUM_BYTES = 256
SPECIAL_TOKENS: tuple[str, ...] = ("<pad>", "<bos>", "<eos>", "<cls>")
VOCAB_SIZE = NUM_BYTES + len(SPECIAL_TOKENS)


@dataclass(frozen=True)
class GemConfig:
    """Hyper-parameters of one GEM model.

    Each layer is: causal self-attention, a shared "generalist" FFN every token
    gets (the light path), and a SCAR block of domain experts that only tokens
    the Dynamic Token Router (DTR) admits reach (the heavy path).
    """

    name: str
    d_model: int
    n_layers: int
    n_heads: int
    ffn_hidden: int  # shared generalist FFN (every token)
    experts_per_domain: int  # experts in each domain bank
    expert_hidden: int  # hidden width of one expert FFN
    top_k: int  # experts each admitted token attends to (SCAR sparsity)
    dtr_threshold: float  # tokens whose DTR score is below this skip the experts
    dtr_capacity: float  # target share of routable tokens the DTR admits (capacity loss)
    router_dim: int  # width of the SCAR query/key space
    # Context length: positions and the causal mask cover this many tokens (a
    # language model under test needs prefill benchmarks such as pp512).
    max_len_tokens: int = 1024
    # SCAR picks a sequence's experts from its first ``route_tokens`` tokens
    # (causal: a token at position >= route_tokens depends only on earlier
    # ones); earlier tokens take the light path only.
    route_tokens: int = 16
    # Default training recipe of build_artifact() (part of the config, hence of
    # the cache key): a few steps, enough to classify, not a quality target.
    train_steps: int = 160  # general + adaptation (a quarter) steps
    train_lr: float = 3e-3
    train_batch_size: int = 32
    domains: tuple[str, ...] = field(default=DOMAINS)
    vocab_size: int = VOCAB_SIZE
    pad_id: int = NUM_BYTES  # index of "<pad>"

    @property
    def num_experts(self) -> int:
        return len(self.domains) * self.experts_per_domain

    @property
    def num_classes(self) -> int:
        """Classification head size: one class per domain (label = domain index)."""
        return len(self.domains)

    def to_dict(self) -> dict:
        """JSON-ready dict (tuples become lists); used in cache keys and manifests."""
        d = dataclasses.asdict(self)
        d["domains"] = list(self.domains)
        return d

    def param_counts(self) -> dict[str, int]:
        """Analytic parameter counts (no torch needed); tests check them against
        the real model.

        ``active_per_token`` counts the parameters one DTR-admitted token's
        output depends on: everything except the embedding rows of other
        tokens/positions and the experts it was not routed to (top_k of
        num_experts per layer). Returned keys: total, active_per_token,
        experts_total, embedding.
        """
        d, h = self.d_model, self.expert_hidden
        attn = d * 3 * d + 3 * d + d * d + d  # qkv + out projections with biases
        norms = 3 * 2 * d  # ln_attn, ln_ffn, ln_route (weight + bias)
        ffn = d * self.ffn_hidden + self.ffn_hidden + self.ffn_hidden * d + d
        dtr = d + 1
        scar_router = d * self.router_dim + self.router_dim + self.router_dim * self.num_experts
        one_expert = d * h + h + h * d + d  # w_up, b_up, w_down, b_down
        experts = self.num_experts * one_expert
        layer = attn + norms + ffn + dtr + scar_router + experts
        embedding = self.vocab_size * d + (self.max_len_tokens + 1) * d
        head = 2 * d + d * self.num_classes + self.num_classes  # final norm + classifier
        head += d * self.vocab_size + self.vocab_size  # causal LM head (next token)
        total = embedding + self.n_layers * layer + head
        inactive = self.n_layers * (self.num_experts - self.top_k) * one_expert
        unused_embedding_rows = (self.vocab_size - 1) * d + self.max_len_tokens * d
        return {
            "total": total,
            "active_per_token": total - inactive - unused_embedding_rows,
            "experts_total": self.n_layers * experts,
            "embedding": embedding,
        }


_CONFIGS: dict[str, GemConfig] = {
    "tiny": GemConfig(
        name="tiny",
        d_model=64,
        n_layers=2,
        n_heads=4,
        ffn_hidden=128,
        experts_per_domain=1,
        expert_hidden=64,
        top_k=2,
        dtr_capacity=0.5,
        dtr_threshold=0.5,
        router_dim=32,
    ),
    "edge": GemConfig(
        name="edge",
        d_model=256,
        n_layers=6,
        n_heads=8,
        ffn_hidden=256,
        experts_per_domain=2,
        expert_hidden=512,
        top_k=2,
        dtr_capacity=0.5,
        dtr_threshold=0.5,
        router_dim=64,
        train_steps=120,
        train_lr=1e-3,
        train_batch_size=16,
    ),
}


def config_names() -> list[str]:
    """Names accepted by get_config(), sorted."""
    return sorted(_CONFIGS)


def get_config(name: str) -> GemConfig:
    """Return the named config; an unknown name raises ValueError listing the names."""
    try:
        return _CONFIGS[name]
    except KeyError:
        raise ConfigNotFoundError(
            f"unknown GEM model config {name!r}; available: {', '.join(config_names())}"
        ) from None
