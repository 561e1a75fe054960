"""gem.export + gem.artifacts: ONNX export, int8 quantization, manifest, cache.

The tiny fp32 and int8 artifacts are built once per session (module-scoped
fixture writing to a temporary cache) and shared by the tests below.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch", reason="building artifacts needs torch (pip install torch==2.13.0)")
onnx = pytest.importorskip("onnx", reason="building artifacts needs onnx")
pytest.importorskip("onnxruntime", reason="artifacts are checked with onnxruntime")

from gem import artifacts  # noqa: E402
from gem.artifacts import artifact_key, build_artifact, files_digest, load_manifest  # noqa: E402
from gem.config import get_config  # noqa: E402
from gem.errors import ArtifactCorruptError  # noqa: E402
from gem.export.generation import greedy_onnx  # noqa: E402
from gem.export.onnx import export_onnx, make_session, run_session  # noqa: E402
from gem.quantization import HYBRID_V1, HYBRID_V2, quantize_onnx, summarize_quantized  # noqa: E402,E501
from gem.tokenizer import BOS_ID, encode_batch  # noqa: E402
from tests.support.corpus import corpus_docs, require_corpus  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
STEPS = 10  # enough to be a trained model; keeps the session build short
MANIFEST_KEYS = {
    "manifest_version", "model", "variant", "format", "files", "entrypoint", "sha256", "opset",
    "inputs", "outputs", "checked_with", "reference", "params_total", "params_active_per_token",
    "num_classes", "max_len_tokens", "vocab_size", "pad_id", "quantization", "build",
}  # fmt: skip


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("gem-cache")


@pytest.fixture(scope="module")
def built(cache_dir: Path) -> dict[str, Path]:
    require_corpus()  # the build trains on the real corpus
    return {
        v: build_artifact("tiny", v, cache_dir=cache_dir, train_steps=STEPS)
        for v in ("fp32", "int8")
    }


def _manifest(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())


def test_manifest_has_contract_keys_and_verifies(built: dict[str, Path]) -> None:
    for variant, folder in built.items():
        m = load_manifest(folder)
        assert MANIFEST_KEYS <= set(m), MANIFEST_KEYS - set(m)
        assert (m["model"], m["variant"], m["format"], m["manifest_version"]) == (
            "tiny",
            variant,
            "onnx",
            1,
        )
        assert m["entrypoint"] == "model.onnx" and m["opset"] >= 17
        assert m["inputs"] == [{"name": "input_ids", "dtype": "int64", "shape": ["batch", "seq"]}]
        assert m["outputs"] == [{"name": "logits", "dtype": "float32", "shape": ["batch", 8]}]
        assert m["params_total"] == get_config("tiny").param_counts()["total"] < 1_000_000
        assert m["params_active_per_token"] < m["params_total"]
        assert (m["vocab_size"], m["pad_id"], m["num_classes"]) == (260, 256, 8)
        assert m["max_len_tokens"] >= 256
        assert m["build"]["train_steps"] == STEPS and 0.0 <= m["build"]["train_accuracy"] <= 1.0
        assert m["build"]["cache_key"] == artifact_key("tiny", variant, train_steps=STEPS)
        names = {f["name"] for f in m["files"]}
        assert names == {p.name for p in folder.iterdir()} - {"manifest.json", "reference.json"}
        assert m["reference"]["file"] == "reference.json" and len(m["reference"]["sha256"]) == 64
        assert m["sha256"] == files_digest(m["files"])
        margins = m["reference"]["routing_margins"]
        assert len(margins) == 4 and all(x > 0 for x in margins), margins
        assert not [p for p in folder.parent.iterdir() if p.name.startswith(".tmp-")]


def test_onnx_io_and_dynamic_sequence_length(built: dict[str, Path]) -> None:
    proto = onnx.load(str(built["fp32"] / "model.onnx"))
    (inp,), (out,) = proto.graph.input, proto.graph.output
    assert inp.name == "input_ids" and inp.type.tensor_type.elem_type == onnx.TensorProto.INT64
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert all(isinstance(d, str) for d in dims), dims  # both axes symbolic
    assert out.name == "logits" and out.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    for variant, folder in built.items():
        sess = make_session(folder / "model.onnx")
        for batch, seq in ((1, 1), (3, 7), (2, 64), (1, 1024)):
            ids = np.random.default_rng(seq).integers(0, 256, size=(batch, seq), dtype=np.int64)
            logits = run_session(sess, ids)
            assert logits.shape == (batch, 8) and logits.dtype == np.float32, (variant, seq)
            assert np.isfinite(logits).all()


def test_reference_matches_runtime_at_four_lengths(built: dict[str, Path]) -> None:
    for variant, folder in built.items():
        m = _manifest(folder)
        ref = json.loads((folder / m["reference"]["file"]).read_text())
        lengths = [len(x["input_ids"][0]) for x in ref["inputs"]]
        assert len(lengths) == 4 and len(set(lengths)) == 4, lengths
        basis = m["reference"]["atol_basis"]
        assert basis["floor"] == (1e-4 if variant == "fp32" else 1e-2)
        assert m["reference"]["atol"] == pytest.approx(max(basis["floor"],
                                                           10 * basis["host_spread"]))
        sess = make_session(folder / "model.onnx", threads=2)
        for x, y in zip(ref["inputs"], ref["outputs"], strict=True):
            got = run_session(sess, np.asarray(x["input_ids"], dtype=np.int64))
            np.testing.assert_allclose(got, np.asarray(y["logits"]), atol=m["reference"]["atol"])
        # reference inputs are real data-set text, not random ids
        texts = [d.text for d in corpus_docs()]
        for x in ref["inputs"]:
            ids = x["input_ids"][0]
            assert ids[0] == BOS_ID
            text = bytes(i for i in ids[1:13]).decode("utf-8", "replace")
            assert any(t.startswith(text.rstrip("\ufffd")) for t in texts), text


def test_generation_graphs_decode_like_torch(built: dict[str, Path]) -> None:
    """prefill.onnx + decode.onnx ship in the artifact with the KV cache as explicit,
    dynamic-length inputs/outputs, and greedy decoding with them reproduces the
    tokens torch produced at build time on the reference prompts."""
    for folder in built.values():
        m = load_manifest(folder)
        gen = m["generation"]
        names = {f["name"] for f in m["files"]}
        assert {gen["prefill"], gen["decode"], gen["reference_file"]} <= names
        assert gen["tokens"] == "bytes" and gen["max_len_tokens"] >= 1024
        proto = onnx.load(str(folder / gen["decode"]))
        inputs = {i.name: i for i in proto.graph.input}
        assert list(inputs) == ["input_ids", "past_k", "past_v", "past_route_sum"]
        past_dim = inputs["past_k"].type.tensor_type.shape.dim[3]
        assert past_dim.dim_param, "the cache length must be dynamic"
        assert [o.name for o in proto.graph.output] == ["logits", "present_k", "present_v",
                                                        "route_sum"]
        pre, dec = make_session(folder / gen["prefill"]), make_session(folder / gen["decode"])
        ref = json.loads((folder / gen["reference_file"]).read_text())
        assert len(ref["prompts"]) >= 3
        for p in ref["prompts"]:
            assert greedy_onnx(pre, dec, p["input_ids"], ref["new_tokens"]) == p["expected_tokens"]
        # a long prompt: the context really is 1024 tokens
        long = [BOS_ID] + [101] * 1000
        assert len(greedy_onnx(pre, dec, long, 3)) == 3


def test_quality_report_has_baselines_beside_gem(built: dict[str, Path]) -> None:
    q = load_manifest(built["fp32"])["quality"]
    for key in ("gem", "general_before_adaptation", "baseline_naive_bayes"):
        lo, hi = q[key]["macro_f1_ci95"]
        assert 0.0 <= lo <= q[key]["macro_f1"] <= hi <= 1.0, key
    assert q["baseline_naive_bayes"]["macro_f1"] > 0.5  # the real task is learnable
    ppl = q["gem"]["perplexity"]
    assert set(ppl) >= {"all", "healthcare", "multilingual"}
    assert q["baseline_unigram"]["perplexity"]["all"]["perplexity"] > 10
    assert q["tokens"] == "bytes" and q["recipe"]["adapt_steps"] >= 1
    assert 0.0 <= q["routing"]["dtr_admitted_fraction"] <= 1.0


def test_int8_really_quantizes_experts_and_is_smaller(built: dict[str, Path]) -> None:
    fp32 = built["fp32"] / "model.onnx"
    int8 = built["int8"] / "model.onnx"
    assert int8.stat().st_size < 0.6 * fp32.stat().st_size
    summary = summarize_quantized(onnx.load(str(int8)))
    cfg = get_config("tiny")
    experts = {f"layers.{i}.scar.{w}" for i in range(cfg.n_layers) for w in ("w_up", "w_down")}
    assert experts <= set(summary["int8_weights"])
    assert not [
        w for w in summary["int8_weights"] if "dtr" in w or "scar.query" in w or "keys" in w
    ]
    assert summary["dynamic_quantize_linear"] > 0
    assert any(w.startswith("layers.") and "scar.w_" in w for w in summary["int8_weights"])
    q = _manifest(built["int8"])["quantization"]
    assert q["policy"] == HYBRID_V2.name
    # the embedding tables are int8 too (weight-only, dequantized after the lookup)
    assert q["int8_weight_only"] == ["pos_emb", "tok_emb.weight"]
    inits = {i.name: i.data_type for i in onnx.load(str(int8)).graph.initializer}
    assert inits["pos_emb_quantized"] == onnx.TensorProto.INT8 and "pos_emb" not in inits
    # the generation graphs are int8 in the int8 variant, with the LM head
    gen = _manifest(built["int8"])["generation"]
    assert gen["precision"] == "int8"
    assert gen["quantization"]["prefill.onnx"]["matmul_int8"] >= 6 * cfg.n_layers + 1
    assert 0.0 <= gen["vs_fp32"]["next_token_top1_agreement"] <= 1.0
    assert _manifest(built["fp32"])["generation"]["precision"] == "fp32"
    assert q["matmul_int8"] == summary["matmul_integer"] >= 6 * cfg.n_layers
    assert q["matmul_fp32"] == summary["matmul_fp32"] > 0  # router, head, attention scores
    assert q["by_group"]["expert"] == {"int8": 2 * cfg.n_layers, "fp32": 0}
    assert q["by_group"]["router"]["int8"] == 0
    assert q["vs_fp32_holdout"]["top1_agreement"] >= 0.85
    fp32_q = _manifest(built["fp32"])["quantization"]
    assert (
        fp32_q["matmul_int8"] == 0
        and summarize_quantized(onnx.load(str(fp32)))["matmul_integer"] == 0
    )


def test_cache_hit_is_fast_and_does_not_import_torch(
    built: dict[str, Path], cache_dir: Path
) -> None:
    code = (
        "import json, sys, time\n"
        "t = time.perf_counter()\n"
        "from gem.artifacts import build_artifact\n"
        f"f = build_artifact('tiny', 'int8', cache_dir={str(cache_dir)!r}, train_steps={STEPS})\n"
        "dt = time.perf_counter() - t\n"
        "print(json.dumps({'folder': str(f), 'seconds': dt, 'torch': 'torch' in sys.modules}))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["folder"] == str(built["int8"])
    assert out["torch"] is False
    assert out["seconds"] < 1.0, out
    # and in-process: the same folder, untouched
    before = (built["int8"] / "model.onnx").stat().st_mtime_ns
    t = time.perf_counter()
    assert build_artifact("tiny", "int8", cache_dir=cache_dir, train_steps=STEPS) == built["int8"]
    assert time.perf_counter() - t < 0.5
    assert (built["int8"] / "model.onnx").stat().st_mtime_ns == before


def test_cache_key_tracks_inputs() -> None:
    base = artifact_key("tiny", "int8")
    assert base == artifact_key("tiny", "int8") and len(base) == 64
    others = {
        artifact_key("tiny", "fp32"),
        artifact_key("edge", "int8"),
        artifact_key("tiny", "int8", seed=1),
        artifact_key("tiny", "int8", train_steps=3),
    }
    assert base not in others and len(others) == 4
    with pytest.raises(ValueError, match="tiny"):
        artifact_key("nope")
    with pytest.raises(ValueError, match="fp32, int8"):
        artifact_key("tiny", "int4")
    with pytest.raises(ValueError, match="available: coreml, onnx, rknn, tflite"):
        artifact_key("tiny", "int8", fmt="tensorrt")
    with pytest.raises(ValueError, match="variant 'fp32' for format coreml; available: fp16"):
        artifact_key("tiny", "fp32", fmt="coreml")
    assert artifact_key("tiny", "int8", fmt="tflite") != base


def test_cache_key_changes_when_gem_source_changes(monkeypatch: pytest.MonkeyPatch,
                                                   tmp_path: Path) -> None:
    """The real digest of a real copy of the gem sources: the same bytes give the
    same key, one changed byte in any .py (nested ones too) gives another, and
    files that are not code (caches) do not count."""
    base = artifact_key("tiny", "int8")
    copy = tmp_path / "gem"
    shutil.copytree(artifacts._PKG_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(artifacts, "_PKG_DIR", copy)
    assert artifact_key("tiny", "int8") == base  # relative paths and content only
    (copy / "__pycache__").mkdir()
    (copy / "__pycache__" / "stale.py").write_text("x = 1\n")
    (copy / "notes.txt").write_text("not code")
    assert artifact_key("tiny", "int8") == base
    keys = {base}
    nested = sorted(p.relative_to(copy).as_posix() for p in copy.glob("*/*.py")
                    if "__pycache__" not in p.parts)
    for rel in ("model.py", nested[0]):
        f = copy / rel
        f.write_bytes(f.read_bytes() + b"\n# changed\n")
        keys.add(artifact_key("tiny", "int8"))
    assert len(keys) == 3, "each source change must give a new key"


def test_corrupted_cached_file_is_detected(built: dict[str, Path], tmp_path: Path) -> None:
    folder = tmp_path / built["int8"].name
    shutil.copytree(built["int8"], folder)
    model = folder / "model.onnx"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, different content
    model.write_bytes(bytes(data))
    with pytest.raises(ArtifactCorruptError, match=r"model\.onnx: sha256"):
        load_manifest(folder)
    model.write_bytes(bytes(data[:-10]))
    with pytest.raises(ArtifactCorruptError, match=r"model\.onnx: size"):
        load_manifest(folder)
    model.unlink()
    with pytest.raises(ArtifactCorruptError, match="model.onnx listed in manifest is missing"):
        load_manifest(folder)
    assert load_manifest(folder, verify=False)["variant"] == "int8"  # cheap read still works
    shutil.copy(built["int8"] / "model.onnx", model)
    load_manifest(folder)  # restored: verifies again
    ref = folder / "reference.json"
    ref.write_text(ref.read_text() + " ")  # still valid JSON, different bytes
    with pytest.raises(ArtifactCorruptError, match=r"reference\.json: size"):
        load_manifest(folder)
    # the cache treats it as a miss and removes it so the next build replaces it
    key = _manifest(folder)["build"]["cache_key"]
    assert artifacts._cached(folder, key) is False and not folder.exists()


def test_manifest_with_escaping_file_name_is_rejected(
    built: dict[str, Path], tmp_path: Path
) -> None:
    folder = tmp_path / "a"
    shutil.copytree(built["fp32"], folder)
    m = _manifest(folder)
    m["files"][0]["name"] = "../model.onnx"
    (folder / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ArtifactCorruptError, match="plain file name"):
        load_manifest(folder)


def test_crash_during_build_leaves_nothing_that_looks_valid(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gem.export.build_onnx as build_onnx

    def crash(out: Path, **_: object) -> None:
        (out / "model.onnx").write_bytes(b"half")
        raise RuntimeError("simulated crash mid-build")

    monkeypatch.setattr(build_onnx, "build_onnx_artifact", crash)
    with pytest.raises(RuntimeError, match="simulated"):
        build_artifact("tiny", "fp32", cache_dir=tmp_path, train_steps=1)
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != ".locks"]
    assert leftovers == []


def test_export_external_data_and_parity_with_torch(tmp_path: Path) -> None:
    """Two-file layout (model.onnx + model.onnx.data) exports, runs and quantizes;
    ONNX matches torch at several sequence lengths (untrained model, no build)."""
    import torch

    from gem.model import build_model

    model = build_model(get_config("tiny"), seed=3)
    example, _ = encode_batch(["hello there", "bonjour à tous"], max_len=12, pad_to=12)
    info = export_onnx(model, tmp_path / "fp32", example, external_data=True)
    assert [p.name for p in info.files] == ["model.onnx", "model.onnx.data"]
    assert info.files[1].stat().st_size > info.files[0].stat().st_size  # weights live outside
    sess = make_session(info.files[0])
    for seq in (1, 5, 33, 256):
        ids = np.random.default_rng(seq).integers(0, 259, size=(2, seq), dtype=np.int64)
        with torch.no_grad():
            want = model(torch.from_numpy(ids)).numpy()
        np.testing.assert_allclose(run_session(sess, ids), want, atol=1e-4, rtol=0)
    q = quantize_onnx(info.files[0], tmp_path / "int8.onnx", HYBRID_V1, external_data=True)
    assert q["matmul_int8"] > 0
    assert (tmp_path / "int8.onnx").exists()
    out = run_session(make_session(tmp_path / "int8.onnx"), example)
    assert out.shape == (2, 8)
