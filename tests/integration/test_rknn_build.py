"""`gem-hil build --device rk3588-npu` as a user runs it: GEM tiny trained, one
static ONNX graph per bucket, converted to int8 .rknn by rknn-toolkit2 2.5.0 in
its own environment (.venv-rknn, scripts/setup-rknn.sh) with a calibration set
from the hold-out texts, and run in the toolkit's x86 simulator against torch.
Nothing runs on a board (none here): the RKNNLite side is tests/unit/test_agent_rknn.py."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest

from gem.errors import BuildError
from gem.export.rknn import converter_python, rknn_buckets
from tests.support.sshd_board import write_ed25519_key

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict:
    """`gem-hil build --device rk3588-npu --model tiny` in-process, with GEM's
    training cut to 10 steps (the profile's default, 160, took over 30 min on
    this loaded machine; the conversion does not depend on it)."""
    try:
        converter_python()
    except BuildError as exc:
        pytest.skip(f"needs rknn-toolkit2's environment: {exc}")
    import gem.artifacts as ga
    from harness.cli import main

    tmp = tmp_path_factory.mktemp("rknn")
    home = tmp / "home"  # the key the profile names, so the profile loads
    (home / ".ssh").mkdir(parents=True)
    write_ed25519_key(home / ".ssh" / "id_ed25519")
    mp = pytest.MonkeyPatch()
    real = ga.build_artifact
    mp.setattr(ga, "build_artifact", lambda *a, **k: real(*a, **{**k, "train_steps": 10}))
    mp.setenv("HOME", str(home))
    mp.chdir(tmp)
    out_file = tmp / "stdout.json"
    try:
        with out_file.open("w") as fh, contextlib.redirect_stdout(fh):
            rc = main(["build", "--device", "rk3588-npu", "--model", "tiny",
                       "--artifact-cache", str(tmp / "cache")])
    finally:
        mp.undo()
    assert rc == 0
    out = json.loads(out_file.read_text())
    out["manifest"] = json.loads((Path(out["folder"]) / "manifest.json").read_text())
    out["tmp"] = tmp
    return out


def test_build_device_converts_the_profiles_variant_without_running(built):
    assert built["device"] == "rk3588-npu" and built["format"] == "rknn"
    assert built["model"] == "tiny" and built["variant"] == "int8"
    assert built["seq_buckets"] == [16, 32, 64, 128] == list(rknn_buckets(1024))
    names = sorted(f["name"] for f in built["files"])
    assert names == sorted(f"model_seq_{b}.rknn" for b in built["seq_buckets"])
    for f in built["files"]:  # real .rknn files, not placeholders
        assert (Path(built["folder"]) / f["name"]).stat().st_size == f["size_bytes"] > 100_000
    assert not (built["tmp"] / "reports").exists()  # built, not run


def test_manifest_records_converter_calibration_and_placement(built):
    m = built["manifest"]
    assert m["format"] == "rknn" and m["target_platform"] == "rk3588"
    assert m["build"]["rknn-toolkit2"] == "2.5.0" == m["checked_with"]["rknn-toolkit2 simulator"]
    quant = m["quantization"]
    assert quant["policy"] == "rknn_w8a8" and quant["calibration"]["rows_per_bucket"] == 32
    assert quant["precision"]["ops_by_dtype_first_bucket"].get("INT8", 0) > 0
    assert m["inputs"][0]["dtype"] == "int64"
    for b in m["rknn_buckets"]:
        assert b["ops_npu"] > 0 and b["ops_cpu"] > 0
        assert b["ops_npu"] + b["ops_cpu"] == b["ops_total"] and len(b["cpu_ops"]) == b["ops_cpu"]
        # the byte embedding and the SCAR top-k are CPU ops on RKNPU2 (toolkit 2.5.0)
        assert {"Gather", "TopK"} <= set(b["cpu_op_names"])
        assert b["convert_seconds"] > 0
    assert m["op_placement"]["ops_accelerator"] == m["rknn_buckets"][0]["ops_npu"]
    assert 0 < m["build"]["rknn_size_vs_onnx"] < 2
    assert m["build"]["rknn_size_bytes"] == sum(f["size_bytes"] for f in m["files"])


def test_simulator_agrees_with_torch(built):
    m = built["manifest"]
    assert m["quantization"]["vs_torch_holdout"]["n"] == 4 * 32
    assert m["quantization"]["vs_torch_holdout"]["top1_agreement"] >= 0.85
    for b in m["rknn_buckets"]:
        sim = b["simulator_vs_torch"]
        assert sim["n"] == 32 and sim["reference_max_abs_diff"] < 0.5
    ref = json.loads((Path(built["folder"]) / "reference.json").read_text())
    assert [len(x["input_ids"][0]) for x in ref["inputs"]] == [16, 32, 64, 128]
    assert m["reference"]["atol"] >= 5e-2
