"""GEM (Generalized Edge Model) in PyTorch: a causal byte-level language model
with a domain-classification head on the same body.

Definitions used throughout the project (docs/gem.md repeats them with formulas):

Dynamic Token Router (DTR)
    A per-token scalar gate ``s_t = sigmoid(w . LN(x_t) + b)`` computed in every
    layer. A token is *admitted* to the experts (the heavy path) iff
    ``s_t >= threshold``, it is not padding and its position is at least
    ``route_tokens`` (see SCAR); its expert output is scaled by ``s_t``. Every
    decision is per token, so the model stays causal (a language model must
    not let a token's computation depend on later tokens). The share of
    admitted tokens is *held at a target* ``dtr_capacity`` by a capacity loss
    in training, ``(admitted share - target)^2`` through a straight-through
    estimator (gem/train.py); without it the gate collapses (measured: 94 %
    skipped after 120 steps). In the exported graphs a skipped token's expert
    output is masked to zero (a data-dependent skip is not a static ONNX graph).

Sparse Cross-Attention Router (SCAR)
    A cross-attention from tokens to the domain expert banks (8 domains x
    ``experts_per_domain`` experts): keys are one learned vector per expert,
    queries ``q_t = W_q LN(x_t)``, logits ``z_te = q_t . k_e / sqrt(r)``. Each
    sequence selects the ``top_k`` experts with the highest summed logit over
    its first ``route_tokens`` real tokens (domain is a property of the text;
    the prefix keeps it causal and lets generation carry the choice as a small
    state, ``route_sum``, beside the KV cache); each admitted token attends to
    those k experts with ``softmax_k(z_te)``. Every other expert gets exactly
    zero weight and is never computed: the selected experts' stacked weights
    are gathered and applied with MatMul.

Experts are *stacked* weights ``w_up [E, d, h]`` / ``w_down [E, h, d]``; the
selected ones are taken with ``index_select`` (an ONNX Gather of the named
initializer) and applied with ``torch.matmul``. quantize_dynamic does not
quantize a MatMul fed through a Gather, so gem/quantization.py rewrites exactly
that pattern to int8 (int8 stacked weights, Gather of int8, MatMulInteger).
All other projections use :class:`Proj`, whose weight is stored ``[in, out]``:
the ONNX MatMul's B input is then the named parameter, which quantize_dynamic
quantizes and the hybrid policy selects by parameter name.

Heads: ``forward(ids)`` -> class ``logits [batch, num_classes]`` (masked mean
pooling over non-pad tokens, then a linear classifier); ``lm_logits(ids)`` ->
next-token logits ``[batch, seq, vocab]``; ``step(ids, past_k, past_v,
route_sum)`` -> last-token logits plus the updated cache (the prefill and
decode graphs, :class:`PrefillGraph` / :class:`DecodeGraph`).
``forward(ids, return_stats=True)`` also returns routing statistics for
training and analysis; the exported graphs never compute them.
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
    """Multi-head causal attention with an optional KV cache.

    The causal mask ``[T, P + T]`` for ``P`` cached positions is computed once
    per forward pass by the model and shared by the layers.
    """

    def __init__(self, cfg: GemConfig) -> None:
        super().__init__()
        if cfg.d_model % cfg.n_heads:
            raise ValueError(f"d_model {cfg.d_model} not divisible by n_heads {cfg.n_heads}")
        self.n_heads = cfg.n_heads
        self.head_dim = cfg.d_model // cfg.n_heads
        self.qkv = Proj(cfg.d_model, 3 * cfg.d_model)
        self.out = Proj(cfg.d_model, cfg.d_model)

    def forward(
        self,
        x: torch.Tensor,
        causal: torch.Tensor,
        past_k: torch.Tensor | None = None,
        past_v: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns (output, keys, values); keys/values ``[B, H, P + T, hd]``."""
        b, t, d = x.shape
        q, k, v = self.qkv(x).split(d, dim=-1)
        q = q.reshape(b, t, self.n_heads, self.head_dim).transpose(1, 2)
        k = k.reshape(b, t, self.n_heads, self.head_dim).transpose(1, 2)
        v = v.reshape(b, t, self.n_heads, self.head_dim).transpose(1, 2)
        if past_k is not None and past_v is not None:
            k = torch.cat([past_k, k], dim=2)
            v = torch.cat([past_v, v], dim=2)
        att = torch.matmul(q, k.transpose(-2, -1)) * (1.0 / math.sqrt(self.head_dim))
        att = att.masked_fill(~causal, float("-inf"))
        y = torch.matmul(torch.softmax(att, dim=-1), v)
        return self.out(y.transpose(1, 2).reshape(b, t, d)), k, v


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
    ``s_t >= threshold`` and it is ``eligible`` (not padding, position >=
    route_tokens). In training the hard mask uses a straight-through estimator
    so skipped tokens still get a gradient (and the capacity loss can move the
    admitted share towards its target).
    """

    def __init__(self, cfg: GemConfig) -> None:
        super().__init__()
        self.threshold = cfg.dtr_threshold
        self.score = Proj(cfg.d_model, 1)

    def forward(
        self, x: torch.Tensor, eligible: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns (score [B,T], admitted [B,T] hard 0/1, weight [B,T]): the
        expert-output weight ``mask * s`` (straight-through mask in training)."""
        s = torch.sigmoid(self.score(x)).squeeze(-1)  # [B, T]
        hard = (s >= self.threshold).to(s.dtype) * eligible
        mask = hard + (s - s.detach()) * eligible if self.training else hard
        return s, mask, mask * s


class SparseCrossAttentionRouter(nn.Module):
    """Top-k cross-attention from tokens to the domain expert banks.

    Keys are one learned vector per expert (``keys [r, E]``); token queries are
    ``q_t = W_q x_t``; the cross-attention logits are ``z_te = q_t . k_e / sqrt(r)``.
    The sequence selects its ``top_k`` experts from ``route_sum`` -- the logits
    summed over its first ``route_tokens`` real tokens (passed in by the caller
    when generating, so a decode step continues the prefill's sum); each
    admitted token then attends to those k experts with ``softmax_k(z_te)``
    and its DTR weight. Every other expert gets exactly zero weight and its
    weights are never touched: the selected experts' stacked weights are
    gathered (``w_up[idx]``) and applied with MatMul.
    """

    def __init__(self, cfg: GemConfig) -> None:
        super().__init__()
        e, d, h = cfg.num_experts, cfg.d_model, cfg.expert_hidden
        self.num_experts, self.top_k, self.router_dim = e, cfg.top_k, cfg.router_dim
        self.per_domain = cfg.experts_per_domain
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
    def select_scores(z: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """The selected experts' logits ``[B, T, k]`` of ``z [B, T, E]`` (a gather).
        A seam: with static shapes LiteRT folds the gather's index grid into
        per-signature constants that grow with the bucket; gem/export/tflite.py
        selects with a one-hot matmul instead."""
        return z.gather(2, idx.unsqueeze(1).expand(-1, z.shape[1], -1))

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
        routing: torch.Tensor,
        weight: torch.Tensor,
        route_sum: torch.Tensor | None = None,
        want_stats: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """``routing`` [B,T]: 1 for tokens in the routing prefix; ``weight``
        [B,T]: the DTR's per-token expert weight. Returns (expert output,
        updated route_sum [B,E], stats)."""
        b, t, d = x.shape
        k = self.top_k
        z = torch.matmul(self.query(x), self.keys) * (1.0 / math.sqrt(self.router_dim))  # [B,T,E]
        summed = (z * routing.unsqueeze(-1)).sum(1)  # [B, E]
        route_sum = summed if route_sum is None else route_sum + summed
        _, idx = route_sum.topk(k, dim=-1)  # [B, k] experts of this sequence
        attn = torch.softmax(self.select_scores(z, idx), dim=-1)  # [B,T,k]
        a = attn * weight.unsqueeze(-1)  # [B, T, k]
        flat = idx.reshape(-1)  # index_select keeps the parameter as a named Gather input
        w_up = self.take_experts(self.w_up, flat).reshape(b, k, d, -1)  # [B, k, d, h]
        w_down = self.take_experts(self.w_down, flat).reshape(b, k, -1, d)  # [B, k, h, d]
        b_up = self.take_experts(self.b_up, flat).reshape(b, k, 1, -1)
        b_down = self.take_experts(self.b_down, flat).reshape(b, k, 1, d)
        hid = torch.matmul(x.unsqueeze(1), w_up) + b_up
        y = torch.matmul(F.gelu(hid), w_down) + b_down  # [B, k, T, d]
        out = (y * a.transpose(1, 2).unsqueeze(-1)).sum(1)  # [B, T, d]
        stats: dict[str, torch.Tensor] = {}
        if want_stats:
            dense = torch.zeros_like(z).scatter(2, idx.unsqueeze(1).expand(-1, t, -1), a)
            chosen = torch.zeros(b, self.num_experts, dtype=x.dtype).scatter(1, idx, 1.0)
            probs = torch.softmax(route_sum, dim=-1)
            frac = chosen.mean(0) / k  # share of selections per expert over the batch
            bank = route_sum.reshape(b, -1, self.per_domain).logsumexp(-1)  # [B, domains]
            stats = {
                "scar_weights": dense,  # [B, T, E]: exactly k nonzeros per admitted token
                "expert_load": chosen.sum(0),  # sequences that selected each expert
                "chosen": chosen,  # [B, E] 0/1
                "bank_logits": bank,
                "load_balance_loss": self.num_experts * (frac * probs.mean(0)).sum(),
            }
        return out, route_sum, stats


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
        causal: torch.Tensor,
        routing: torch.Tensor,
        eligible: torch.Tensor,
        cache: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
        want_stats: bool = False,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor, torch.Tensor], dict]:
        past_k, past_v, route_sum = cache if cache is not None else (None, None, None)
        a, k, v = self.attn(self.ln_attn(x), causal, past_k, past_v)
        x = x + a
        x = x + self.ffn(self.ln_ffn(x))
        h = self.ln_route(x)
        score, admitted, weight = self.dtr(h, eligible)
        y, route_sum, stats = self.scar(h, routing, weight, route_sum, want_stats)
        if want_stats:
            stats = {"dtr_score": score, "dtr_admitted": admitted, **stats}
        return x + y, (k, v, route_sum), stats


@dataclass
class RoutingStats:
    """Routing statistics of one forward pass (training/analysis only).

    Per-layer lists: ``dtr_score``/``dtr_admitted`` ``[B, T]``, ``scar_weights``
    ``[B, T, E]`` (exactly top_k nonzeros per admitted token, zero elsewhere),
    ``expert_load`` ``[E]`` (sequences selecting each expert), ``chosen``
    ``[B, E]`` 0/1, ``bank_logits`` ``[B, domains]`` (the routing score per
    domain bank); ``admitted_fraction`` (straight-through share of eligible
    tokens the DTR admitted, mean over layers: the capacity loss's input),
    ``skip_fraction`` (share of eligible tokens sent down the light path) and
    the Switch-style ``load_balance_loss`` (mean over layers).
    """

    dtr_score: list[torch.Tensor]
    dtr_admitted: list[torch.Tensor]
    scar_weights: list[torch.Tensor]
    expert_load: list[torch.Tensor]
    chosen: list[torch.Tensor]
    bank_logits: list[torch.Tensor]
    admitted_fraction: torch.Tensor
    skip_fraction: float
    load_balance_loss: torch.Tensor


class GemModel(nn.Module):
    """GEM: byte embeddings -> n_layers GemLayer -> final norm -> LM head (next
    byte) and pooled classifier head (domain)."""

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
            self.next_token = Proj(cfg.d_model, cfg.vocab_size)
        self.reset_parameters(seed)

    @torch.no_grad()
    def reset_parameters(self, seed: int) -> None:
        """Deterministic init from ``seed`` with a private generator (the global
        RNG state neither matters nor changes). Residual output projections are
        scaled by 1/sqrt(2 L) (GPT-2), which keeps early training stable."""
        g = torch.Generator().manual_seed(seed)
        d = self.cfg.d_model
        resid = 1.0 / math.sqrt(2 * self.cfg.n_layers)
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
                if name.endswith(("attn.out.weight", "ffn.down.weight", "w_down")):
                    p.mul_(resid)

    def body(
        self,
        input_ids: torch.Tensor,
        cache: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] | None = None,
        want_stats: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, list, list[dict]]:
        """Hidden states [B,T,d] after the final norm, the not-pad mask, the new
        per-layer caches and per-layer stats. ``cache`` holds each layer's
        (past_k, past_v, route_sum) for positions already seen."""
        t = input_ids.shape[1]
        past = 0 if cache is None else cache[0][0].shape[2]
        if isinstance(t, int) and isinstance(past, int) and past + t > self.cfg.max_len_tokens:
            raise ValueError(
                f"sequence of {past + t} tokens exceeds max_len_tokens={self.cfg.max_len_tokens}"
            )
        not_pad = (input_ids != self.cfg.pad_id).to(torch.float32)  # [B, T]
        pos = self.positions(input_ids, past)  # [T] positions of the new tokens
        # rows of the position table looked up (an ONNX Gather / LiteRT embedding
        # lookup of the one table, which int8 variants store int8)
        x = self.tok_emb(input_ids) + F.embedding(pos, self.pos_emb)
        # causal mask [T, P + T] computed in the graph: a prebuilt 1025 x 1025
        # buffer would be a 1 MB constant in every exported graph
        keys = pos if cache is None else torch.arange(past + t, dtype=pos.dtype)
        causal = keys.unsqueeze(0) <= pos.unsqueeze(1)
        prefix = (pos < self.cfg.route_tokens).to(torch.float32)
        routing = not_pad * prefix
        eligible = not_pad * (1.0 - prefix)
        new_cache = []
        per_layer: list[dict[str, torch.Tensor]] = []
        for i, layer in enumerate(self.layers):
            x, c, stats = layer(
                x, causal, routing, eligible, None if cache is None else cache[i], want_stats
            )
            new_cache.append(c)
            per_layer.append(stats)
        return self.ln_final(x), not_pad, new_cache, per_layer

    @staticmethod
    def positions(input_ids: torch.Tensor, past: int) -> torch.Tensor:
        """Positions ``past .. past + T - 1`` of the new tokens, ``[T]`` int64.

        A seam like SCAR's: a static-shape export (LiteRT, one signature per
        sequence bucket) would fold these and everything derived from them --
        the causal mask, the position rows -- into constants of every
        signature (1 MB of mask alone for the 1024 bucket), so
        gem/export/tflite.py swaps in a version computed from the input."""
        return torch.arange(input_ids.shape[1], dtype=torch.int64) + past

    def forward(
        self, input_ids: torch.Tensor, return_stats: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, RoutingStats]:
        """``input_ids`` int64 [batch, seq] -> class logits float32 [batch, num_classes]."""
        x, not_pad, _, per_layer = self.body(input_ids, want_stats=return_stats)
        w = not_pad.unsqueeze(-1)
        pooled = (x * w).sum(1) / w.sum(1).clamp(min=1.0)
        logits = self.head(pooled)
        if not return_stats:
            return logits
        return logits, self._collect(per_layer, not_pad)

    def both(
        self, input_ids: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, RoutingStats]:
        """(class logits [B,C], next-token logits [B,T,V], stats): one body pass
        for training both heads."""
        x, not_pad, _, per_layer = self.body(input_ids, want_stats=True)
        w = not_pad.unsqueeze(-1)
        pooled = (x * w).sum(1) / w.sum(1).clamp(min=1.0)
        return self.head(pooled), self.next_token(x), self._collect(per_layer, not_pad)

    def lm_logits(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Next-token logits float32 [batch, seq, vocab] (position t predicts t+1)."""
        x, _, _, _ = self.body(input_ids)
        return self.next_token(x)

    def step(
        self,
        input_ids: torch.Tensor,
        past_k: torch.Tensor | None = None,
        past_v: torch.Tensor | None = None,
        route_sum: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """One generation step: prefill (no cache) or decode (with the cache).

        Cache tensors are stacked over layers: ``past_k``/``past_v`` ``[L, B, H,
        P, hd]``, ``route_sum`` ``[L, B, E]``. Returns (last-token logits [B, V],
        present_k, present_v, route_sum) with ``P + T`` cached positions."""
        cache = None
        if past_k is not None and past_v is not None and route_sum is not None:
            cache = [(past_k[i], past_v[i], route_sum[i]) for i in range(self.cfg.n_layers)]
        x, _, new, _ = self.body(input_ids, cache)
        logits = self.next_token(x[:, -1])
        return (
            logits,
            torch.stack([c[0] for c in new]),
            torch.stack([c[1] for c in new]),
            torch.stack([c[2] for c in new]),
        )

    def _collect(
        self, per_layer: list[dict[str, torch.Tensor]], not_pad: torch.Tensor
    ) -> RoutingStats:
        n_layers = len(per_layer)
        t = not_pad.shape[1]
        eligible = not_pad * (torch.arange(t) >= self.cfg.route_tokens).to(not_pad.dtype)
        n_el = eligible.sum().clamp(min=1.0)
        frac = sum(s["dtr_admitted"].sum() for s in per_layer) / (n_el * n_layers)
        return RoutingStats(
            dtr_score=[s["dtr_score"] for s in per_layer],
            dtr_admitted=[s["dtr_admitted"].detach().round() for s in per_layer],
            scar_weights=[s["scar_weights"] for s in per_layer],
            expert_load=[s["expert_load"] for s in per_layer],
            chosen=[s["chosen"] for s in per_layer],
            bank_logits=[s["bank_logits"] for s in per_layer],
            admitted_fraction=frac,
            skip_fraction=float(1.0 - frac.detach()) if float(eligible.sum()) > 0 else 0.0,
            load_balance_loss=sum(s["load_balance_loss"] for s in per_layer) / n_layers,
        )

    def param_counts(self) -> dict[str, int]:
        """Measured counts: ``total`` and per quantization group."""
        out: dict[str, int] = {"total": 0}
        for name, p in self.named_parameters():
            out["total"] += p.numel()
            g = quant_group(name)
            out[g] = out.get(g, 0) + p.numel()
        return out


class PrefillGraph(nn.Module):
    """Export wrapper: ``input_ids [B, T]`` -> (logits [B, V] of the last token,
    present_k, present_v [L, B, H, T, hd], route_sum [L, B, E])."""

    def __init__(self, model: GemModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor):  # noqa: ANN201 - tuple of tensors
        return self.model.step(input_ids)


class DecodeGraph(nn.Module):
    """Export wrapper: one decode step with the KV cache as explicit inputs and
    outputs: (input_ids [B, 1], past_k, past_v [L, B, H, P, hd], route_sum
    [L, B, E]) -> (logits [B, V], present_k, present_v [.., P + 1, ..], route_sum)."""

    def __init__(self, model: GemModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids, past_k, past_v, route_sum):  # noqa: ANN001, ANN201
        return self.model.step(input_ids, past_k, past_v, route_sum)


def build_model(cfg: GemConfig, seed: int = 0) -> GemModel:
    """A freshly initialised model in eval mode (deterministic from ``seed``)."""
    return GemModel(cfg, seed=seed).eval()
