"""gem.train: a few deterministic steps that learn something."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch", reason="gem.train needs torch")

from gem.config import get_config  # noqa: E402
from gem.data import generate_dataset  # noqa: E402
from gem.model import build_model  # noqa: E402
from gem.train import TrainOptions, accuracy, predict, train  # noqa: E402

TINY = get_config("tiny")
DATA = generate_dataset(16)


def test_training_is_deterministic() -> None:
    opts = TrainOptions(steps=3, batch_size=8, max_len=64)
    a, b = build_model(TINY), build_model(TINY)
    ra, rb = train(a, DATA, opts), train(b, DATA, opts)
    assert ra.losses == rb.losses
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)
    assert not a.training


def test_training_reduces_loss_and_distillation_runs() -> None:
    model = build_model(TINY)
    before = accuracy(model, DATA, max_len=64)
    res = train(model, DATA, TrainOptions(steps=15, batch_size=16, max_len=64, lr=1e-2))
    first, last = sum(res.losses[:3]) / 3, sum(res.losses[-3:]) / 3
    assert last < first, res.losses
    assert accuracy(model, DATA, max_len=64) > max(before, 1.5 / 8)
    # distillation path: the trained model as teacher of a fresh student. Pure
    # distillation (alpha=1) must pull the student towards the teacher's soft
    # outputs further than the same steps on the labels alone do: a train() that
    # ignored the teacher would leave the two students identical.
    opts = TrainOptions(steps=8, batch_size=8, max_len=64, lr=1e-2, alpha=1.0,
                        domain_weights=[1.0] * 8)
    student, plain = build_model(TINY, seed=1), build_model(TINY, seed=1)
    r = train(student, DATA, opts, teacher=model)
    r_plain = train(plain, DATA, opts)
    assert len(r.losses) == 8 and all(math.isfinite(v) for v in r.losses), r.losses
    assert r.losses[0] != r_plain.losses[0]  # same batch, another objective
    gap, gap_plain = _kl_to_teacher(model, student), _kl_to_teacher(model, plain)
    assert gap < 0.8 * gap_plain, (gap, gap_plain)
    assert len(predict(student, DATA[:5])) == 5


def _kl_to_teacher(teacher, student, temperature: float = 2.0) -> float:
    """Mean KL(teacher || student) of the softened outputs over DATA."""
    from gem.train import batch_tensors

    ids, _, _ = batch_tensors(DATA, 64)
    with torch.no_grad():
        log_pt = torch.log_softmax(teacher(ids) / temperature, dim=-1)
        log_ps = torch.log_softmax(student(ids) / temperature, dim=-1)
    return float((log_pt.exp() * (log_pt - log_ps)).sum(-1).mean())
