"""GEM (Generalized Edge Model) in PyTorch.

Definitions used throughout the project (docs/gem.md repeats them with formulas):

Dynamic Token Router (DTR)
    A per-token scalar gate ``s_t = sigmoid(w . LN(x_t) + b)`` computed in every
    layer. Tokens with ``s_t >= threshold`` that are not padding are
    *admitted*; per sequence the ``C = ceil(dtr_capacity * T)`` admitted tokens
    with the highest ``s_t`` are gathered and sent through the SCAR experts
    (the heavy path), their expert output scaled by ``s_t``. All other tokens
    take only the light path (attention + the shared generalist FFN), so the
    expert work really shrinks. Implemented with masks, TopK and Gather/Scatter
    (no data-dependent Python control flow), so it exports to ONNX with a
    dynamic sequence length. Training uses a straight-through estimator for
    the hard threshold.

Sparse Cross-Attention Router (SCAR)
    A cross-attention from tokens to the domain expert banks (8 domains x
    ``experts_per_domain`` experts): keys are one learned vector per expert,
    queries ``q_t = W_q LN(x_t)``, logits ``z_te = q_t . k_e / sqrt(r)``. Each
    sequence selects the ``top_k`` experts with the highest mean logit over its
    real tokens (domain is a property of the text); each dispatched token
    attends to those k experts with ``softmax_k(z_te)``. Every other expert gets
    exactly zero weight and is never computed: the selected experts' stacked
    weights are gathered and applied with MatMul, so the expert compute per
    sequence is ``top_k`` experts x C tokens.

Experts are *stacked* weights ``w_up [E, d, h]`` / ``w_down [E, h, d]``; the
selected ones are taken with ``index_select`` (an ONNX Gather of the named
initializer) and applied with ``torch.matmul``. quantize_dynamic does not
quantize a MatMul fed through a Gather, so gem/quantization.py rewrites exactly
that pattern to int8 (int8 stacked weights, Gather of int8, MatMulInteger).
All other projections use :class:`Proj`, whose weight is stored ``[in, out]``:
the ONNX MatMul's B input is then the named parameter, which quantize_dynamic
quantizes and the hybrid policy selects by parameter name.

Forward: ``input_ids`` int64 ``[batch, seq]`` -> ``logits`` float32
``[batch, num_classes]`` (masked mean pooling over non-pad tokens, then a
linear classifier). ``forward(ids, return_stats=True)`` also returns routing
statistics for training and analysis; the exported graph never computes them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from gem.config import GemConfig
from gem.quantization import quant_group


class Proj(nn.Module):
    """Affine map ``x @ weight + bias`` with ``weight`` stored ``[in, out]``.

    Unlike nn.Linear (``[out, in]``, exported as Gemm or Transpose+MatMul) this
    exports to a MatMul whose B input is the parameter's own initializer, which
    quantize_dynamic can quantize and the policy can find by name.
    """

    def __init__(self, d_in: int, d_out: int, bias: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(d_in, d_out))
        self.bias = nn.Parameter(torch.zeros(d_out)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.matmul(x, self.weight)
        return y + self.bias if self.bias is not None else y


class CausalSelfAttention(nn.Module):
    """Multi-head causal attention.

    The causal mask comes from the model's prebuilt buffer (one per model, not
    per layer, so the ONNX file holds it once), already sliced to ``[T, T]``.
    """

    def __init__(self, cfg: GemConfig) -> None:
        super().__init__()
        if cfg.d_model % cfg.n_heads:
            raise ValueError(f"d_model {cfg.d_model} not divisible by n_heads {cfg.n_heads}")
        self.n_heads = cfg.n_heads
        self.head_dim = cfg.d_model // cfg.n_heads
        self.qkv = Proj(cfg.d_model, 3 * cfg.d_model)
        self.out = Proj(cfg.d_model, cfg.d_model)

    def forward(self, x: torch.Tensor, causal: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).split(d, dim=-1)
        q = q.reshape(b, t, self.n_heads, self.head_dim).transpose(1, 2)
        k = k.reshape(b, t, self.n_heads, self.head_dim).transpose(1, 2)
        v = v.reshape(b, t, self.n_heads, self.head_dim).transpose(1, 2)
        att = torch.matmul(q, k.transpose(-2, -1)) * (1.0 / math.sqrt(self.head_dim))
        att = att.masked_fill(~causal, float("-inf"))
        y = torch.matmul(torch.softmax(att, dim=-1), v)
        return self.out(y.transpose(1, 2).reshape(b, t, d))


class SharedFFN(nn.Module):
    """The generalist FFN every token gets (the DTR's light path)."""

    def __init__(self, cfg: GemConfig) -> None:
        super().__init__()
        self.up = Proj(cfg.d_model, cfg.ffn_hidden)
        self.down = Proj(cfg.ffn_hidden, cfg.d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.gelu(self.up(x)))


class DynamicTokenRouter(nn.Module):
    """Per-token gate deciding which tokens get the expert (heavy) path.

    Score ``s_t = sigmoid(w . x_t + b)``; a token is *admitted* iff
    ``s_t >= threshold`` and it is not padding. Per sequence at most
    ``C = ceil(capacity * T)`` tokens are dispatched to the experts: the C with
    the highest ``m_t * s_t`` (``m`` = admission mask). Only those are gathered
    into the expert computation, so the DTR really removes work; admitted tokens
    beyond the capacity are counted as dropped in the routing stats. In training
    the hard mask uses a straight-through estimator so skipped tokens still get
    a gradient and can learn to be admitted.
    """

    def __init__(self, cfg: GemConfig) -> None:
        super().__init__()
        self.threshold = cfg.dtr_threshold
        self._cap_num, self._cap_den = round(cfg.dtr_capacity * 1000), 1000
        self.score = Proj(cfg.d_model, 1)

    def capacity(self, seq_len: int) -> int:
        """Tokens per sequence that may take the heavy path (integer arithmetic,
        so it stays a symbolic expression of the sequence length at export)."""
        return torch.sym_min(
            seq_len, (seq_len * self._cap_num + self._cap_den - 1) // self._cap_den
        )

    def forward(
        self, x: torch.Tensor, not_pad: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns (score [B,T], admitted [B,T], sel_w [B,C], sel_t [B,C]):
        the dispatched tokens' indices ``sel_t`` and their weights ``m * s``."""
        s = torch.sigmoid(self.score(x)).squeeze(-1)  # [B, T]
        hard = (s >= self.threshold).to(s.dtype) * not_pad
        mask = hard + (s - s.detach()) * not_pad if self.training else hard
        sel_w, sel_t = (mask * s).topk(self.capacity(x.shape[1]), dim=1)
        return s, hard, sel_w, sel_t


class SparseCrossAttentionRouter(nn.Module):
    """Top-k cross-attention from tokens to the domain expert banks.

    Keys are one learned vector per expert (``keys [r, E]``); token queries are
    ``q_t = W_q x_t``; the cross-attention logits are ``z_te = q_t . k_e / sqrt(r)``.
    The sequence selects its ``top_k`` experts from the logits averaged over its
    real tokens (domain routing is a property of the text); each dispatched
    token then attends to those k experts with ``softmax_k(z_te)`` and its DTR
    weight. Every other expert gets exactly zero weight, and its weights are
    never touched: the selected experts' stacked weights are gathered
    (``w_up[idx]``) and applied with MatMul, so compute is k experts x C tokens.
    """

    def __init__(self, cfg: GemConfig) -> None:
        super().__init__()
        e, d, h = cfg.num_experts, cfg.d_model, cfg.expert_hidden
        self.num_experts, self.top_k, self.router_dim = e, cfg.top_k, cfg.router_dim
        self.query = Proj(d, cfg.router_dim)
        self.keys = nn.Parameter(torch.empty(cfg.router_dim, e))
        self.w_up = nn.Parameter(torch.empty(e, d, h))
        self.b_up = nn.Parameter(torch.zeros(e, h))
        self.w_down = nn.Parameter(torch.empty(e, h, d))
        self.b_down = nn.Parameter(torch.zeros(e, d))

    @staticmethod
    def take_experts(weight: torch.Tensor, flat: torch.Tensor) -> torch.Tensor:
        """The selected experts' rows of a stacked weight (``index_select``: an ONNX
        Gather of the named initializer, which gem/quantization.py makes int8). A
        seam like scatter_tokens: LiteRT's quantizer leaves a gathered weight
        float, so gem/export/tflite.py selects with a one-hot matmul instead."""
        return weight.index_select(0, flat)

    @staticmethod
    def scatter_tokens(x: torch.Tensor, sel_t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Rows ``y [B, C, d]`` added at token positions ``sel_t [B, C]`` of a zero
        ``[B, T, d]``. A seam for export backends: a runtime without this scatter
        (LiteRT's STABLEHLO_SCATTER kernel) swaps in an equivalent on an instance
        (gem/export/tflite.py) without touching the model everyone else exports."""
        d = x.shape[-1]
        return torch.zeros_like(x).scatter_add(1, sel_t.unsqueeze(-1).expand(-1, -1, d), y)

    def forward(
        self,
        x: torch.Tensor,
        not_pad: torch.Tensor,
        sel_w: torch.Tensor,
        sel_t: torch.Tensor,
        want_stats: bool = False,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        b, t, d = x.shape
        k = self.top_k
        z = torch.matmul(self.query(x), self.keys) * (1.0 / math.sqrt(self.router_dim))  # [B,T,E]
        m = not_pad.unsqueeze(-1)
        pooled = (z * m).sum(1) / m.sum(1).clamp(min=1.0)  # [B, E]
        _, idx = pooled.topk(k, dim=-1)  # [B, k] experts of this sequence
        attn = torch.softmax(z.gather(2, idx.unsqueeze(1).expand(-1, t, -1)), dim=-1)  # [B,T,k]
        c = sel_t.shape[1]
        xs = x.gather(1, sel_t.unsqueeze(-1).expand(-1, -1, d))  # [B, C, d]
        a = attn.gather(1, sel_t.unsqueeze(-1).expand(-1, -1, k)) * sel_w.unsqueeze(-1)  # [B,C,k]
        flat = idx.reshape(-1)  # index_select keeps the parameter as a named Gather input
        w_up = self.take_experts(self.w_up, flat).reshape(b, k, d, -1)  # [B, k, d, h]
        w_down = self.take_experts(self.w_down, flat).reshape(b, k, -1, d)  # [B, k, h, d]
        b_up = self.take_experts(self.b_up, flat).reshape(b, k, 1, -1)
        b_down = self.take_experts(self.b_down, flat).reshape(b, k, 1, d)
        hid = torch.matmul(xs.unsqueeze(1), w_up) + b_up
        y = torch.matmul(F.gelu(hid), w_down) + b_down  # [B, k, C, d]
        y = (y * a.transpose(1, 2).unsqueeze(-1)).sum(1)  # [B, C, d]
        out = self.scatter_tokens(x, sel_t, y)
        stats: dict[str, torch.Tensor] = {}
        if want_stats:
            eff = torch.zeros_like(not_pad).scatter(1, sel_t, sel_w)  # [B,T] dispatched weight
            dense = torch.zeros_like(z).scatter(
                2, idx.unsqueeze(1).expand(-1, t, -1), attn * eff.unsqueeze(-1)
            )  # [B, T, E]: exactly k nonzeros per dispatched token
            chosen = torch.zeros(b, self.num_experts, dtype=x.dtype).scatter(1, idx, 1.0)
            probs = torch.softmax(pooled, dim=-1)
            frac = chosen.mean(0) / k  # share of selections per expert over the batch
            stats = {
                "scar_weights": dense,
                "expert_load": (dense > 0).to(x.dtype).sum((0, 1)),
                "dispatched": (sel_w > 0).to(x.dtype).sum(),
                "capacity": torch.tensor(c),
                "load_balance_loss": self.num_experts * (frac * probs.mean(0)).sum(),
            }
        return out, stats


class GemLayer(nn.Module):
    """Attention, then shared FFN (light path) + DTR-gated SCAR experts (heavy path)."""

    def __init__(self, cfg: GemConfig) -> None:
        super().__init__()
        self.ln_attn = nn.LayerNorm(cfg.d_model)
        self.attn = CausalSelfAttention(cfg)
        self.ln_ffn = nn.LayerNorm(cfg.d_model)
        self.ffn = SharedFFN(cfg)
        self.ln_route = nn.LayerNorm(cfg.d_model)
        self.dtr = DynamicTokenRouter(cfg)
        self.scar = SparseCrossAttentionRouter(cfg)

    def forward(
        self,
        x: torch.Tensor,
        not_pad: torch.Tensor,
        causal: torch.Tensor,
        want_stats: bool = False,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        x = x + self.attn(self.ln_attn(x), causal)
        x = x + self.ffn(self.ln_ffn(x))
        h = self.ln_route(x)
        score, admitted, sel_w, sel_t = self.dtr(h, not_pad)
        y, stats = self.scar(h, not_pad, sel_w, sel_t, want_stats)
        if want_stats:
            stats = {"dtr_score": score, "dtr_admitted": admitted, **stats}
        return x + y, stats


@dataclass
class RoutingStats:
    """Routing statistics of one forward pass (training/analysis only).

    Per-layer lists: ``dtr_score``/``dtr_admitted`` ``[B, T]``, ``scar_weights``
    ``[B, T, E]`` (exactly top_k nonzeros per dispatched token, zero elsewhere),
    ``expert_load`` ``[E]``; scalars ``skip_fraction`` (share of real tokens the
    DTR sent down the light path), ``dropped_fraction`` (share of admitted
    tokens beyond the per-sequence DTR capacity) and the
    auxiliary losses ``load_balance_loss`` (Switch-style, mean over layers) and
    ``dtr_mean_score`` (mean gate over real tokens, for a compute-budget loss).
    """

    dtr_score: list[torch.Tensor]
    dtr_admitted: list[torch.Tensor]
    scar_weights: list[torch.Tensor]
    expert_load: list[torch.Tensor]
    skip_fraction: float
    dropped_fraction: float
    load_balance_loss: torch.Tensor
    dtr_mean_score: torch.Tensor


class GemModel(nn.Module):
    """GEM classifier: byte embeddings -> n_layers GemLayer -> pooled -> logits."""

    def __init__(self, cfg: GemConfig, seed: int = 0) -> None:
        super().__init__()
        self.cfg = cfg
        # Submodule constructors (nn.Embedding) draw from the global RNG; fork
        # it so building a model leaves the caller's RNG state untouched. All
        # values are overwritten by reset_parameters(seed) anyway.
        with torch.random.fork_rng(devices=[]):
            self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.d_model)
            self.pos_emb = nn.Parameter(torch.empty(cfg.max_len_tokens + 1, cfg.d_model))
            self.layers = nn.ModuleList(GemLayer(cfg) for _ in range(cfg.n_layers))
            self.ln_final = nn.LayerNorm(cfg.d_model)
            self.head = Proj(cfg.d_model, cfg.num_classes)
        # Prebuilt causal mask, one row longer than max_len so slicing [:T, :T]
        # for any T <= max_len is a plain Slice in ONNX with no boundary case.
        n = cfg.max_len_tokens + 1
        self.register_buffer(
            "causal", torch.tril(torch.ones(n, n, dtype=torch.bool)), persistent=False
        )
        self.reset_parameters(seed)

    @torch.no_grad()
    def reset_parameters(self, seed: int) -> None:
        """Deterministic init from ``seed`` with a private generator (the global
        RNG state neither matters nor changes)."""
        g = torch.Generator().manual_seed(seed)
        d = self.cfg.d_model
        for name, p in self.named_parameters():
            if name.endswith("dtr.score.weight"):
                # Small spread around the threshold: at init roughly half of the
                # tokens are admitted, so both paths are exercised from step 0.
                p.normal_(0.0, 1.0 / math.sqrt(d), generator=g)
            elif name.endswith("dtr.score.bias"):
                p.zero_()
            elif "ln_" in name:
                p.fill_(1.0 if name.endswith("weight") else 0.0)
            elif name.endswith(("bias", "b_up", "b_down")):
                p.zero_()
            elif name in ("tok_emb.weight", "pos_emb"):
                p.normal_(0.0, 0.02, generator=g)
            else:
                fan_in = p.shape[-2] if p.dim() >= 2 else p.shape[0]
                p.normal_(0.0, 1.0 / math.sqrt(fan_in), generator=g)

    def forward(
        self, input_ids: torch.Tensor, return_stats: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, RoutingStats]:
        """``input_ids`` int64 [batch, seq] -> logits float32 [batch, num_classes]."""
        t = input_ids.shape[1]
        if isinstance(t, int) and t > self.cfg.max_len_tokens:
            raise ValueError(
                f"sequence of {t} tokens exceeds max_len_tokens={self.cfg.max_len_tokens}"
            )
        not_pad = (input_ids != self.cfg.pad_id).to(torch.float32)  # [B, T]
        x = self.tok_emb(input_ids) + self.pos_emb[:t]
        causal = self.causal[:t, :t]
        per_layer: list[dict[str, torch.Tensor]] = []
        for layer in self.layers:
            x, stats = layer(x, not_pad, causal, return_stats)
            per_layer.append(stats)
        x = self.ln_final(x)
        w = not_pad.unsqueeze(-1)
        pooled = (x * w).sum(1) / w.sum(1).clamp(min=1.0)
        logits = self.head(pooled)
        if not return_stats:
            return logits
        return logits, self._collect(per_layer, not_pad)

    def _collect(
        self, per_layer: list[dict[str, torch.Tensor]], not_pad: torch.Tensor
    ) -> RoutingStats:
        real = not_pad.sum().clamp(min=1.0)
        admitted = sum(s["dtr_admitted"].sum() for s in per_layer)
        dispatched = sum(s["dispatched"] for s in per_layer)
        n_layers = len(per_layer)
        return RoutingStats(
            dtr_score=[s["dtr_score"] for s in per_layer],
            dtr_admitted=[s["dtr_admitted"] for s in per_layer],
            scar_weights=[s["scar_weights"] for s in per_layer],
            expert_load=[s["expert_load"] for s in per_layer],
            skip_fraction=float(1.0 - admitted / (real * n_layers)),
            dropped_fraction=float(1.0 - dispatched / admitted.clamp(min=1.0)),
            load_balance_loss=sum(s["load_balance_loss"] for s in per_layer) / n_layers,
            dtr_mean_score=sum((s["dtr_score"] * not_pad).sum() for s in per_layer)
            / (real * n_layers),
        )

    def param_counts(self) -> dict[str, int]:
        """Measured counts: ``total`` and per quantization group."""
        out: dict[str, int] = {"total": 0}
        for name, p in self.named_parameters():
            out["total"] += p.numel()
            g = quant_group(name)
            out[g] = out.get(g, 0) + p.numel()
        return out


def build_model(cfg: GemConfig, seed: int = 0) -> GemModel:
    """A freshly initialised model in eval mode (deterministic from ``seed``)."""
    return GemModel(cfg, seed=seed).eval()
