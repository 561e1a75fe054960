"""GEM's training recipe: general training on all domains, then domain
adaptation with adaptive knowledge preservation (distillation from the frozen
general model). Deterministic for a given model init, data and options.

Loss per step (both heads share the body):

    L = cls_weight * KP(class logits, labels, teacher class logits)
      + lm_weight  * KP(next-byte logits, next bytes, teacher next-byte logits)
      + load_balance_weight * Switch load-balance loss over SCAR selections
      + capacity_weight * (admitted share - dtr_capacity)^2        (DTR capacity)
      + route_weight * CE(domain-bank routing score, domain)        (SCAR banks)

``KP`` is gem/distillation.py's adaptive knowledge preservation loss (plain
cross-entropy without a teacher). The capacity term holds the DTR's compute
fraction at its target (the admitted share is computed through the
straight-through mask, so its gradient reaches every gate); the routing term
makes domain bank ``d`` the one sequences of domain ``d`` choose, which is what
"domain experts" means and what the expert-domain mutual information measures.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from gem.config import DOMAINS
from gem.data import Sample
from gem.distillation import knowledge_preservation_loss
from gem.model import GemModel
from gem.tokenizer import encode_batch


@dataclass
class TrainOptions:
    """Knobs of :func:`train`; the defaults train ``tiny`` in seconds."""

    steps: int = 40
    batch_size: int = 32
    lr: float = 3e-3
    max_len: int = 256
    seed: int = 0
    cls_weight: float = 1.0
    lm_weight: float = 1.0
    load_balance_weight: float = 0.01
    capacity_weight: float = 1.0
    route_weight: float = 0.1
    warmup_steps: int = 20
    # distillation (used only when a teacher is passed)
    temperature: float = 2.0
    alpha: float = 0.5
    domain_weights: Sequence[float] | None = None
    confidence_weighting: bool = False
    # share of each batch drawn from ``focus_domain`` (domain adaptation)
    focus_domain: str | None = None
    focus_share: float = 0.5


@dataclass
class TrainResult:
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    #: per step: DTR admitted share (mean over layers) -- watched, must stay near target
    admitted_fraction: list[float] = field(default_factory=list)
    #: per step: expert-domain mutual information of the batch's selections, bits
    expert_domain_mi_bits: list[float] = field(default_factory=list)
    last_skip_fraction: float = 0.0


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


def mutual_information_bits(chosen: torch.Tensor, domains: torch.Tensor, n_domains: int) -> float:
    """I(expert; domain) in bits from selections ``chosen`` [N, E] (0/1) of
    sequences with ``domains`` [N]: joint p(e, d) over all (sequence, selected
    expert) pairs. 0 when routing ignores the domain; log2(min(E, D)) at most."""
    onehot = F.one_hot(domains, n_domains).to(chosen.dtype)  # [N, D]
    joint = chosen.T @ onehot  # [E, D]
    total = joint.sum()
    if float(total) == 0:
        return 0.0
    p = joint / total
    pe, pd = p.sum(1, keepdim=True), p.sum(0, keepdim=True)
    nz = p > 0
    return float((p[nz] * torch.log2(p[nz] / (pe @ pd)[nz])).sum())


def _lm_targets(ids: torch.Tensor, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Next-token targets [B, T-1] and their mask (pads excluded)."""
    tgt = ids[:, 1:]
    return tgt, (tgt != pad_id)


def _draw(
    gen: torch.Generator, samples: Sequence[Sample], opt: TrainOptions, focus: list[int]
) -> list[Sample]:
    n = min(opt.batch_size, len(samples))
    if focus and opt.focus_share > 0:
        n_f = int(round(n * opt.focus_share))
        a = torch.randint(0, len(focus), (n_f,), generator=gen).tolist()
        b = torch.randint(0, len(samples), (n - n_f,), generator=gen).tolist()
        return [samples[focus[i]] for i in a] + [samples[i] for i in b]
    return [samples[i] for i in torch.randint(0, len(samples), (n,), generator=gen).tolist()]


def _prior_weights(
    samples: Sequence[Sample], opt: TrainOptions, n_focus: int
) -> Callable[[torch.Tensor], torch.Tensor | None]:
    """Per-sample weights for the classification loss that undo the focus
    oversampling: adaptation adapts the language model to the focus domain,
    while the classifier keeps the training set's class prior (without this the
    adapted classifier drifts towards the focus class; measured on tiny: hold-out
    macro-F1 0.44 -> 0.27 over 40 adaptation steps)."""
    if not n_focus or opt.focus_share <= 0 or opt.focus_domain not in DOMAINS:
        return lambda domains: None
    natural = n_focus / len(samples)
    drawn = opt.focus_share + (1 - opt.focus_share) * natural
    if drawn >= 1.0:  # focus_share 1: every sample is the focus domain's, nothing to undo
        return lambda domains: None
    w_focus, w_other = natural / drawn, (1 - natural) / (1 - drawn)
    focus_id = DOMAINS.index(opt.focus_domain)
    return lambda domains: torch.where(domains == focus_id, w_focus, w_other)


def train(
    model: GemModel,
    samples: Sequence[Sample],
    options: TrainOptions | None = None,
    teacher: GemModel | None = None,
    on_step: Callable[[int, int], None] | None = None,
) -> TrainResult:
    """Train ``model`` in place for ``options.steps`` steps (AdamW, linear warm-up
    then cosine decay); deterministic for a given model init, data and options.
    Leaves the model in eval mode.

    ``on_step(done, total)`` is called after each step, so a caller can show
    progress; gem itself prints nothing and knows no progress library."""
    opt = options or TrainOptions()
    if not samples:
        raise ValueError("train() needs at least one sample")
    cfg = model.cfg
    gen = torch.Generator().manual_seed(opt.seed)
    optim = torch.optim.AdamW(model.parameters(), lr=opt.lr, weight_decay=0.01)

    def lr_at(step: int) -> float:
        if step < opt.warmup_steps:
            return opt.lr * (step + 1) / opt.warmup_steps
        frac = (step - opt.warmup_steps) / max(1, opt.steps - opt.warmup_steps)
        return opt.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))

    focus = [i for i, s in enumerate(samples) if s.domain == opt.focus_domain]
    prior_w = _prior_weights(samples, opt, len(focus))
    if teacher is not None:
        teacher.eval()
    result = TrainResult()
    start = time.perf_counter()
    model.train()
    for step in range(opt.steps):
        for group in optim.param_groups:
            group["lr"] = lr_at(step)
        ids, labels, domains = batch_tensors(_draw(gen, samples, opt, focus), opt.max_len)
        cls_logits, lm_logits, stats = model.both(ids)
        t_cls = t_lm = None
        if teacher is not None:
            with torch.no_grad():
                t_cls, t_lm, _ = teacher.both(ids)
        kp = {
            "temperature": opt.temperature,
            "alpha": opt.alpha,
            "domain_weights": opt.domain_weights,
            "confidence_weighting": opt.confidence_weighting,
        }
        cls = knowledge_preservation_loss(
            cls_logits, labels, t_cls, domain_ids=domains, sample_weights=prior_w(domains), **kp
        )
        tgt, mask = _lm_targets(ids, cfg.pad_id)
        flat = mask.reshape(-1)
        tok_domains = domains.unsqueeze(1).expand_as(tgt).reshape(-1)[flat]
        lm = knowledge_preservation_loss(
            lm_logits[:, :-1].reshape(-1, cfg.vocab_size)[flat],
            tgt.reshape(-1)[flat],
            None if t_lm is None else t_lm[:, :-1].reshape(-1, cfg.vocab_size)[flat],
            domain_ids=tok_domains,
            **kp,
        )
        route = sum(F.cross_entropy(b, domains) for b in stats.bank_logits) / len(
            stats.bank_logits
        )
        loss = (
            opt.cls_weight * cls.loss
            + opt.lm_weight * lm.loss
            + opt.load_balance_weight * stats.load_balance_loss
            + opt.capacity_weight * (stats.admitted_fraction - cfg.dtr_capacity) ** 2
            + opt.route_weight * route
        )
        optim.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optim.step()
        result.losses.append(float(loss.detach()))
        result.admitted_fraction.append(float(stats.admitted_fraction.detach()))
        result.expert_domain_mi_bits.append(
            sum(
                mutual_information_bits(c.detach(), domains, len(DOMAINS)) for c in stats.chosen
            )
            / len(stats.chosen)
        )
        result.last_skip_fraction = stats.skip_fraction
        if on_step is not None:
            on_step(step + 1, opt.steps)
    model.eval()
    result.seconds = time.perf_counter() - start
    return result


def general_then_adapt(
    model: GemModel,
    samples: Sequence[Sample],
    general: TrainOptions,
    adapt: TrainOptions,
    on_step: Callable[[int, int], None] | None = None,
) -> tuple[TrainResult, TrainResult, GemModel]:
    """The paper's recipe: ``general`` steps on all domains, then ``adapt``
    steps focused on ``adapt.focus_domain`` with adaptive knowledge
    preservation -- the frozen general model is the teacher, so the adapted
    model keeps what it knew on the other domains. Returns both results and
    the frozen general model (the teacher)."""
    total = general.steps + adapt.steps
    step_cb = (lambda d, _t: on_step(d, total)) if on_step else None
    g = train(model, samples, general, on_step=step_cb)
    teacher = copy.deepcopy(model).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    a_cb = (lambda d, _t: on_step(general.steps + d, total)) if on_step else None
    a = train(model, samples, adapt, teacher=teacher, on_step=a_cb)
    return g, a, teacher


@dataclass
class Evaluation:
    """One pass of a model over samples: class predictions, per-sample next-token
    NLL (nats, target count; targets are the bytes and ``<eos>``) and routing."""

    preds: list[int]
    nll: list[tuple[float, int]]
    routing: dict


@torch.no_grad()
def evaluate(model: GemModel, samples: Sequence[Sample], batch_size: int = 32) -> Evaluation:
    """Both heads and the routing statistics in one body pass per batch; batches
    are formed by length (less padding) and results returned in input order."""
    if not samples:
        raise ValueError("evaluate() needs at least one sample")
    model.eval()
    order = sorted(range(len(samples)), key=lambda i: len(samples[i].text.encode("utf-8")))
    preds: dict[int, int] = {}
    nlls: dict[int, tuple[float, int]] = {}
    chosen, doms, admitted, weights = [], [], [], []
    for i in range(0, len(order), batch_size):
        rows = order[i : i + batch_size]
        ids, _, d = batch_tensors([samples[j] for j in rows], model.cfg.max_len_tokens)
        cls, lm, st = model.both(ids)
        tgt, mask = _lm_targets(ids, model.cfg.pad_id)
        nll = F.cross_entropy(lm[:, :-1].transpose(1, 2), tgt, reduction="none") * mask
        for j, p, a, b in zip(
            rows, cls.argmax(-1).tolist(), nll.sum(1).tolist(), mask.sum(1).tolist(),
            strict=True,
        ):
            preds[j], nlls[j] = p, (a, b)
        chosen.append(torch.stack(st.chosen))  # [L, B, E]
        doms.append(d)
        admitted.append(float(st.admitted_fraction))
        weights.append(len(rows))
    c, dd = torch.cat(chosen, 1), torch.cat(doms)
    mi = [mutual_information_bits(c[layer], dd, len(DOMAINS)) for layer in range(c.shape[0])]
    load = (c.sum(1) / c.sum((1, 2)).unsqueeze(-1).clamp(min=1)).tolist()
    routing = {
        "dtr_admitted_fraction": sum(a * w for a, w in zip(admitted, weights, strict=True))
        / sum(weights),
        "dtr_target_fraction": model.cfg.dtr_capacity,
        "expert_domain_mi_bits": mi,
        "expert_load_share": load,
    }
    n = len(samples)
    return Evaluation([preds[i] for i in range(n)], [nlls[i] for i in range(n)], routing)


def predict(model: GemModel, samples: Sequence[Sample]) -> list[int]:
    """Predicted class per sample (argmax of the class logits)."""
    return evaluate(model, samples).preds


def accuracy(model: GemModel, samples: Sequence[Sample]) -> float:
    """Share of samples whose predicted class equals the label."""
    preds = predict(model, samples)
    return sum(int(p == s.label) for p, s in zip(preds, samples, strict=True)) / len(samples)
