"""What every format's build shares: the deterministic training run and the
manifest fields that describe the model rather than its file.

Each format's builder (build_onnx, build_tflite) trains the same model from
the same seed, then exports, checks and describes it its own way; keeping the
training and the model facts here means a second format cannot drift to a
different model or a different description of the same one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gem.config import DOMAINS, GemConfig, get_config
from gem.data import Sample
from gem.errors import BuildError
from gem.export import BuildProgress
from gem.tokenizer import BOS_ID, EOS_ID, encode_batch

TRAIN_MAX_LEN = 128  # training crops texts here (most glosses are shorter); eval: full length
ADAPT_DOMAIN = "domain-adaptive"  # the domain the shipped variants are adapted to
CHECK_ROWS = 128  # hold-out rows the builds check exported graphs on (every domain)


@dataclass
class Trained:
    """A trained GemModel with the data it saw and what it scored."""

    cfg: GemConfig
    net: Any  # GemModel (torch)
    data: list[Sample]
    train_set: list[Sample]
    holdout: list[Sample]
    train_accuracy: float
    holdout_accuracy: float
    train_seconds: float
    quality: dict[str, Any] = field(default_factory=dict)
    data_summary: dict[str, Any] = field(default_factory=dict)

    def check_rows(self) -> list[Sample]:
        """A bounded, every-domain slice of the hold-out for graph checks."""
        return self.holdout[::max(1, len(self.holdout) // CHECK_ROWS)][:CHECK_ROWS]

    def holdout_ids(self) -> np.ndarray:
        """The check rows as one right-padded int64 batch (at most 256 tokens)."""
        ids, _ = encode_batch([s.text for s in self.check_rows()], max_len=256)
        return ids


#: the last training run of this process: building several variants or formats of
#: one model in one process (the quantization benchmark) trains it once. Training
#: is deterministic from (model, seed, steps) and the gem sources, so a rerun
#: would give the same weights; the exporters never modify the net they get.
_LAST_TRAINED: dict[tuple[str, int, int], Trained] = {}


def train_model(model: str, seed: int, train_steps: int,
                report: BuildProgress) -> Trained:
    """Build and train ``model`` deterministically from ``seed`` with the paper's
    recipe: general training on all domains, then adaptation to ADAPT_DOMAIN
    distilled from the frozen general model (adaptive knowledge preservation)."""
    key = (model, seed, train_steps)
    if key in _LAST_TRAINED:
        report("train (reusing this process's identical run)", train_steps, train_steps)
        return _LAST_TRAINED[key]
    trained = _train_model(model, seed, train_steps, report)
    _LAST_TRAINED.clear()
    _LAST_TRAINED[key] = trained
    return trained


def _train_model(model: str, seed: int, train_steps: int, report: BuildProgress) -> Trained:
    import dataclasses

    import torch

    from gem.model import build_model
    from gem.train import TrainOptions, accuracy, general_then_adapt

    cfg = get_config(model)
    torch.manual_seed(seed)
    net = build_model(cfg, seed=seed)
    corpus = _load_corpus(seed)
    train_set, holdout = corpus.train, corpus.holdout
    data = [*holdout, *train_set]
    adapt_steps = max(1, train_steps // 4)
    general = TrainOptions(
        steps=train_steps - adapt_steps, seed=seed, lr=cfg.train_lr,
        batch_size=cfg.train_batch_size, max_len=TRAIN_MAX_LEN,
    )
    # Adaptation: half of each batch from the target domain, distilled from the
    # frozen general model with less preservation on the domain being adapted.
    omega = [0.5 if d == ADAPT_DOMAIN else 1.0 for d in DOMAINS]
    adapt = dataclasses.replace(
        general, steps=adapt_steps, seed=seed + 1, lr=cfg.train_lr / 3, warmup_steps=1,
        focus_domain=ADAPT_DOMAIN, domain_weights=omega,
    )
    report("train", 0, train_steps)
    gen_res, ad_res, teacher = general_then_adapt(
        net, train_set, general, adapt, on_step=lambda done, total: report("train", done, total)
    )
    report("quality on the hold-out", 0, None)
    quality = quality_report(net, teacher, train_set, holdout, seed)
    quality["recipe"] = {
        "general_steps": general.steps,
        "adapt_steps": adapt.steps,
        "adapt_domain": ADAPT_DOMAIN,
        "adapt_preservation_weights": omega,
        "adapt_alpha": adapt.alpha,
        "teacher": "the frozen general model (adaptive knowledge preservation)",
        "dtr_admitted_fraction_by_step": _every(
            gen_res.admitted_fraction + ad_res.admitted_fraction
        ),
        "expert_domain_mi_bits_by_step": _every(
            gen_res.expert_domain_mi_bits + ad_res.expert_domain_mi_bits
        ),
        "loss_by_step": _every(gen_res.losses + ad_res.losses),
    }
    train_acc = accuracy(net, train_set[:: max(1, len(train_set) // 512)])
    return Trained(cfg, net, data, train_set, holdout, train_acc, quality["gem"]["accuracy"],
                   gen_res.seconds + ad_res.seconds, quality, corpus.summary())


def model_fields(t: Trained) -> dict[str, Any]:
    """The manifest's description of the model (same for every format)."""
    cfg = t.cfg
    counts = t.net.param_counts()
    return {
        "params_total": counts["total"],
        "params_active_per_token": cfg.param_counts()["active_per_token"],
        "params_by_group": {k: v for k, v in counts.items() if k != "total"},
        "num_classes": cfg.num_classes,
        "classes": list(cfg.domains),
        "max_len_tokens": cfg.max_len_tokens,
        "vocab_size": cfg.vocab_size,
        "pad_id": cfg.pad_id,
        "bos_id": BOS_ID,
        "routing": {
            "num_experts": cfg.num_experts,
            "experts_per_domain": cfg.experts_per_domain,
            "top_k": cfg.top_k,
            "dtr_capacity": cfg.dtr_capacity,
            "dtr_threshold": cfg.dtr_threshold,
        },
    }


def train_fields(t: Trained) -> dict[str, Any]:
    """The build's training facts (manifest ``build``)."""
    return {"train_accuracy": t.train_accuracy, "holdout_accuracy": t.holdout_accuracy,
            "train_seconds": round(t.train_seconds, 3)}


def _every(values: list[float], points: int = 50) -> list[float]:
    """At most ``points`` evenly spaced values of a per-step series (for the manifest)."""
    stride = max(1, len(values) // points)
    return [round(v, 4) for v in values[::stride]]


def _load_corpus(seed: int) -> Any:
    from gem.corpus import CorpusMissingError, load_corpus

    try:
        return load_corpus(seed=seed)
    except CorpusMissingError as exc:
        raise BuildError(f"GEM's training data is missing: {exc}") from None


def quality_report(net: Any, general: Any, train_set: list[Sample], holdout: list[Sample],
                   seed: int) -> dict[str, Any]:
    """Macro-F1 (95 % bootstrap CI) of GEM, of the general model before adaptation
    and of the naive Bayes baseline on the same hold-out; perplexity per domain
    (tokens are bytes) of GEM and of a byte unigram model; routing health."""
    from gem.metrics import NaiveBayes, UnigramLM, f1_with_ci, perplexity_with_ci
    from gem.train import evaluate

    labels = [s.label for s in holdout]
    uni = UnigramLM(net.cfg.vocab_size, EOS_ID).fit(train_set)
    ev, ev_gen = evaluate(net, holdout), evaluate(general, holdout)
    nll, nll_gen, nll_uni = ev.nll, ev_gen.nll, uni.nll(holdout)

    def ppl_by_domain(per: list[tuple[float, int]]) -> dict[str, Any]:
        out = {"all": perplexity_with_ci(per, seed)}
        for d in DOMAINS:
            rows = [per[i] for i, s in enumerate(holdout) if s.domain == d]
            if rows:
                out[d] = perplexity_with_ci(rows, seed)
        return out

    return {
        "holdout_n": len(holdout),
        "tokens": "bytes",
        "gem": {**f1_with_ci(labels, ev.preds, seed),
                "perplexity": ppl_by_domain(nll)},
        "general_before_adaptation": {
            **f1_with_ci(labels, ev_gen.preds, seed),
            "perplexity": ppl_by_domain(nll_gen),
        },
        "baseline_naive_bayes": f1_with_ci(
            labels, NaiveBayes().fit(train_set).predict(holdout), seed
        ),
        "baseline_unigram": {"perplexity": ppl_by_domain(nll_uni)},
        "routing": ev.routing,
    }
