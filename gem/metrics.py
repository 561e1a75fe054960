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
    """Percentile bootstrap CI of ``stat(indices)`` over ``n`` items."""
    rng = random.Random(seed)
    vals = sorted(stat([rng.randrange(n) for _ in range(n)]) for _ in range(resamples))
    lo = vals[int((1 - level) / 2 * resamples)]
    hi = vals[min(resamples - 1, int((1 + level) / 2 * resamples))]
    return lo, hi


def f1_with_ci(labels: Sequence[int], preds: Sequence[int], seed: int = 0) -> dict[str, float]:
    """Macro-F1 and its bootstrap 95 % CI (resampling hold-out items)."""
    lo, hi = bootstrap_ci(
        len(labels), lambda ix: macro_f1([labels[i] for i in ix], [preds[i] for i in ix]),
        resamples=500, seed=seed,
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
