"""Quality figures reported beside every GEM number (no torch, no numpy needed).

* :func:`macro_f1` -- mean over classes of F1 (a class absent from both the
  labels and the predictions is skipped).
* :func:`bootstrap_ci` -- percentile bootstrap 95 % CI of a statistic over
  resampled items (deterministic from a seed).
* :class:`NaiveBayes` -- the bag-of-words multinomial naive Bayes baseline
  (word unigrams + bigrams, Laplace smoothing), trained on the same split as
  GEM so every GEM macro-F1 has a simple model's figure beside it.
* :class:`UnigramLM` -- the byte unigram language model GEM's perplexity is
  compared with (add-one smoothing over the byte vocabulary).
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from gem.data import Sample


def macro_f1(labels: Sequence[int], preds: Sequence[int]) -> float:
    """Macro-averaged F1 over the classes present in labels or predictions."""
    if len(labels) != len(preds) or not labels:
        raise ValueError("macro_f1 needs equally long, non-empty label and prediction lists")
    classes = sorted(set(labels) | set(preds))
    f1s = []
    for c in classes:
        tp = sum(1 for y, p in zip(labels, preds, strict=True) if y == c and p == c)
        fp = sum(1 for y, p in zip(labels, preds, strict=True) if y != c and p == c)
        fn = sum(1 for y, p in zip(labels, preds, strict=True) if y == c and p != c)
        f1s.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return sum(f1s) / len(f1s)


def bootstrap_ci(
    n: int,
    stat: Callable[[list[int]], float],
    resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap CI of ``stat(indices)`` over ``n`` items (one
    key of :func:`bootstrap_cis`, the single bootstrap of this module)."""
    return bootstrap_cis(n, lambda ix: {"v": stat(ix)}, resamples, seed, level)["v"]


def f1_with_ci(labels: Sequence[int], preds: Sequence[int], seed: int = 0) -> dict[str, float]:
    """Macro-F1 and its bootstrap 95 % CI (resampling hold-out items)."""
    lo, hi = bootstrap_ci(
        len(labels),
        lambda ix: macro_f1([labels[i] for i in ix], [preds[i] for i in ix]),
        resamples=500,
        seed=seed,
    )
    acc = sum(int(a == b) for a, b in zip(labels, preds, strict=True)) / len(labels)
    return {"macro_f1": macro_f1(labels, preds), "macro_f1_ci95": [lo, hi], "accuracy": acc}


def _words(text: str) -> list[str]:
    w = re.findall(r"\w+", text.lower())
    return w + [f"{a} {b}" for a, b in zip(w, w[1:], strict=False)]


class NaiveBayes:
    """Multinomial naive Bayes on word unigrams + bigrams (Laplace smoothing)."""

    def __init__(self, alpha: float = 1.0) -> None:
        self.alpha = alpha
        self.counts: dict[int, Counter[str]] = {}
        self.totals: dict[int, int] = {}
        self.priors: dict[int, float] = {}
        self.vocab: set[str] = set()

    def fit(self, samples: Sequence[Sample]) -> NaiveBayes:
        by_class: dict[int, Counter[str]] = {}
        n: Counter[int] = Counter()
        for s in samples:
            by_class.setdefault(s.label, Counter()).update(_words(s.text))
            n[s.label] += 1
        self.counts = by_class
        self.totals = {c: sum(v.values()) for c, v in by_class.items()}
        self.priors = {c: math.log(n[c] / len(samples)) for c in by_class}
        self.vocab = set().union(*by_class.values())
        return self

    def predict(self, samples: Sequence[Sample]) -> list[int]:
        v = len(self.vocab)
        out = []
        for s in samples:
            words = [w for w in _words(s.text) if w in self.vocab]
            best, best_c = -math.inf, 0
            for c, cnt in self.counts.items():
                denom = math.log(self.totals[c] + self.alpha * v)
                score = self.priors[c] + sum(
                    math.log(cnt.get(w, 0) + self.alpha) - denom for w in words
                )
                if score > best:
                    best, best_c = score, c
            out.append(best_c)
        return out


class UnigramLM:
    """Byte unigram model with add-one smoothing over ``vocab`` symbols; the
    floor GEM's perplexity must be far below. Scores the same targets GEM's
    LM head predicts: the bytes of each text followed by ``<eos>``."""

    def __init__(self, vocab: int, eos_id: int) -> None:
        self.vocab, self.eos_id = vocab, eos_id
        self.logp: list[float] = []

    def _targets(self, text: str) -> list[int]:
        return [*text.encode("utf-8"), self.eos_id]

    def fit(self, samples: Sequence[Sample]) -> UnigramLM:
        c: Counter[int] = Counter()
        for s in samples:
            c.update(self._targets(s.text))
        total = sum(c.values()) + self.vocab
        self.logp = [math.log((c.get(i, 0) + 1) / total) for i in range(self.vocab)]
        return self

    def nll(self, samples: Sequence[Sample]) -> list[tuple[float, int]]:
        """(summed negative log-likelihood in nats, target count) per sample."""
        out = []
        for s in samples:
            t = self._targets(s.text)
            out.append((-sum(self.logp[i] for i in t), len(t)))
        return out


def perplexity_with_ci(per_sample: Sequence[tuple[float, int]], seed: int = 0) -> dict:
    """Perplexity exp(sum nll / sum tokens) and its bootstrap 95 % CI over samples."""

    def ppl(ix: Sequence[int]) -> float:
        nll = sum(per_sample[i][0] for i in ix)
        tok = sum(per_sample[i][1] for i in ix)
        return math.exp(nll / max(tok, 1))

    lo, hi = bootstrap_ci(len(per_sample), ppl, resamples=500, seed=seed)
    return {"perplexity": ppl(range(len(per_sample))), "perplexity_ci95": [lo, hi]}


# --------------------------------------------------------------------------
# Domain quality: per-domain F1 / perplexity, forgetting and the GEM paper's
# three indices (DSI, GG, CDTR). The paper names the indices but never defines
# them; the definitions below are the project's (docs/quality.md has the
# formulas with a worked example). Every function takes per-example columns
# (labels, predictions, domain names) so that :func:`with_ci` can resample
# *examples* -- one bootstrap for every figure, paired where two prediction
# lists are compared on the same examples.
# --------------------------------------------------------------------------


def _domain_classes(labels: Sequence[int], domains: Sequence[str]) -> dict[str, set[int]]:
    out: dict[str, set[int]] = {}
    for y, d in zip(labels, domains, strict=True):
        out.setdefault(d, set()).add(y)
    return out


def per_domain_f1(
    labels: Sequence[int], preds: Sequence[int], domains: Sequence[str]
) -> dict[str, float]:
    """Macro-F1 of each domain's task, ``{domain: F1}`` (domains in first-seen order).

    For domain ``d`` with label set ``C_d`` (the labels of its examples), the
    F1 of every class ``c`` in ``C_d`` counts ``tp``/``fn`` on d's examples and
    ``fp`` on d's examples *plus* examples of other domains whose label is not
    in ``C_d`` but that were predicted as ``c`` (a foreign example leaking into
    d's classes). So when labels are the domains (GEM's 8-way task) this is the
    usual one-vs-rest F1 of class d over the whole set; when domains share a
    label set it is the macro-F1 within the domain.
    """
    if not (len(labels) == len(preds) == len(domains)) or not labels:
        raise ValueError("per_domain_f1 needs equally long, non-empty labels, preds and domains")
    classes = _domain_classes(labels, domains)
    out: dict[str, float] = {}
    for d, cd in classes.items():
        f1s = []
        for c in sorted(cd):
            tp = fp = fn = 0
            for y, p, dom in zip(labels, preds, domains, strict=True):
                if dom == d:
                    tp += y == c and p == c
                    fn += y == c and p != c
                    fp += y != c and p == c
                elif y not in cd and p == c:
                    fp += 1
            f1s.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
        out[d] = sum(f1s) / len(f1s)
    return out


def cross_domain_f1(
    labels: Sequence[int],
    preds: Sequence[int],
    domains: Sequence[str],
    exclude: str | None = None,
) -> float:
    """Unweighted mean of :func:`per_domain_f1` over the domains (every domain
    counts the same however many examples it has), leaving out ``exclude``
    (the adapted model's target domain: then it is the out-of-domain, i.e.
    general-task, score)."""
    return mean_f1(per_domain_f1(labels, preds, domains), exclude)


def mean_f1(f1: dict[str, float], exclude: str | None = None) -> float:
    """Unweighted mean of per-domain F1 values without ``exclude``."""
    vals = [v for d, v in f1.items() if d != exclude]
    if not vals:
        raise ValueError(f"cross_domain_f1: no domain left besides {exclude!r}")
    return sum(vals) / len(vals)


def per_domain_perplexity(
    nll: Sequence[tuple[float, int]], domains: Sequence[str]
) -> dict[str, float]:
    """``{domain: exp(sum NLL / sum tokens)}`` from per-example (summed NLL in
    nats, token count) pairs -- token-weighted within a domain, as perplexity is."""
    if len(nll) != len(domains) or not nll:
        raise ValueError("per_domain_perplexity needs equally long, non-empty nll and domains")
    acc: dict[str, list[float]] = {}
    for (n, t), d in zip(nll, domains, strict=True):
        a = acc.setdefault(d, [0.0, 0.0])
        a[0] += n
        a[1] += t
    return {d: math.exp(n / max(t, 1)) for d, (n, t) in acc.items()}


def forgetting(general_before: float, general_after: float) -> float:
    """Relative drop of a higher-is-better general-task score after adaptation:
    ``(before - after) / before`` (0 = nothing forgotten, 1 = all of it,
    negative = the general tasks improved). ``before`` must be > 0."""
    if general_before <= 0:
        raise ValueError(
            f"forgetting needs a positive score before adaptation, got {general_before}"
        )
    return (general_before - general_after) / general_before


def domain_specialization_index(
    labels: Sequence[int], preds: Sequence[int], domains: Sequence[str], target: str
) -> float:
    """DSI = F1(target) - mean over the other domains of F1(d), in F1 points
    (in [-1, 1]; > 0: the model is better in its target domain than out of it)."""
    return dsi_of(per_domain_f1(labels, preds, domains), target)


def dsi_of(f1: dict[str, float], target: str) -> float:
    """DSI from per-domain F1 values (see :func:`domain_specialization_index`)."""
    if target not in f1:
        raise ValueError(f"DSI: target domain {target!r} has no example (have {sorted(f1)})")
    if len(f1) < 2:
        raise ValueError("DSI needs at least one domain besides the target")
    return f1[target] - mean_f1(f1, target)


def generalization_gap(
    labels: Sequence[int],
    preds: Sequence[int],
    reference_preds: Sequence[int],
    domains: Sequence[str],
    exclude: str | None = None,
) -> float:
    """GG = cross-domain F1 of the reference (general, unspecialised,
    uncompressed) model - cross-domain F1 of this model, on the same examples,
    in F1 points (> 0: general-task performance lost; ``exclude`` drops a
    target domain from both)."""
    return cross_domain_f1(labels, reference_preds, domains, exclude) - cross_domain_f1(
        labels, preds, domains, exclude
    )


def cross_domain_transfer_ratio(
    labels: Sequence[int],
    preds: Sequence[int],
    reference_preds: Sequence[int],
    domains: Sequence[str],
    target: str,
) -> float:
    """CDTR = mean over d != target of (F1_d - F1ref_d) / (F1_target - F1ref_target):
    the share of the target domain's gain over the reference (general) model
    that carries over to the other domains (1: all of it, 0: none, < 0: the
    others lost). NaN when the target gained nothing (the ratio is undefined)."""
    return cdtr_of(
        per_domain_f1(labels, preds, domains),
        per_domain_f1(labels, reference_preds, domains),
        target,
    )


def cdtr_of(f1: dict[str, float], ref: dict[str, float], target: str) -> float:
    """CDTR from per-domain F1 of the model and of the reference
    (see :func:`cross_domain_transfer_ratio`)."""
    if target not in f1:
        raise ValueError(f"CDTR: target domain {target!r} has no example (have {sorted(f1)})")
    gain = f1[target] - ref[target]
    others = [f1[d] - ref[d] for d in f1 if d != target]
    if not others:
        raise ValueError("CDTR needs at least one domain besides the target")
    if abs(gain) < 1e-12:
        return math.nan
    return (sum(others) / len(others)) / gain


def top1_agreement(preds: Sequence[int], reference_preds: Sequence[int]) -> float:
    """Share of examples where two models predict the same class (e.g. int8 vs fp32)."""
    if len(preds) != len(reference_preds) or not preds:
        raise ValueError("top1_agreement needs equally long, non-empty prediction lists")
    return sum(int(a == b) for a, b in zip(preds, reference_preds, strict=True)) / len(preds)


# -- confidence intervals: one bootstrap over examples for all of the above --


def bootstrap_cis(
    n: int,
    stat: Callable[[list[int]], dict[str, float]],
    resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap CIs of every key of ``stat(indices)`` over ``n``
    items, from the *same* resamples (so per-domain CIs are joint). A key
    missing or NaN in a resample (a domain drawn with no example, an undefined
    ratio) is left out of that key's percentiles; a key never finite gets
    (nan, nan)."""
    rng = random.Random(seed)
    vals: dict[str, list[float]] = {}
    for _ in range(resamples):
        for k, v in stat([rng.randrange(n) for _ in range(n)]).items():
            vals.setdefault(k, [])
            if v is not None and math.isfinite(v):
                vals[k].append(v)
    out: dict[str, tuple[float, float]] = {}
    for k, vs in vals.items():
        if not vs:
            out[k] = (math.nan, math.nan)
            continue
        vs.sort()
        m = len(vs)
        out[k] = (vs[int((1 - level) / 2 * m)], vs[min(m - 1, int((1 + level) / 2 * m))])
    return out


def with_ci(
    metric: Callable[..., float | dict[str, float]],
    *columns: Sequence,
    resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    **kwargs: Any,
) -> dict:
    """``metric(*columns, **kwargs)`` and its bootstrap CI over examples: every
    column (labels, predictions, reference predictions, domains, NLL pairs) is
    one value per example and is resampled with the same indices (a paired
    bootstrap). Returns ``{"value": v, "ci95": [lo, hi]}`` for a scalar metric,
    ``{"value": {k: v}, "ci95": {k: [lo, hi]}}`` for a per-domain one."""
    n = len(columns[0])
    if any(len(c) != n for c in columns):
        raise ValueError("with_ci: every column needs one value per example")

    def on(ix: Sequence[int]) -> float | dict[str, float]:
        return metric(*[[c[i] for i in ix] for c in columns], **kwargs)

    def safe(ix: list[int]) -> dict[str, float]:
        try:
            v = on(ix)
        except ValueError:  # e.g. the target domain not drawn in this resample
            return {}
        return v if isinstance(v, dict) else {"value": v}

    value = on(range(n))
    cis = bootstrap_cis(n, safe, resamples=resamples, seed=seed, level=level)
    if isinstance(value, dict):
        return {"value": value, "ci95": {k: list(cis.get(k, (math.nan, math.nan))) for k in value}}
    return {"value": value, "ci95": list(cis.get("value", (math.nan, math.nan)))}


def per_domain_f1_ci(
    labels: Sequence[int], preds: Sequence[int], domains: Sequence[str], **kw: Any
) -> dict:
    """:func:`per_domain_f1` with per-domain bootstrap CIs (see :func:`with_ci`)."""
    return with_ci(per_domain_f1, labels, preds, domains, **kw)


def cross_domain_f1_ci(
    labels: Sequence[int],
    preds: Sequence[int],
    domains: Sequence[str],
    exclude: str | None = None,
    **kw: Any,
) -> dict:
    """:func:`cross_domain_f1` with its bootstrap CI."""
    return with_ci(cross_domain_f1, labels, preds, domains, exclude=exclude, **kw)


def per_domain_perplexity_ci(
    nll: Sequence[tuple[float, int]], domains: Sequence[str], **kw: Any
) -> dict:
    """:func:`per_domain_perplexity` with per-domain bootstrap CIs."""
    return with_ci(per_domain_perplexity, nll, domains, **kw)


def _forgetting_of(
    labels: Sequence[int],
    before: Sequence[int],
    after: Sequence[int],
    domains: Sequence[str],
    target: str | None = None,
) -> float:
    return forgetting(
        cross_domain_f1(labels, before, domains, target),
        cross_domain_f1(labels, after, domains, target),
    )


def forgetting_ci(
    labels: Sequence[int],
    preds_before: Sequence[int],
    preds_after: Sequence[int],
    domains: Sequence[str],
    target: str | None = None,
    **kw: Any,
) -> dict:
    """Forgetting of the general-task score (cross-domain F1 without the
    target domain) from predictions before and after adaptation on the same
    examples, with its paired bootstrap CI."""
    return with_ci(_forgetting_of, labels, preds_before, preds_after, domains, target=target, **kw)


def domain_specialization_index_ci(
    labels: Sequence[int], preds: Sequence[int], domains: Sequence[str], target: str, **kw: Any
) -> dict:
    """:func:`domain_specialization_index` with its bootstrap CI."""
    return with_ci(domain_specialization_index, labels, preds, domains, target=target, **kw)


def generalization_gap_ci(
    labels: Sequence[int],
    preds: Sequence[int],
    reference_preds: Sequence[int],
    domains: Sequence[str],
    exclude: str | None = None,
    **kw: Any,
) -> dict:
    """:func:`generalization_gap` with its paired bootstrap CI."""
    return with_ci(
        generalization_gap, labels, preds, reference_preds, domains, exclude=exclude, **kw
    )


def cross_domain_transfer_ratio_ci(
    labels: Sequence[int],
    preds: Sequence[int],
    reference_preds: Sequence[int],
    domains: Sequence[str],
    target: str,
    **kw: Any,
) -> dict:
    """:func:`cross_domain_transfer_ratio` with its paired bootstrap CI."""
    return with_ci(
        cross_domain_transfer_ratio, labels, preds, reference_preds, domains, target=target, **kw
    )


def top1_agreement_ci(preds: Sequence[int], reference_preds: Sequence[int], **kw: Any) -> dict:
    """:func:`top1_agreement` with its paired bootstrap CI."""
    return with_ci(top1_agreement, preds, reference_preds, **kw)
