"""The compression solvers on small layers whose answers can be checked by hand,
and on correlated-input layers where the Hessian must beat the naive rules."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from gem.compress.obs import (  # noqa: E402
    gptq_quantize,
    magnitude_prune,
    output_error,
    rtn_quantize,
    sparsegpt_prune,
)


def correlated_layer(rows: int = 16, cols: int = 32, n: int = 400, seed: int = 0):
    """A layer whose inputs share strong common factors (as real activations do):
    the case where compensating a removed weight with its neighbours pays."""
    g = torch.Generator().manual_seed(seed)
    factors = torch.randn(n, 4, generator=g, dtype=torch.float64)
    mixing = torch.randn(4, cols, generator=g, dtype=torch.float64)
    x = factors @ mixing + 0.1 * torch.randn(n, cols, generator=g, dtype=torch.float64)
    w = torch.randn(rows, cols, generator=g, dtype=torch.float64)
    return w, x.T @ x


def test_obs_prune_two_inputs_by_hand():
    # W = [1, 2], H = [[2, 1], [1, 2]] (damp 0). Saliency w_i^2 / [H^-1]_ii: H^-1 =
    # [[2, -1], [-1, 2]] / 3 -> input 0: 1 / (2/3) = 1.5, input 1: 4 / (1/2) = 8
    # (conditional on input 0). Input 0 goes; OBS moves it into input 1:
    # w1 += w0 * H01 / H11 = 2 + 0.5 = 2.5. Error [-1, .5] H [-1, .5]^T = 1.5;
    # magnitude pruning (no update) leaves 2.
    w = torch.tensor([[1.0, 2.0]], dtype=torch.float64)
    h = torch.tensor([[2.0, 1.0], [1.0, 2.0]], dtype=torch.float64)
    got = sparsegpt_prune(w, h, sparsity=0.5, damp=0.0)
    assert torch.allclose(got, torch.tensor([[0.0, 2.5]], dtype=torch.float64))
    assert output_error(w, got, h) == pytest.approx(1.5)
    assert output_error(w, magnitude_prune(w, 0.5), h) == pytest.approx(2.0)


def test_gptq_two_inputs_by_hand():
    # 3-bit symmetric grid, scale = max|w| / 3 = 0.1. GPTQ rounds input 0, moves
    # its error into input 1 (w1 -= (q0 - w0) * H01 / H11), then rounds input 1.
    w = torch.tensor([[0.14, 0.3]], dtype=torch.float64)
    h = torch.tensor([[1.0, -0.95], [-0.95, 1.0]], dtype=torch.float64)
    s = 0.1
    q0 = round(0.14 / s) * s  # 0.1
    w1 = 0.3 - (q0 - 0.14) * (-0.95) / 1.0  # 0.262
    q1 = round(w1 / s) * s  # 0.3
    got, scales = gptq_quantize(w, h, bits=3, damp=0.0)
    assert torch.allclose(got, torch.tensor([[q0, q1]], dtype=torch.float64))
    assert scales.flatten().tolist() == pytest.approx([s])


def test_sparsegpt_beats_magnitude_on_correlated_inputs():
    for seed in range(3):
        w, h = correlated_layer(seed=seed)
        for n_m in (None, (2, 4)):
            sp = sparsegpt_prune(w, h, 0.5, n_m)
            mag = magnitude_prune(w, 0.5, n_m)
            e_sp, e_mag = output_error(w, sp, h), output_error(w, mag, h)
            assert e_sp <= e_mag, (seed, n_m, e_sp, e_mag)
            assert e_sp < 0.7 * e_mag  # not a tie: the compensation does real work
            assert int((sp == 0).sum()) == w.numel() // 2


def test_two_four_pattern_holds_exactly():
    w, h = correlated_layer(rows=8, cols=64)
    sp = sparsegpt_prune(w, h, n_m=(2, 4), block_size=24)  # blocks not a multiple of 4 too
    groups = (sp == 0).reshape(8, 16, 4).sum(-1)
    assert torch.equal(groups, torch.full((8, 16), 2))


def test_unstructured_sparsity_per_row_and_block():
    w, h = correlated_layer(rows=4, cols=40)
    sp = sparsegpt_prune(w, h, 0.5, block_size=16)  # blocks 16, 16, 8
    assert ((sp == 0).sum(1) == 20).all()


def test_gptq_beats_round_to_nearest():
    for seed in range(3):
        w, h = correlated_layer(seed=seed)
        for bits, group in ((8, None), (4, None), (4, 8)):
            q, scales = gptq_quantize(w, h, bits, group)
            r = rtn_quantize(w, bits, group)
            assert output_error(w, q, h) <= output_error(w, r, h), (seed, bits, group)
            # every value on its group's grid: q / scale is an integer within ±qmax
            qmax = 2 ** (bits - 1) - 1
            g = group or w.shape[1]
            k = (q / scales.repeat_interleave(g, dim=1)[:, : w.shape[1]])
            assert torch.allclose(k, k.round(), atol=1e-6) and k.abs().max() <= qmax + 1e-6
    w, h = correlated_layer(seed=5)
    assert output_error(w, gptq_quantize(w, h, 4)[0], h) < \
        0.7 * output_error(w, rtn_quantize(w, 4), h)


def test_dead_inputs_and_bad_shapes():
    w, h = correlated_layer(rows=4, cols=8)
    h[3, :] = 0.0
    h[:, 3] = 0.0  # input 3 is never nonzero: its weights are free to go
    sp = sparsegpt_prune(w, h, 0.5)
    assert (sp[:, 3] == 0).all()
    with pytest.raises(ValueError, match="multiple of 4"):
        sparsegpt_prune(torch.ones(2, 6), torch.eye(6), n_m=(2, 4))
