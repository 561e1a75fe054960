"""gem.model: shapes, determinism, and that DTR and SCAR really route."""

from __future__ import annotations

import dataclasses

import pytest

torch = pytest.importorskip("torch", reason="gem.model needs torch (pip install torch==2.13.0)")

from gem.config import get_config  # noqa: E402
from gem.data import generate_dataset  # noqa: E402
from gem.model import GemModel, RoutingStats, build_model  # noqa: E402
from gem.quantization import QUANT_GROUPS, quant_group  # noqa: E402
from gem.tokenizer import PAD_ID, encode_batch  # noqa: E402

TINY = get_config("tiny")


def _batch(n: int = 16, max_len: int = 128) -> torch.Tensor:
    ids, _ = encode_batch([s.text for s in generate_dataset(4)[:n]], max_len=max_len)
    return torch.from_numpy(ids)


def test_forward_shapes_and_dtype() -> None:
    model = build_model(TINY)
    ids = _batch(5)
    logits = model(ids)
    assert logits.shape == (5, TINY.num_classes) and logits.dtype == torch.float32
    assert torch.isfinite(logits).all()
    assert model(ids[:, :1]).shape == (5, TINY.num_classes)  # a single token works
    with pytest.raises(ValueError, match="max_len_tokens"):
        model(torch.zeros(1, TINY.max_len_tokens + 1, dtype=torch.int64))


def test_deterministic_from_seed_without_touching_global_rng() -> None:
    state = torch.random.get_rng_state()
    a, b, c = build_model(TINY, seed=7), build_model(TINY, seed=7), build_model(TINY, seed=8)
    assert torch.equal(torch.random.get_rng_state(), state)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), name
    assert any(
        not torch.equal(pa, pc) for pa, pc in zip(a.parameters(), c.parameters(), strict=True)
    )
    ids = _batch(4)
    assert torch.equal(a(ids), b(ids))


@pytest.mark.parametrize("name", ["tiny", "edge"])
def test_param_counts_match_config(name: str) -> None:
    cfg = get_config(name)
    model = GemModel(cfg)
    counts = model.param_counts()
    assert counts["total"] == cfg.param_counts()["total"]
    assert counts["expert"] == cfg.param_counts()["experts_total"]
    assert sum(v for k, v in counts.items() if k != "total") == counts["total"]


def test_every_parameter_has_one_quant_group() -> None:
    for name, _ in GemModel(TINY).named_parameters():
        hits = [g for g, needles in QUANT_GROUPS.items() if any(n in name for n in needles)]
        assert len(hits) == 1, (name, hits)
    assert quant_group("layers.3.scar.w_up") == "expert"
    assert quant_group("layers.0.dtr.score.weight") == "router"
    with pytest.raises(KeyError, match="QUANT_GROUPS"):
        quant_group("mystery.weight")


def test_dtr_routes_some_tokens_past_the_experts() -> None:
    model = build_model(TINY)
    ids = _batch(16)
    _, stats = model(ids, return_stats=True)
    assert isinstance(stats, RoutingStats)
    real = ids != PAD_ID
    eligible = real & (torch.arange(ids.shape[1]) >= TINY.route_tokens)
    for admitted, score in zip(stats.dtr_admitted, stats.dtr_score, strict=True):
        adm = admitted.bool()
        assert adm[eligible].any() and (~adm[eligible]).any(), "DTR admits some, skips others"
        assert not adm[~eligible].any(), "padding and the routing prefix are never admitted"
        assert torch.equal(adm[eligible], score[eligible] >= TINY.dtr_threshold)
    assert 0.0 < stats.skip_fraction < 1.0


def test_skipped_tokens_get_no_expert_compute() -> None:
    # A threshold above 1 skips every token: the experts' weights must then have
    # no influence at all on the output.
    cfg = dataclasses.replace(TINY, dtr_threshold=1.01)
    model = build_model(cfg)
    ids = _batch(4)
    before = model(ids)
    with torch.no_grad():
        for layer in model.layers:
            layer.scar.w_up.mul_(3.0).add_(1.0)
    assert torch.equal(model(ids), before)
    # ...whereas with the normal threshold they do. (Scale, not shift: the
    # experts see LayerNorm output, whose features sum to zero.)
    normal = build_model(TINY)
    before = normal(ids)
    with torch.no_grad():
        normal.layers[0].scar.w_up.mul_(3.0)
    assert not torch.allclose(normal(ids), before)


def test_scar_top_k_is_really_sparse() -> None:
    model = build_model(TINY)
    ids = _batch(16)
    _, stats = model(ids, return_stats=True)
    for weights, admitted in zip(stats.scar_weights, stats.dtr_admitted, strict=True):
        nonzero = (weights != 0).sum(-1)  # [B, T] experts with weight per token
        assert set(nonzero.unique().tolist()) <= {0, TINY.top_k}
        assert (nonzero[~admitted.bool()] == 0).all()  # skipped tokens: no expert
        assert (nonzero == TINY.top_k).any()
        # per sequence, all admitted tokens share the same k experts
        for row, adm in zip(weights, admitted, strict=True):
            used = (row != 0).any(0)
            assert int(used.sum()) == (TINY.top_k if adm.any() else 0)
        assert torch.all(weights.sum(-1) <= 1.0 + 1e-6)  # softmax over k times the DTR gate


def test_unselected_experts_do_not_matter() -> None:
    model = build_model(TINY)
    ids = _batch(1)
    logits, stats = model(ids, return_stats=True)
    unused = (stats.scar_weights[0][0] == 0).all(0)  # experts of layer 0 this sequence skips
    assert int(unused.sum()) == TINY.num_experts - TINY.top_k
    with torch.no_grad():
        model.layers[0].scar.w_up[unused] = 123.0
        model.layers[0].scar.w_down[unused] = -7.0
    assert torch.equal(model(ids), logits)


def test_lm_is_causal() -> None:
    """Changing a later byte changes no earlier position's next-token logits
    (DTR and SCAR decisions are causal too)."""
    model = build_model(TINY)
    ids = _batch(2, max_len=80)
    before = model.lm_logits(ids)
    changed = ids.clone()
    changed[:, 40] = (changed[:, 40] + 7) % 256
    after = model.lm_logits(changed)
    torch.testing.assert_close(after[:, :40], before[:, :40], atol=1e-6, rtol=0)
    assert not torch.allclose(after[:, 40:], before[:, 40:])


def test_kv_cache_step_matches_full_forward() -> None:
    """Prefill + one-token decode steps with the KV cache and routing state give
    the same next-token logits as a full forward pass, across the routing prefix."""
    model = build_model(TINY)
    ids = _batch(1, max_len=60)[:, :50]
    full = model.lm_logits(ids)
    logits, k, v, r = model.step(ids[:, :8])  # shorter than route_tokens: routing continues
    outs = [logits]
    for t in range(8, ids.shape[1]):
        logits, k, v, r = model.step(ids[:, t : t + 1], k, v, r)
        outs.append(logits)
    torch.testing.assert_close(torch.stack(outs, 1), full[:, 7:], atol=1e-4, rtol=1e-4)
    assert k.shape == (TINY.n_layers, 1, TINY.n_heads, 50, TINY.d_model // TINY.n_heads)


def test_context_is_at_least_1024_tokens() -> None:
    model = build_model(TINY)
    assert TINY.max_len_tokens >= 1024 and get_config("edge").max_len_tokens >= 1024
    ids = torch.full((1, TINY.max_len_tokens), 101, dtype=torch.int64)
    assert model.lm_logits(ids).shape == (1, TINY.max_len_tokens, TINY.vocab_size)


def test_right_padding_does_not_change_logits() -> None:
    # Every routing decision is per token or over the real tokens of the
    # prefix, so pads are invisible to real tokens.
    model = build_model(TINY)
    text = generate_dataset(1)[3].text
    short, _ = encode_batch([text], max_len=128)
    long, _ = encode_batch([text], max_len=128, pad_to=short.shape[1] + 20)
    out_s, st_s = model(torch.from_numpy(short), return_stats=True)
    out_l, st_l = model(torch.from_numpy(long), return_stats=True)
    assert st_s.skip_fraction == pytest.approx(st_l.skip_fraction)
    torch.testing.assert_close(out_s, out_l, atol=1e-5, rtol=1e-5)
