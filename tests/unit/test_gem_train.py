"""gem.train: a few deterministic steps that learn something."""

from __future__ import annotations

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
    # distillation path: the trained model as teacher of a fresh student
    student = build_model(TINY, seed=1)
    r = train(
        student,
        DATA,
        TrainOptions(steps=2, batch_size=8, max_len=64, domain_weights=[1.0] * 8),
        teacher=model,
    )
    assert len(r.losses) == 2 and all(v == v for v in r.losses)  # finite, not NaN
    assert len(predict(student, DATA[:5])) == 5
