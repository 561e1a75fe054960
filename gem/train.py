"""A short, deterministic training loop for GEM (seconds for ``tiny`` on CPU).

Only enough to make artifacts classify something real; quality metrics
(F1, DSI, GG, CDTR, forgetting) come later. The loss is the adaptive
knowledge preservation loss (gem/distillation.py) -- plain cross-entropy when
no teacher is given -- plus two small routing regularisers: SCAR's
Switch-style load-balance loss over the batch's expert selections (keeps all
domain banks in use) and an optional DTR budget term ``(mean gate - target)^2``
(weight 0 by default, see TrainOptions).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from gem.config import DOMAINS
from gem.data import Sample
from gem.distillation import knowledge_preservation_loss
from gem.model import GemModel, RoutingStats
from gem.tokenizer import encode_batch


@dataclass
class TrainOptions:
    """Knobs of :func:`train`; the defaults train ``tiny`` in a few seconds."""

    steps: int = 40
    batch_size: int = 32
    lr: float = 3e-3
    max_len: int = 128
    seed: int = 0
    load_balance_weight: float = 0.01
    # Off by default: pulling the mean gate towards a target near the threshold
    # crowds scores at the decision boundary, which makes routing fragile
    # (tiny float differences between runtimes flip tokens).
    dtr_budget_weight: float = 0.0
    dtr_target: float = 0.5
    # distillation (used only when a teacher is passed)
    temperature: float = 2.0
    alpha: float = 0.5
    domain_weights: Sequence[float] | None = None
    confidence_weighting: bool = False


@dataclass
class TrainResult:
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    last_skip_fraction: float = 0.0
    last_dropped_fraction: float = 0.0


def _domain_index(domain: str) -> int:
    return DOMAINS.index(domain) if domain in DOMAINS else 0


def batch_tensors(
    samples: Sequence[Sample], max_len: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(input_ids, labels, domain_ids) for a list of samples, padded to the longest."""
    ids, _ = encode_batch([s.text for s in samples], max_len=max_len)
    labels = torch.tensor([s.label for s in samples], dtype=torch.int64)
    domains = torch.tensor([_domain_index(s.domain) for s in samples], dtype=torch.int64)
    return torch.from_numpy(ids), labels, domains


def train(
    model: GemModel,
    samples: Sequence[Sample],
    options: TrainOptions | None = None,
    teacher: GemModel | None = None,
    on_step: Callable[[int, int], None] | None = None,
) -> TrainResult:
    """Train ``model`` in place for ``options.steps`` steps; deterministic for a
    given model init, data and options. Leaves the model in eval mode.

    ``on_step(done, total)`` is called after each step, so a caller can show
    progress; gem itself prints nothing and knows no progress library."""
    opt = options or TrainOptions()
    if not samples:
        raise ValueError("train() needs at least one sample")
    gen = torch.Generator().manual_seed(opt.seed)
    optim = torch.optim.AdamW(model.parameters(), lr=opt.lr, weight_decay=0.01)
    if teacher is not None:
        teacher.eval()
    result = TrainResult()
    start = time.perf_counter()
    model.train()
    for step in range(opt.steps):
        idx = torch.randint(0, len(samples), (min(opt.batch_size, len(samples)),), generator=gen)
        ids, labels, domains = batch_tensors([samples[i] for i in idx.tolist()], opt.max_len)
        logits, stats = model(ids, return_stats=True)
        assert isinstance(stats, RoutingStats)
        t_logits = None
        if teacher is not None:
            with torch.no_grad():
                t_logits = teacher(ids)
        parts = knowledge_preservation_loss(
            logits,
            labels,
            t_logits,
            temperature=opt.temperature,
            alpha=opt.alpha,
            domain_ids=domains,
            domain_weights=opt.domain_weights,
            confidence_weighting=opt.confidence_weighting,
        )
        loss = (
            parts.loss
            + opt.load_balance_weight * stats.load_balance_loss
            + opt.dtr_budget_weight * (stats.dtr_mean_score - opt.dtr_target) ** 2
        )
        optim.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optim.step()
        result.losses.append(float(loss.detach()))
        result.last_skip_fraction = stats.skip_fraction
        result.last_dropped_fraction = stats.dropped_fraction
        if on_step is not None:
            on_step(step + 1, opt.steps)
    model.eval()
    result.seconds = time.perf_counter() - start
    return result


@torch.no_grad()
def predict(
    model: GemModel, samples: Sequence[Sample], batch_size: int = 64, max_len: int = 128
) -> list[int]:
    """Predicted class per sample (argmax of the logits)."""
    model.eval()
    out: list[int] = []
    for i in range(0, len(samples), batch_size):
        ids, _, _ = batch_tensors(samples[i : i + batch_size], max_len)
        out.extend(model(ids).argmax(-1).tolist())
    return out


def accuracy(
    model: GemModel, samples: Sequence[Sample], batch_size: int = 64, max_len: int = 128
) -> float:
    """Share of samples whose predicted class equals the label."""
    if not samples:
        raise ValueError("accuracy() needs at least one sample")
    preds = predict(model, samples, batch_size=batch_size, max_len=max_len)
    return sum(int(p == s.label) for p, s in zip(preds, samples, strict=True)) / len(samples)
