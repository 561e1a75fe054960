"""gem/export/tflite.py without a conversion: buckets, padding, and the two
runtime rewrites (one-hot scatter and expert selection) computing exactly what
the model computes."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the rewrite tests run the model in torch")

from gem.config import get_config  # noqa: E402
from gem.export.tflite import litert_friendly, pad_to_bucket, seq_buckets  # noqa: E402
from gem.model import build_model  # noqa: E402


def test_buckets_cover_every_length_up_to_max_len():
    assert seq_buckets(256) == (16, 32, 64, 128, 256)
    assert seq_buckets(100) == (16, 32, 64, 100)
    assert seq_buckets(16) == (16,)


def test_padding_strips_old_padding_and_pads_to_the_bucket():
    row = np.array([5, 6, 7, 9, 9, 9])  # 9 = pad
    x = pad_to_bucket(row, (4, 8), pad_id=9)
    assert x.dtype == np.int32 and x.tolist() == [[5, 6, 7, 9]]
    assert pad_to_bucket(np.arange(5), (4, 8), pad_id=99).shape == (1, 8)


def test_litert_rewrites_compute_what_the_model_computes():
    cfg = get_config("tiny")
    net = build_model(cfg, seed=3)
    rewritten = litert_friendly(net)
    swapped = [m for m in rewritten.modules() if "scatter_tokens" in vars(m)]
    assert len(swapped) == cfg.n_layers and all("take_experts" in vars(m) for m in swapped)
    assert not [m for m in net.modules() if "scatter_tokens" in vars(m)]  # original untouched
    ids = torch.from_numpy(np.random.default_rng(0).integers(0, 256, size=(3, 40)))
    ids[2, 30:] = cfg.pad_id
    with torch.no_grad():
        want, got = net(ids), rewritten(ids)
    assert torch.max(torch.abs(want - got)).item() <= 1e-5
    # and the rewrite is not a no-op: its graph has no scatter and no index_select
    # SCAR's forward: (x [B,T,d], routing prefix [B,T], DTR weight [B,T])
    ep = torch.export.export(rewritten.layers[0].scar, (
        torch.randn(1, 16, cfg.d_model), torch.ones(1, 16), torch.ones(1, 16)))
    targets = {str(n.target) for n in ep.graph.nodes if n.op == "call_function"}
    assert not any("scatter" in t or "index_select" in t for t in targets), targets


def test_each_format_keys_only_its_own_packages(monkeypatch):
    import gem.artifacts as arts

    versions = {"torch": "2.13.0", "onnx": "1", "onnxscript": "1", "onnxruntime": "1",
                "litert-torch": "0.10.0", "ai-edge-litert": "2.3.0", "ai-edge-quantizer": "0.10"}
    monkeypatch.setattr(arts.importlib.metadata, "version", lambda n: versions[n])
    onnx_key, tfl_key = arts.artifact_key(fmt="onnx"), arts.artifact_key(fmt="tflite")
    versions["ai-edge-litert"] = "2.3.1"
    assert arts.artifact_key(fmt="onnx") == onnx_key  # LiteRT's version is not ONNX's business
    assert arts.artifact_key(fmt="tflite") != tfl_key
