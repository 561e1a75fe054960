"""gem.distillation: the knowledge preservation loss against hand-computed values."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch", reason="gem.distillation needs torch")

from gem.distillation import knowledge_preservation_loss  # noqa: E402


def _softmax(z: list[float], t: float = 1.0) -> list[float]:
    e = [math.exp(v / t) for v in z]
    return [v / sum(e) for v in e]


def _kl(p: list[float], q: list[float]) -> float:
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q, strict=True))


S = [[2.0, 0.0, -1.0], [0.5, 1.5, 0.0]]
T = [[0.0, 1.0, 0.0], [0.0, 3.0, -1.0]]
Y = [0, 1]


def _hand(temp: float, alphas: list[float], weights: list[float]) -> float:
    total = 0.0
    for s, t, y, a, w in zip(S, T, Y, alphas, weights, strict=True):
        ce = -math.log(_softmax(s)[y])
        kl = temp**2 * _kl(_softmax(t, temp), _softmax(s, temp))
        total += w * ((1 - a) * ce + a * kl)
    return total / sum(weights)


def _t(x: list) -> torch.Tensor:
    return torch.tensor(x)


def test_plain_distillation_matches_formula() -> None:
    parts = knowledge_preservation_loss(_t(S), _t(Y), _t(T), temperature=2.0, alpha=0.3)
    assert parts.loss.item() == pytest.approx(_hand(2.0, [0.3, 0.3], [1, 1]), rel=1e-5)


def test_domain_and_sample_weights() -> None:
    parts = knowledge_preservation_loss(
        _t(S),
        _t(Y),
        _t(T),
        temperature=1.5,
        alpha=0.8,
        domain_ids=_t([0, 2]),
        domain_weights=[0.5, 1.0, 2.0],  # alpha 0.4 for sample 0, clip(1.6) = 1 for sample 1
        sample_weights=_t([1.0, 3.0]),
    )
    assert parts.loss.item() == pytest.approx(_hand(1.5, [0.4, 1.0], [1, 3]), rel=1e-5)
    assert parts.mean_alpha.item() == pytest.approx(0.7)


def test_confidence_weighting_uses_teacher_prob_of_label() -> None:
    conf = [_softmax(T[0])[0], _softmax(T[1])[1]]
    parts = knowledge_preservation_loss(
        _t(S), _t(Y), _t(T), temperature=2.0, alpha=0.5, confidence_weighting=True
    )
    assert parts.loss.item() == pytest.approx(_hand(2.0, [0.5 * c for c in conf], [1, 1]), rel=1e-5)


def test_no_teacher_is_cross_entropy_and_teacher_gets_no_gradient() -> None:
    s = _t(S).requires_grad_(True)
    t = _t(T).requires_grad_(True)
    plain = knowledge_preservation_loss(s, _t(Y))
    assert plain.loss.item() == pytest.approx(_hand(1.0, [0.0, 0.0], [1, 1]), rel=1e-6)
    knowledge_preservation_loss(s, _t(Y), t, alpha=0.5).loss.backward()
    assert t.grad is None and s.grad is not None


def test_identical_teacher_gives_zero_kl_and_bad_args_raise() -> None:
    parts = knowledge_preservation_loss(_t(S), _t(Y), _t(S), alpha=1.0)
    assert parts.kl.item() == pytest.approx(0.0, abs=1e-7)
    with pytest.raises(ValueError, match="temperature"):
        knowledge_preservation_loss(_t(S), _t(Y), _t(T), temperature=0)
    with pytest.raises(ValueError, match="alpha"):
        knowledge_preservation_loss(_t(S), _t(Y), _t(T), alpha=1.5)
    with pytest.raises(ValueError, match="domain_ids"):
        knowledge_preservation_loss(_t(S), _t(Y), _t(T), domain_weights=[1.0])
