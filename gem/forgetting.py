"""Forgetting, measured both ways: the general model adapted to each domain by
plain fine-tuning and by adaptive knowledge preservation (gem/distillation.py),
on the real multi-domain corpus (docs/quality.md).

For one seed: train the general model on all domains (the build's general
recipe), then for every target domain ``t`` adapt a copy of it twice with the
*same* batches, learning rate and steps --

* ``finetune``: cross-entropy on the target domain's data only (no teacher);
* ``kp``: the same, plus distillation from the frozen general model
  (``alpha``; preservation weight ``omega_target`` on t, 1 elsewhere) --

and evaluate the general and both adapted models on the same hold-out
examples. Forgetting of an adapted model = :func:`gem.metrics.forgetting` of
its cross-domain F1 without ``t`` (the general tasks) against the general
model's; per seed the figure is the mean over target domains, and the
reduction is ``1 - F_kp / F_finetune``. Over seeds: mean and a Student-t 95 %
interval (:func:`mean_ci_over_seeds`). The language-model head's forgetting
(relative rise of the non-target perplexity) is reported beside it.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from gem.config import DOMAINS, get_config
from gem.data import Sample
from gem.metrics import (
    cross_domain_f1,
    cross_domain_transfer_ratio,
    domain_specialization_index,
    forgetting,
    forgetting_ci,
    per_domain_perplexity,
)
from gem.model import build_model
from gem.train import TrainOptions, evaluate, train

METHODS = ("finetune", "kp")

#: two-sided Student-t 97.5 % quantiles by degrees of freedom (1..30)
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
         2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
         2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def mean_ci_over_seeds(values: Sequence[float]) -> dict[str, Any]:
    """Mean over seeds and its Student-t 95 % CI (None with a single seed: one
    training run says nothing about the seed-to-seed spread)."""
    vals = [v for v in values if math.isfinite(v)]
    if not vals:
        return {"mean": None, "ci95": [None, None], "n_seeds": 0, "values": list(values)}
    mean = statistics.fmean(vals)
    if len(vals) < 2:
        return {"mean": mean, "ci95": [None, None], "n_seeds": 1, "values": list(values)}
    t = _T975[min(len(vals) - 1, len(_T975)) - 1] if len(vals) - 1 <= 30 else 1.96
    half = t * statistics.stdev(vals) / math.sqrt(len(vals))
    return {"mean": mean, "ci95": [mean - half, mean + half], "n_seeds": len(vals),
            "values": list(values)}


def eval_subset(holdout: Sequence[Sample], per_domain: int | None) -> list[Sample]:
    """The first ``per_domain`` hold-out examples of every domain (all: None)."""
    if per_domain is None:
        return list(holdout)
    seen: dict[str, int] = {}
    out = []
    for s in holdout:
        if seen.get(s.domain, 0) < per_domain:
            seen[s.domain] = seen.get(s.domain, 0) + 1
            out.append(s)
    return out


def _non_target_ppl(nll: Sequence[tuple[float, int]], domains: Sequence[str], t: str) -> float:
    rows = [(n, d) for n, d in zip(nll, domains, strict=True) if d != t]
    return per_domain_perplexity([n for n, _ in rows], ["rest"] * len(rows))["rest"]


def run_seed(
    model: str,
    seed: int,
    train_set: Sequence[Sample],
    holdout: Sequence[Sample],
    *,
    general_steps: int | None = None,
    adapt_steps: int | None = None,
    targets: Sequence[str] = DOMAINS,
    alpha: float = 0.5,
    omega_target: float = 0.5,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Both adaptations of one general model to every target domain; the
    per-example predictions are kept so every figure can be recomputed."""
    cfg = get_config(model)
    steps = cfg.train_steps
    g_steps = general_steps if general_steps is not None else steps - max(1, steps // 4)
    a_steps = adapt_steps if adapt_steps is not None else max(1, steps // 4)
    torch.manual_seed(seed)
    net = build_model(cfg, seed=seed)
    general_opt = TrainOptions(steps=g_steps, seed=seed, lr=cfg.train_lr,
                               batch_size=cfg.train_batch_size, max_len=128)
    t0 = time.perf_counter()
    train(net, train_set, general_opt)
    general_s = time.perf_counter() - t0
    for p in net.parameters():
        p.requires_grad_(False)
    labels = [s.label for s in holdout]
    domains = [s.domain for s in holdout]
    ev_g = evaluate(net, holdout)
    out: dict[str, Any] = {"seed": seed, "general_steps": g_steps, "adapt_steps": a_steps,
                           "general_train_s": round(general_s, 1), "labels": labels,
                           "domains": domains, "general_preds": ev_g.preds, "targets": {}}
    ppl_g = {t: _non_target_ppl(ev_g.nll, domains, t) for t in targets}
    for t in targets:
        row: dict[str, Any] = {}
        for method in METHODS:
            student = copy.deepcopy(net)
            for p in student.parameters():
                p.requires_grad_(True)
            omega = [omega_target if d == t else 1.0 for d in DOMAINS]
            # the same batches for both methods: only the teacher differs
            opt = dataclasses.replace(general_opt, steps=a_steps, seed=seed + 1,
                                      lr=cfg.train_lr / 3, warmup_steps=1, focus_domain=t,
                                      focus_share=1.0, alpha=alpha, domain_weights=omega)
            a = time.perf_counter()
            train(student, train_set, opt, teacher=net if method == "kp" else None)
            ev = evaluate(student, holdout)
            before = cross_domain_f1(labels, ev_g.preds, domains, exclude=t)
            after = cross_domain_f1(labels, ev.preds, domains, exclude=t)
            row[method] = {
                "preds": ev.preds,
                "general_f1_before": before,
                "general_f1_after": after,
                "forgetting": forgetting(before, after),
                "forgetting_example_ci95": forgetting_ci(
                    labels, ev_g.preds, ev.preds, domains, target=t, resamples=300, seed=seed
                )["ci95"],
                "target_f1_before": _f1_of(labels, ev_g.preds, domains, t),
                "target_f1_after": _f1_of(labels, ev.preds, domains, t),
                "dsi": domain_specialization_index(labels, ev.preds, domains, t),
                "cdtr": cross_domain_transfer_ratio(labels, ev.preds, ev_g.preds, domains, t),
                "ppl_rest_before": ppl_g[t],
                "ppl_rest_after": _non_target_ppl(ev.nll, domains, t),
                "seconds": round(time.perf_counter() - a, 1),
            }
            row[method]["lm_forgetting"] = (row[method]["ppl_rest_after"] / ppl_g[t]) - 1.0
            if log:
                r = row[method]
                log(f"seed {seed} target {t:16s} {method:8s}: forgetting {r['forgetting']:+.3f} "
                    f"(general F1 {before:.3f} -> {after:.3f}), target F1 "
                    f"{r['target_f1_before']:.3f} -> {r['target_f1_after']:.3f}, rest ppl "
                    f"{ppl_g[t]:.2f} -> {r['ppl_rest_after']:.2f} ({r['seconds']} s)")
        out["targets"][t] = row
    return out


def _f1_of(labels: Sequence[int], preds: Sequence[int], domains: Sequence[str], d: str) -> float:
    from gem.metrics import per_domain_f1

    return per_domain_f1(labels, preds, domains)[d]


def summarize(seeds: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per method: mean forgetting over target domains per seed, then the mean
    and CI over seeds; the reduction of forgetting by knowledge preservation."""
    per_seed: dict[str, list[float]] = {m: [] for m in METHODS}
    lm: dict[str, list[float]] = {m: [] for m in METHODS}
    tgt_gain: dict[str, list[float]] = {m: [] for m in METHODS}
    reduction, lm_reduction = [], []
    for s in seeds:
        rows = s["targets"].values()
        for m in METHODS:
            per_seed[m].append(statistics.fmean(r[m]["forgetting"] for r in rows))
            lm[m].append(statistics.fmean(r[m]["lm_forgetting"] for r in rows))
            tgt_gain[m].append(statistics.fmean(
                r[m]["target_f1_after"] - r[m]["target_f1_before"] for r in rows))
        ft, kp = per_seed["finetune"][-1], per_seed["kp"][-1]
        reduction.append(1.0 - kp / ft if ft > 0 else math.nan)
        lft, lkp = lm["finetune"][-1], lm["kp"][-1]
        lm_reduction.append(1.0 - lkp / lft if lft > 0 else math.nan)
    return {
        "forgetting": {m: mean_ci_over_seeds(per_seed[m]) for m in METHODS},
        "reduction": mean_ci_over_seeds(reduction),
        "lm_forgetting": {m: mean_ci_over_seeds(lm[m]) for m in METHODS},
        "lm_reduction": mean_ci_over_seeds(lm_reduction),
        "target_f1_gain": {m: mean_ci_over_seeds(tgt_gain[m]) for m in METHODS},
        "paper_claim_reduction": 0.43,
    }
