"""What every format's build shares: the deterministic training run and the
manifest fields that describe the model rather than its file.

Each format's builder (build_onnx, build_tflite) trains the same model from
the same seed, then exports, checks and describes it its own way; keeping the
training and the model facts here means a second format cannot drift to a
different model or a different description of the same one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gem.config import DOMAINS, GemConfig, get_config
from gem.data import Sample, samples_digest
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
    #: the manifest's ``compression`` section of a compressed variant (gem/compress)
    compression: dict[str, Any] | None = None
    #: the frozen general model the adaptation was distilled from (the reference
    #: of GG / CDTR; uncompressed)
    general: Any = None

    def check_rows(self) -> list[Sample]:
        """A bounded, every-domain slice of the hold-out for graph checks."""
        return self.holdout[::max(1, len(self.holdout) // CHECK_ROWS)][:CHECK_ROWS]

    def holdout_ids(self) -> np.ndarray:
        """The check rows as one right-padded int64 batch (at most 256 tokens)."""
        ids, _ = encode_batch([s.text for s in self.check_rows()], max_len=256)
        return ids


#: trained runs of this process by (model, seed, train_steps): training is
#: deterministic, so a second variant or format built in the same process (the
#: fp16 and int8 Core ML builds, a test module, bench_quantized.py) reuses the
#: one run instead of repeating minutes of training and hold-out evaluation
_RUNS: dict[tuple[str, int, int, str], Trained] = {}
_RUNS_KEPT = 2


def train_model(model: str, seed: int, train_steps: int,
                report: BuildProgress, variant: str = "fp32") -> Trained:
    """The deterministic training run for these inputs, once per process: each
    caller gets its own copy of the model and quality block to change freely.
    A compressed variant is its own run (compression and its quality report
    come after training, inside it)."""
    import copy
    import dataclasses

    from gem.compress.spec import is_compressed

    key = (model, seed, train_steps, variant if is_compressed(variant) else "")
    if key not in _RUNS:
        while len(_RUNS) >= _RUNS_KEPT:
            _RUNS.pop(next(iter(_RUNS)))
        _RUNS[key] = _train_model(model, seed, train_steps, report, variant)
    else:
        report("train", train_steps, train_steps)
    run = _RUNS[key]
    return dataclasses.replace(run, net=copy.deepcopy(run.net),
                               quality=copy.deepcopy(run.quality))


def _train_model(model: str, seed: int, train_steps: int,
                 report: BuildProgress, variant: str = "fp32") -> Trained:
    """Build and train ``model`` deterministically from ``seed`` with the paper's
    recipe: general training on all domains, then adaptation to ADAPT_DOMAIN
    distilled from the frozen general model (adaptive knowledge preservation).
    A compressed ``variant`` (gem/compress) is then pruned / GPTQ-quantized,
    training-free, with Hessians calibrated on ADAPT_DOMAIN and general texts;
    the quality report describes the compressed model."""
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
    compression = None
    from gem.compress.spec import is_compressed, parse_variant

    if is_compressed(variant):
        from gem.compress.apply import compress_model

        report(f"compress ({variant})", 0, None)
        compression = compress_model(net, parse_variant(variant), train_set, ADAPT_DOMAIN)
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
                   gen_res.seconds + ad_res.seconds, quality, corpus.summary(), compression,
                   teacher)


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
        **({"compression": t.compression} if t.compression else {}),
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
        # what the on-device eval benchmark scores a device's predictions against
        # (harness/quality.py): the hold-out by digest and index, and the per-example
        # predictions of this fp32 model and of the general model before adaptation
        "eval_reference": {
            "holdout_sha256": samples_digest(holdout),
            "corpus_seed": seed,
            "adapt_domain": ADAPT_DOMAIN,
            "preds_fp32": list(ev.preds),
            "preds_general": list(ev_gen.preds),
        },
    }


@contextlib.contextmanager
def quiet_converter(loggers: tuple[str, ...], env: Mapping[str, str],
                    stderr: bool = False) -> Iterator[None]:
    """Silence a converter while it runs: the named loggers at ERROR, ``env`` set
    (its progress-bar / log-level switches), warnings and stdout (stderr too when
    asked) to /dev/null, all restored afterwards. The harness shows its own
    progress; a converter's chatter would only bury it."""
    logs = [logging.getLogger(n) for n in loggers]
    levels = [lg.level for lg in logs]
    old_env = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    for lg in logs:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), open(os.devnull, "w") as null, \
                contextlib.redirect_stdout(null), \
                (contextlib.redirect_stderr(null) if stderr else contextlib.nullcontext()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, lvl in zip(logs, levels, strict=True):
            lg.setLevel(lvl)
        for k, v in old_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def named_io(model: Any, output_name: str | None = None) -> Any:
    """Wrap ``model`` so the exported program's input is called ``input_ids`` (the
    forward's argument name is what torch.export records) and, with output_name,
    its output is that name's entry of a dict (LiteRT's signature output)."""
    import torch

    class Named(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = model

        def forward(self, input_ids: torch.Tensor) -> Any:
            out = self.net(input_ids)
            return out if output_name is None else {output_name: out}

    return Named().eval()
