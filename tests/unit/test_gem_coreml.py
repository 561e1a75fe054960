"""Core ML artifacts with the real converter (coremltools 9.0): both variants of
tiny built once per module (10 training steps, one shared training run),
validated the way a Linux host can (reload without a runtime, I/O, enumerated
shapes, size, MIL op inventory, expected Neural Engine placement); the
manifest says what was not run; `gem-hil build --device` on a coreml profile;
bad input refused at load."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from harness.errors import ConfigError

pytest.importorskip("coremltools", reason="the Core ML tests need the coreml extra "
                                          "(coremltools 9.0): pip install -e '.[coreml]'")
torch = pytest.importorskip("torch", reason="building an artifact needs torch")

from gem.artifacts import build_artifact, load_manifest  # noqa: E402
from gem.config import get_config  # noqa: E402
from gem.errors import BuildError  # noqa: E402
from gem.export import coreml  # noqa: E402
from gem.export.tflite import seq_buckets  # noqa: E402

STEPS = 10
CORE_PROFILE = ('name = "mac-test"\ntransport = "local"\nplatform = "linux"\n'
                'runtime = "coreml"\n')


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("coreml-cache")


@pytest.fixture(scope="module")
def built(cache_dir: Path) -> dict[str, Path]:
    return {v: build_artifact("tiny", v, fmt="coreml", cache_dir=cache_dir, train_steps=STEPS)
            for v in ("fp16", "int8")}


def test_model_exports_with_a_dynamic_sequence_axis_unchanged():
    """torch.export over every length at once (what the conversion uses), with
    the eager model's outputs at lengths on either side of the example's."""
    from gem.export.common import named_io
    from gem.model import build_model

    net = named_io(build_model(get_config("tiny"), seed=1))
    seq = torch.export.Dim("seq", min=1, max=1024)
    ep = torch.export.export(net, (torch.full((1, 64), 65),),
                             dynamic_shapes={"input_ids": {1: seq}})
    for length in (16, 200):
        ids = torch.randint(0, 256, (1, length))
        with torch.no_grad():
            assert torch.equal(ep.module()(ids), net(ids))


def test_manifest_records_what_the_issue_asks(built):
    cfg = get_config("tiny")
    for variant, folder in built.items():
        m = load_manifest(folder)  # sizes and sha256 of the zip and reference verified
        assert m["format"] == "coreml" and m["variant"] == variant
        assert [f["name"] for f in m["files"]] == ["model.mlpackage.zip"]
        assert m["entrypoint"] == "model.mlpackage.zip"
        assert m["inputs"] == [{"name": "input_ids", "dtype": "int32", "shape": [1, "seq"]}]
        assert m["outputs"][0]["name"] == "logits" and m["outputs"][0]["dtype"] == "float32"
        assert m["seq_buckets"] == list(seq_buckets(cfg.max_len_tokens))
        assert m["build"]["coremltools"] == "9.0" and m["checked_with"]["coremltools"] == "9.0"
        assert m["build"]["torch"].startswith("2.13")
        c = m["coreml"]
        assert c["package"] == "model.mlpackage" and c["minimum_deployment_target"] == "iOS17"
        assert c["input_shapes"]["kind"] == "enumerated"
        assert c["input_shapes"]["shapes"] == [[1, b] for b in m["seq_buckets"]]
        assert c["validation"]["size_bytes"] == c["size_bytes"] > 0
        ref = m["reference"]
        assert ref["n"] == 4 and ref["seq_lens"] == [16, 32, 64, 128]
        # parity on Core ML cannot run here: recorded as not run, never faked
        assert ref["parity"] == {"status": "not_run", "max_abs_diff": None,
                                 "reason": ref["parity"]["reason"]}
        assert "macOS" in ref["parity"]["reason"]
        assert ref["atol"] >= {"fp16": 2e-2, "int8": 5e-2}[variant]
        refs = json.loads((folder / "reference.json").read_text())
        assert [len(x["input_ids"][0]) for x in refs["inputs"]] == ref["seq_lens"]
        assert all(len(y["logits"][0]) == cfg.num_classes for y in refs["outputs"])


def test_the_zip_holds_one_package_and_validates_again(built, tmp_path):
    for folder in built.values():
        m = load_manifest(folder)
        with zipfile.ZipFile(folder / "model.mlpackage.zip") as zf:
            names = zf.namelist()
        assert all(n.startswith("model.mlpackage/") for n in names)
        assert "model.mlpackage/Manifest.json" in names
        assert "model.mlpackage/Data/com.apple.CoreML/model.mlmodel" in names
        assert not [n for n in names if "executorch" in n]  # debug mapping dropped
        checks = coreml.validate_artifact(folder, m)
        assert checks["size_bytes"] == m["coreml"]["size_bytes"]
        assert "not run" in checks["predict"]
        facts = coreml.inspect_package(coreml.unzip_package(folder / m["entrypoint"],
                                                            tmp_path / m["variant"]))
        (inp,) = facts["inputs"]
        assert inp["name"] == "input_ids" and inp["dtype"] == "int32"
        assert sorted(inp["enumerated_shapes"]) == sorted([1, b] for b in m["seq_buckets"])
        assert facts["op_inventory"] == m["op_inventory"] == m["coreml"]["op_inventory"]


def test_int8_stores_int8_weights_and_is_smaller(built):
    fp16, int8 = (load_manifest(built[v]) for v in ("fp16", "int8"))
    p16 = fp16["quantization"]["precision"]["weights_by_op"]
    p8 = int8["quantization"]["precision"]["weights_by_op"]
    assert not any("int8" in d for d in p16.values())
    assert p8["linear"].get("int8", 0) > 0 and p8["gather"].get("int8", 0) > 0  # experts too
    assert "constexpr_affine_dequantize" in int8["op_inventory"]
    q = int8["quantization"]
    assert q["policy"] == "coreml_wi8_linear_symmetric_per_channel"
    assert 0 < q["size_vs_fp16"] < 0.7
    assert int8["files"][0]["size_bytes"] < 0.7 * fp16["files"][0]["size_bytes"]
    # agreement needs a Core ML runtime: null with a reason, the emulation labelled
    assert q["vs_fp16_holdout"]["top1_agreement"] is None
    assert q["vs_fp16_holdout"]["emulated_in_torch"]["n"] >= 100


def test_op_inventory_and_expected_neural_engine_fallback(built):
    m = load_manifest(built["fp16"])
    ops = m["op_inventory"]
    assert ops["linear"] > 0 and ops["softmax"] > 0 and ops["topk"] > 0
    ne = m["coreml"]["neural_engine"]
    assert ne == coreml.neural_engine_placement(ops)
    assert ne["cpu_fallback_ops"] == sum(ne["fallback_ops_by_name"].values()) > 0
    assert {"topk", "gather"} <= set(ne["fallback_op_names"])  # SCAR's selection
    assert not {"linear", "matmul", "softmax", "layer_norm"} & set(ne["fallback_op_names"])
    assert ne["ops_total"] == ne["ops_accelerator"] + ne["cpu_fallback_ops"]
    assert "const" not in ne["fallback_op_names"]


def test_validation_names_a_mismatch(built, tmp_path):
    m = load_manifest(built["fp16"])
    package = coreml.unzip_package(built["fp16"] / m["entrypoint"], tmp_path)
    bad = json.loads(json.dumps(m))
    bad["seq_buckets"] = m["seq_buckets"][:-1]
    with pytest.raises(BuildError, match="input shapes"):
        coreml.validate_package(package, bad)
    bad = json.loads(json.dumps(m))
    bad["inputs"][0]["dtype"] = "int64"
    with pytest.raises(BuildError, match="input input_ids is int32, manifest says int64"):
        coreml.validate_package(package, bad)


def test_a_zip_entry_outside_the_package_is_refused(tmp_path):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("model.mlpackage/../../escape.txt", "x")
    with pytest.raises(BuildError, match="outside model.mlpackage"):
        coreml.unzip_package(archive, tmp_path / "out")
    assert not (tmp_path / "escape.txt").exists()


def test_build_device_builds_and_validates_without_running(built, cache_dir, tmp_path,
                                                           monkeypatch, capsys):
    """`gem-hil build --device` on a coreml profile: built (here: found in the cache
    the module's 10-step builds filled) and validated; nothing runs, no record."""
    import gem.artifacts as arts
    from harness.cli import main

    real = arts.build_artifact
    monkeypatch.setattr(arts, "build_artifact",
                        lambda *a, **kw: real(*a, **{**kw, "train_steps": STEPS}))
    (tmp_path / "mac-test.toml").write_text(CORE_PROFILE + '[run]\nvariant = "fp16"\n')
    rc = main(["build", "--device", "mac-test", "--targets-dir", str(tmp_path),
               "--artifact-cache", str(cache_dir)])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["device"] == "mac-test" and out["format"] == "coreml"
    assert out["variant"] == "fp16" and out["folder"] == str(built["fp16"])
    assert "MIL op inventory" in out["validation"]["checked"]
    assert not (tmp_path / "reports").exists()


def test_a_coreml_variant_that_does_not_exist_is_refused_at_load(tmp_path):
    from harness.plan import make_plan
    from harness.profiles import parse_profile

    path = tmp_path / "mac-test.toml"
    path.write_text(CORE_PROFILE + '[run]\nvariant = "fp32"\n')
    with pytest.raises(ConfigError) as err:
        parse_profile(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: [run] variant = 'fp32'")
    assert "coreml artifacts, which come as fp16, int8" in msg
    path.write_text(CORE_PROFILE)  # default int8: fine
    assert parse_profile(path).run.variant == "int8"
    with pytest.raises(ConfigError, match="--gem-variant 'fp32'.*fp16, int8"):
        make_plan({"device": "mac-test", "targets_dir": str(tmp_path), "gem_variant": "fp32"})
    with pytest.raises(ConfigError, match="onnx artifacts, which come as fp32, int8"):
        make_plan({"device": "local", "gem_variant": "fp16"})


def test_compute_units_are_checked(tmp_path):
    from harness.profiles import parse_profile

    path = tmp_path / "mac-test.toml"
    path.write_text(CORE_PROFILE + '[coreml]\ncompute_units = "cpu_and_ne"\n')
    assert parse_profile(path).settings["coreml"].compute_units == "cpu_and_ne"
    path.write_text(CORE_PROFILE + '[coreml]\ncompute_units = "ane"\n')
    with pytest.raises(ConfigError, match=r"\[coreml\] compute_units"):
        parse_profile(path)


def test_coreml_key_tracks_coremltools_only(monkeypatch):
    import gem.artifacts as arts

    versions = {"torch": "2.13.0", "onnx": "1", "onnxscript": "1", "onnxruntime": "1",
                "coremltools": "9.0"}
    monkeypatch.setattr(arts.importlib.metadata, "version", lambda n: versions[n])
    onnx_key, ml_key = arts.artifact_key(fmt="onnx"), arts.artifact_key(fmt="coreml")
    versions["coremltools"] = "9.1"
    assert arts.artifact_key(fmt="onnx") == onnx_key
    assert arts.artifact_key(fmt="coreml") != ml_key
    assert arts.artifact_key("tiny", "fp16", fmt="coreml") != arts.artifact_key(fmt="coreml")
