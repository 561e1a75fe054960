"""gem/compress on a whole GemModel: which parameters change, the sparsity
pattern in the experts, the λ mix of the Hessians, and the cache key."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from gem.compress import COMPRESSED_VARIANTS, parse_variant  # noqa: E402
from gem.compress.apply import compress_model  # noqa: E402
from gem.compress.calibrate import HessianSums, calibration_sets, collect, mix  # noqa: E402
from gem.config import get_config  # noqa: E402
from gem.data import generate_dataset  # noqa: E402
from gem.model import build_model  # noqa: E402
from gem.quantization import quant_group  # noqa: E402

DATA = generate_dataset(24, seed=1)
DOMAIN = "healthcare"


def small_spec(variant: str):
    import dataclasses

    return dataclasses.replace(parse_variant(variant), calibration_texts=24)


def test_variant_names_parse_to_their_settings():
    assert len(COMPRESSED_VARIANTS) == 12
    s = parse_variant("sparse24-mix")
    assert (s.method, s.n_m, s.domain_weight) == ("sparsegpt", (2, 4), 0.5)
    g = parse_variant("gptq4-dom")
    assert (g.method, g.bits, g.group_size, g.domain_weight) == ("gptq", 4, 32, 1.0)
    assert parse_variant("gptq8-gen").domain_weight == 0.0
    with pytest.raises(ValueError, match="known: sparse50-gen"):
        parse_variant("sparse70-mix")


def test_sparse24_touches_exactly_the_policy_groups():
    net = build_model(get_config("tiny"), seed=3)
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    rep = compress_model(net, small_spec("sparse24-mix"), DATA, DOMAIN)
    for name, p in net.named_parameters():
        group = quant_group(name)
        is_weight = name.endswith(("weight", "w_up", "w_down")) and p.dim() >= 2
        if group in ("expert", "attention", "ffn") and is_weight:
            # weight [in, out] / stacked [E, in, out]: 2 of every 4 consecutive inputs zero
            w = p.detach().reshape(-1, *p.shape[-2:]).transpose(1, 2)  # [.., out, in]
            zeros = (w == 0).reshape(*w.shape[:-1], -1, 4).sum(-1)
            assert bool((zeros == 2).all()), name
        else:
            assert torch.equal(p, before[name]), f"{name} ({group}) must not change"
    assert rep["zero_fraction"] == pytest.approx(0.5)
    assert rep["layers_compressed"] == 2 * (4 + 2 * 8)  # 2 layers: 4 Proj + 8 experts x 2
    assert 0 < rep["relative_output_error"] <= rep["relative_output_error_naive"]
    assert rep["calibration_tokens_domain"] > 0 and rep["calibration_tokens_general"] > 0
    logits = net(torch.randint(1, 200, (2, 24)))
    assert logits.shape == (2, 8) and bool(torch.isfinite(logits).all())


def test_gptq_values_sit_on_the_grid_and_beat_rtn():
    net = build_model(get_config("tiny"), seed=4)
    rep = compress_model(net, small_spec("gptq4-gen"), DATA, DOMAIN)
    assert rep["calibration_tokens_domain"] == 0  # λ = 0: the domain side is not even run
    assert rep["relative_output_error"] < rep["relative_output_error_naive"]
    w = net.layers[0].ffn.up.weight.detach().T  # [out, in]; groups of 32 inputs
    for j in range(0, w.shape[1], 32):
        for row in w[:, j:j + 32]:  # int4 symmetric: at most 15 levels per row and group
            levels = torch.unique(row)
            assert len(levels) <= 15
            step = levels.abs()[levels != 0].min()  # every level a multiple of the step
            assert torch.allclose(levels / step, (levels / step).round(), atol=1e-3)


def test_mix_is_lambda_weighted_per_token():
    a, b = HessianSums(), HessianSums()
    a.sums["x"], a.tokens = torch.full((2, 2), 10.0, dtype=torch.float64), 10
    b.sums["x"], b.tokens = torch.full((2, 2), 40.0, dtype=torch.float64), 20
    b.sums["only_gen"] = torch.eye(2, dtype=torch.float64) * 20
    h = mix(a, b, 0.25)
    assert torch.allclose(h["x"], torch.full((2, 2), 0.25 * 1.0 + 0.75 * 2.0, dtype=torch.float64))
    assert torch.allclose(h["only_gen"], torch.eye(2, dtype=torch.float64) * 0.75)
    assert set(mix(a, None, 1.0)) == {"x"}


def test_expert_hessians_come_from_routed_tokens_only():
    net = build_model(get_config("tiny"), seed=5)
    dom, gen = calibration_sets(DATA, DOMAIN, 16)
    assert {s.domain for s in dom} == {DOMAIN} and DOMAIN not in {s.domain for s in gen}
    sums = collect(net, dom, ("expert",))
    ups = [k for k in sums.sums if ".w_up." in k]
    assert ups and len(ups) < 16  # tiny: 8 experts x 2 layers; top-2 of 8 per sequence
    for k in ups:  # symmetric PSD, input width d
        h = sums.sums[k]
        assert h.shape == (64, 64) and torch.allclose(h, h.T)
        assert float(torch.linalg.eigvalsh(h).min()) > -1e-8


def test_cache_key_follows_compression_settings(monkeypatch):
    pytest.importorskip("onnx")
    import dataclasses

    import gem.compress.spec as spec
    from gem.artifacts import artifact_key

    keys = {v: artifact_key("tiny", v) for v in ("fp32", "sparse50-gen", "sparse50-mix")}
    assert len(set(keys.values())) == 3
    real = spec.parse_variant
    monkeypatch.setattr(spec, "parse_variant",
                        lambda v: dataclasses.replace(real(v), domain_weight=0.3))
    assert artifact_key("tiny", "sparse50-mix") != keys["sparse50-mix"]
    assert artifact_key("tiny", "fp32") == keys["fp32"]
