"""gem.corpus: real text from Debian packages, split by source document, with no
hold-out text or near-duplicate in training; the naive Bayes baseline beside it."""

from __future__ import annotations

import re

import pytest

from gem.config import DOMAINS
from gem.corpus import Doc, split_corpus
from gem.metrics import NaiveBayes, UnigramLM, macro_f1
from tests.support.corpus import corpus_docs


def _shingles(text: str, n: int = 12) -> set[str]:
    t = " ".join(re.findall(r"\w+", text.lower()))
    return {t[i : i + n] for i in range(max(1, len(t) - n + 1))}


@pytest.fixture(scope="module")
def corpus():
    return split_corpus(corpus_docs(), per_domain=1000)


def test_every_domain_has_real_text(corpus) -> None:
    for split in (corpus.train, corpus.holdout):
        counts = {d: sum(1 for s in split if s.domain == d) for d in DOMAINS}
        assert min(counts.values()) >= 100, counts
        assert all(s.label == DOMAINS.index(s.domain) for s in split)
    multi = [s.text for s in corpus.train if s.domain == "multilingual"]
    # several scripts, and many Latin-script messages (non-ASCII is not the whole signal)
    assert sum(t.isascii() for t in multi) > 0.1 * len(multi)
    assert any(re.search("[\u0400-\u04ff]", t) for t in multi)  # Cyrillic
    assert any(re.search("[\u4e00-\u9fff]", t) for t in multi)  # CJK


def test_split_is_by_source_document(corpus) -> None:
    assert not set(corpus.train_ids) & set(corpus.holdout_ids)


def test_no_holdout_text_or_near_duplicate_in_training(corpus) -> None:
    """Independent of the split's own 4-gram filter: exact (normalised) text and
    char 12-gram Jaccard >= 0.8 against every training text sharing a shingle."""
    norm = lambda t: " ".join(re.findall(r"\w+", t.lower()))  # noqa: E731
    train_norm = {norm(s.text) for s in corpus.train}
    assert not [s.text for s in corpus.holdout if norm(s.text) in train_norm]
    index: dict[str, list[int]] = {}
    train_sh = [_shingles(s.text) for s in corpus.train]
    for i, sh in enumerate(train_sh):
        for g in sh:
            index.setdefault(g, []).append(i)
    near = []
    for s in corpus.holdout:
        sh = _shingles(s.text)
        cands: dict[int, int] = {}
        for g in sh:
            for i in index.get(g, ()):
                cands[i] = cands.get(i, 0) + 1
        for i, inter in cands.items():
            if inter / len(sh | train_sh[i]) >= 0.8:
                near.append((s.text, corpus.train[i].text))
                break
    assert not near, near[:3]


def test_split_removes_planted_near_duplicate() -> None:
    """The filter really removes a hold-out text that repeats training text."""
    base = "the patient was given a dose of the antibiotic twice a day for a week"
    docs = [Doc(f"d{i}", "healthcare", f"{base} variant {i}") for i in range(40)]
    c = split_corpus(docs, holdout_fraction=0.5)
    assert c.dropped_near_duplicates > 0 and not c.holdout


def test_split_is_deterministic(corpus) -> None:
    again = split_corpus(corpus_docs(), per_domain=1000)
    assert again.train == corpus.train and again.holdout == corpus.holdout
    assert split_corpus(corpus_docs(), per_domain=1000, seed=1).holdout != corpus.holdout


def test_baselines_on_the_same_split(corpus) -> None:
    """The bag-of-words baseline is far above chance but not perfect (the task is
    not solved by a word list), and the unigram LM is a real floor."""
    preds = NaiveBayes().fit(corpus.train).predict(corpus.holdout)
    f1 = macro_f1([s.label for s in corpus.holdout], preds)
    assert 0.5 < f1 < 0.97, f1
    uni = UnigramLM(260, 258).fit(corpus.train)
    nll = uni.nll(corpus.holdout)
    import math

    ppl = math.exp(sum(a for a, _ in nll) / sum(b for _, b in nll))
    assert 10 < ppl < 60, ppl


def test_missing_package_is_named(tmp_path, monkeypatch) -> None:
    import gem.corpus as gc

    monkeypatch.setattr(gc, "WORDNET_DIR", tmp_path)
    reason = gc.available()
    assert reason and "wordnet-base" in reason and "apt-get install" in reason
    with pytest.raises(gc.CorpusMissingError, match="wordnet-base"):
        gc.load_docs()
