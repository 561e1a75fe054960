"""Cross-calibration: the Hessian ``H = Σ x xᵀ`` of every compressed linear
layer's inputs, from a mix of in-domain and general texts.

Two passes of the (uncompressed) model, one over each side's calibration texts,
accumulate per-layer sums; the side's Hessian is divided by that side's count of
real (non-pad) tokens, and the two are mixed ``H = λ H_dom + (1 − λ) H_gen``
(λ = ``CompressionSpec.domain_weight``). Normalising per side makes λ the
balance of the two objectives whatever the number of texts.

Experts: expert ``e``'s up projection sees only the tokens of sequences that
selected it, and its output is scaled by the token's SCAR weight ``a_te`` (which
includes the DTR gate), so its output error is ``Σ_t a_te² ‖ΔW x_t‖²``: its
Hessian is ``Σ_t a_te² x_t x_tᵀ`` (0 for tokens that skip the experts). Its down
projection's inputs are ``GELU(W_up x_t + b_up)`` for the same tokens and weights.
Calibration is one-shot (all Hessians from the dense model), not sequential.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from gem.data import Sample
from gem.quantization import quant_group
from gem.tokenizer import encode_batch


@dataclass
class HessianSums:
    """Per target: the sum ``Σ x xᵀ`` over one side's tokens and that token count."""

    sums: dict[str, torch.Tensor] = field(default_factory=dict)
    tokens: int = 0

    def add(self, key: str, x: torch.Tensor, w: torch.Tensor | None = None) -> None:
        x = x.double()
        xw = x if w is None else x * w.double().unsqueeze(1)
        h = xw.T @ x
        if key in self.sums:
            self.sums[key] += h
        else:
            self.sums[key] = h


def proj_targets(net: torch.nn.Module, groups: Sequence[str]) -> dict[str, torch.nn.Module]:
    """Every Proj (``weight [in, out]``) in the compressed groups, by parameter prefix."""
    from gem.model import Proj

    return {name: mod for name, mod in net.named_modules()
            if isinstance(mod, Proj) and quant_group(f"{name}.weight") in groups}


def expert_targets(net: torch.nn.Module) -> dict[str, torch.nn.Module]:
    """Every SCAR module (its stacked experts ``w_up``/``w_down``), by name."""
    from gem.model import SparseCrossAttentionRouter

    return {name: mod for name, mod in net.named_modules()
            if isinstance(mod, SparseCrossAttentionRouter)}


@torch.no_grad()
def collect(net: torch.nn.Module, samples: Sequence[Sample], groups: Sequence[str],
            max_len: int = 128, batch_size: int = 16) -> HessianSums:
    """One side's Hessian sums over ``samples`` (keys: ``<proj>`` and
    ``<scar>.w_up.<e>`` / ``<scar>.w_down.<e>``)."""
    out = HessianSums()
    pad_id = net.cfg.pad_id  # type: ignore[attr-defined]
    state: dict[str, torch.Tensor] = {}
    handles = []

    def proj_hook(name: str):  # noqa: ANN202
        def hook(_mod, args, _out) -> None:  # noqa: ANN001
            x = args[0]
            out.add(name, x[state["keep"]])
        return hook

    def scar_hook(name: str):  # noqa: ANN202
        def hook(mod, args, result) -> None:  # noqa: ANN001
            x = args[0]  # [B, T, d]
            a = result[2]["scar_weights"]  # [B, T, E]
            for e in range(mod.num_experts):
                sel = a[..., e] > 0
                if not bool(sel.any()):
                    continue
                xe, we = x[sel], a[..., e][sel] ** 2
                out.add(f"{name}.w_up.{e}", xe, we)
                hid = F.gelu(xe @ mod.w_up[e] + mod.b_up[e])
                out.add(f"{name}.w_down.{e}", hid, we)
        return hook

    for name, mod in proj_targets(net, groups).items():
        handles.append(mod.register_forward_hook(proj_hook(name)))
    if "expert" in groups:
        for name, mod in expert_targets(net).items():
            handles.append(mod.register_forward_hook(scar_hook(name)))
    was_training = net.training
    net.eval()
    try:
        for i in range(0, len(samples), batch_size):
            ids, _ = encode_batch([s.text for s in samples[i:i + batch_size]], max_len=max_len)
            t = torch.from_numpy(ids)
            state["keep"] = t != pad_id
            out.tokens += int(state["keep"].sum())
            net(t, return_stats=True)
    finally:
        for h in handles:
            h.remove()
        net.train(was_training)
    return out


def mix(dom: HessianSums | None, gen: HessianSums | None, lam: float) -> dict[str, torch.Tensor]:
    """``λ H_dom / N_dom + (1 − λ) H_gen / N_gen`` per target (a side with weight 0
    may be None; a target one side never reached gets only the other's term)."""
    parts = [(s, w) for s, w in ((dom, lam), (gen, 1.0 - lam)) if s is not None and w > 0]
    if not parts:
        raise ValueError("cross-calibration needs at least one side with a positive weight")
    out: dict[str, torch.Tensor] = {}
    for side, w in parts:
        n = max(1, side.tokens)
        for key, h in side.sums.items():
            term = h * (w / n)
            out[key] = out[key] + term if key in out else term
    return out


def calibration_sets(train_set: Sequence[Sample], domain: str, n: int
                     ) -> tuple[list[Sample], list[Sample]]:
    """(in-domain texts, general texts): the first ``n`` training texts of ``domain``,
    and ``n`` of the other domains taken in turn (every domain equally)."""
    dom = [s for s in train_set if s.domain == domain][:n]
    others: dict[str, list[Sample]] = {}
    for s in train_set:
        if s.domain != domain:
            others.setdefault(s.domain, []).append(s)
    gen: list[Sample] = []
    lists = [others[d] for d in sorted(others)]
    i = 0
    while len(gen) < n and any(i < len(lst) for lst in lists):
        gen.extend(lst[i] for lst in lists if i < len(lst))
        i += 1
    return dom, gen[:n]
