"""gem.metrics' domain-quality figures on cases computed by hand
(docs/quality.md has the same worked example)."""

from __future__ import annotations

import math
import random
from fractions import Fraction as Fr

import pytest

from gem import metrics as m

# Worked example 1: labels are the domains (GEM's 8-way task, here 3-way).
LABELS = [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2]
DOMAINS = ["A"] * 4 + ["B"] * 4 + ["C"] * 4
PREDS = [0, 0, 0, 1, 1, 1, 0, 2, 2, 2, 2, 2]  # the adapted model (target C)
REF = [0, 0, 0, 0, 1, 1, 1, 0, 2, 2, 0, 1]  # the general model
# by hand: class 0 tp 3 fn 1 fp 1 (#6); class 1 tp 2 fn 2 fp 1 (#3); class 2 tp 4 fp 1 (#7)
F1 = {"A": Fr(3, 4), "B": Fr(4, 7), "C": Fr(8, 9)}
# general: class 0 tp 4 fp 2 (#7, #10); class 1 tp 3 fn 1 fp 1 (#11); class 2 tp 2 fn 2
F1_REF = {"A": Fr(4, 5), "B": Fr(3, 4), "C": Fr(2, 3)}


def close(a: float, b: Fr | float) -> bool:
    return math.isclose(a, float(b), rel_tol=0, abs_tol=1e-12)


def test_per_domain_f1_by_hand() -> None:
    got = m.per_domain_f1(LABELS, PREDS, DOMAINS)
    assert list(got) == ["A", "B", "C"]
    assert all(close(got[d], F1[d]) for d in F1)
    ref = m.per_domain_f1(LABELS, REF, DOMAINS)
    assert all(close(ref[d], F1_REF[d]) for d in F1_REF)


def test_cross_domain_f1_is_macro_f1_when_labels_are_domains() -> None:
    assert close(m.cross_domain_f1(LABELS, PREDS, DOMAINS), sum(F1.values()) / 3)
    assert close(m.cross_domain_f1(LABELS, PREDS, DOMAINS), m.macro_f1(LABELS, PREDS))
    assert close(m.cross_domain_f1(LABELS, PREDS, DOMAINS, exclude="C"), Fr(37, 56))
    with pytest.raises(ValueError, match="no domain left"):
        m.cross_domain_f1([0], [0], ["A"], exclude="A")


def test_per_domain_f1_shared_label_set_is_within_domain_macro_f1() -> None:
    labels = [0, 1, 0, 1, 0, 1, 1, 1]
    domains = ["X"] * 4 + ["Y"] * 4
    preds = [0, 1, 1, 1, 1, 1, 1, 0]
    got = m.per_domain_f1(labels, preds, domains)
    assert close(got["X"], Fr(11, 15))  # (2/3 + 4/5) / 2
    assert close(got["Y"], Fr(1, 3))  # (0 + 2/3) / 2
    assert close(got["X"], m.macro_f1(labels[:4], preds[:4]))
    assert close(got["Y"], m.macro_f1(labels[4:], preds[4:]))


def test_per_domain_perplexity_by_hand() -> None:
    got = m.per_domain_perplexity([(2.0, 2), (4.0, 2), (3.0, 3)], ["A", "A", "B"])
    assert close(got["A"], math.exp(1.5)) and close(got["B"], math.e)


def test_forgetting() -> None:
    assert close(m.forgetting(0.8, 0.6), 0.25)
    assert close(m.forgetting(0.5, 0.6), -0.2)  # the general tasks improved
    assert m.forgetting(0.7, 0.7) == 0.0
    with pytest.raises(ValueError, match="positive"):
        m.forgetting(0.0, 0.5)


def test_forgetting_from_predictions_by_hand() -> None:
    # before: general model without C = (4/5 + 3/4)/2 = 31/40; after 37/56
    got = m.forgetting_ci(LABELS, REF, PREDS, DOMAINS, target="C", resamples=50)
    assert close(got["value"], Fr(32, 217))


def test_dsi_by_hand() -> None:
    got = m.domain_specialization_index(LABELS, PREDS, DOMAINS, "C")
    assert close(got, F1["C"] - (F1["A"] + F1["B"]) / 2)
    with pytest.raises(ValueError, match="no example"):
        m.domain_specialization_index(LABELS, PREDS, DOMAINS, "Z")


def test_generalization_gap_by_hand() -> None:
    got = m.generalization_gap(LABELS, PREDS, REF, DOMAINS)
    assert close(got, (sum(F1_REF.values()) - sum(F1.values())) / 3)
    assert m.generalization_gap(LABELS, REF, REF, DOMAINS) == 0.0
    assert close(m.generalization_gap(LABELS, PREDS, REF, DOMAINS, exclude="C"), Fr(4, 35))


def test_cdtr_by_hand() -> None:
    # target gain 8/9 - 2/3 = 2/9; other gains -1/20 and -5/28 -> mean -4/35
    got = m.cross_domain_transfer_ratio(LABELS, PREDS, REF, DOMAINS, "C")
    assert close(got, Fr(-18, 35))
    assert math.isnan(m.cross_domain_transfer_ratio(LABELS, REF, REF, DOMAINS, "C"))


def test_top1_agreement() -> None:
    assert close(m.top1_agreement(PREDS, REF), Fr(7, 12))


def test_bootstrap_ci_unchanged_by_the_shared_bootstrap() -> None:
    """bootstrap_ci now delegates to bootstrap_cis; same draws, same interval."""
    data = [random.Random(3).random() for _ in range(40)]

    def stat(ix: list[int]) -> float:
        return sum(data[i] for i in ix) / len(ix)

    rng = random.Random(7)
    vals = sorted(stat([rng.randrange(40) for _ in range(40)]) for _ in range(200))
    assert m.bootstrap_ci(40, stat, resamples=200, seed=7) == (vals[5], vals[195])


def test_ci_variants_contain_the_value_and_are_paired() -> None:
    labels = LABELS * 5
    domains = DOMAINS * 5
    preds, ref = PREDS * 5, REF * 5
    for got in (
        m.cross_domain_f1_ci(labels, preds, domains, resamples=200),
        m.domain_specialization_index_ci(labels, preds, domains, "C", resamples=200),
        m.generalization_gap_ci(labels, preds, ref, domains, resamples=200),
        m.forgetting_ci(labels, ref, preds, domains, target="C", resamples=200),
        m.top1_agreement_ci(preds, ref, resamples=200),
    ):
        lo, hi = got["ci95"]
        assert lo <= got["value"] <= hi and lo < hi
    per = m.per_domain_f1_ci(labels, preds, domains, resamples=200)
    assert set(per["ci95"]) == {"A", "B", "C"}
    assert all(per["ci95"][d][0] <= per["value"][d] <= per["ci95"][d][1] for d in per["value"])
    # paired: the same predictions as the reference -> a gap of exactly 0 in every resample
    assert m.generalization_gap_ci(labels, ref, ref, domains, resamples=100)["ci95"] == [0.0, 0.0]
    # perfect predictions: F1 1 in every resample
    assert m.cross_domain_f1_ci(labels, labels, domains, resamples=50)["ci95"] == [1.0, 1.0]
    ppl = m.per_domain_perplexity_ci([(2.0, 2), (4.0, 2), (3.0, 3)] * 4, ["A", "A", "B"] * 4)
    assert ppl["ci95"]["A"][0] <= math.exp(1.5) <= ppl["ci95"]["A"][1]


def test_ci_deterministic_and_undefined_resamples_skipped() -> None:
    a = m.cross_domain_transfer_ratio_ci(LABELS, PREDS, REF, DOMAINS, "C", resamples=100, seed=4)
    b = m.cross_domain_transfer_ratio_ci(LABELS, PREDS, REF, DOMAINS, "C", resamples=100, seed=4)
    assert a == b and close(a["value"], Fr(-18, 35))
    assert all(math.isfinite(x) for x in a["ci95"])
    # a ratio undefined everywhere -> value NaN, CI (nan, nan), no crash
    c = m.cross_domain_transfer_ratio_ci(LABELS, REF, REF, DOMAINS, "C", resamples=20)
    assert math.isnan(c["value"]) and all(math.isnan(x) for x in c["ci95"])


def test_length_mismatch_is_refused() -> None:
    with pytest.raises(ValueError, match="equally long"):
        m.per_domain_f1([0, 1], [0], ["A", "A"])
    with pytest.raises(ValueError, match="one value per example"):
        m.with_ci(m.per_domain_f1, [0, 1], [0], ["A", "A"])
