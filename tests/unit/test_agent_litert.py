"""The agent's LiteRT adapter on a real multi-signature .tflite, run as on a device."""

from __future__ import annotations

import pytest

from tests.support.tflite_artifact import BUCKETS
from tests.unit.test_agent import run_agent

pytest.importorskip("ai_edge_litert", reason="the LiteRT agent tests need ai-edge-litert "
                                             "(the litert extra)")

QUICK = ("--min-count", "5", "--min-duration-s", "0", "--warmup-count", "1")


def test_short_request_runs_in_the_next_bucket_padded(tmp_path, tflite_artifact):
    rc, rec, err = run_agent(tmp_path, "--artifact-dir", str(tflite_artifact.folder),
                             "--seq-len-tokens", "10", *QUICK)
    assert rc == 0, err
    assert rec["runtime"]["name"] == "litert" and rec["runtime"]["api"] == "interpreter"
    assert rec["runtime"]["seq_buckets"] == list(BUCKETS)
    assert rec["runtime"]["bucket"] == {"seq_len_tokens": 16, "signature": "seq_16",
                                        "requested_tokens": 10, "padded_tokens": 6}
    # the references cover both buckets and come from the same runtime: exact
    assert rec["parity"]["passed"] and rec["parity"]["max_abs_diff"] == 0.0
    assert rec["parity"]["n_reference"] == len(BUCKETS)


def test_a_request_of_a_bucket_length_is_not_padded(tmp_path, tflite_artifact):
    rc, rec, err = run_agent(tmp_path, "--artifact-dir", str(tflite_artifact.folder),
                             "--seq-len-tokens", "32", *QUICK)
    assert rc == 0, err
    assert rec["runtime"]["bucket"]["signature"] == "seq_32"
    assert rec["runtime"]["bucket"]["padded_tokens"] == 0


def test_cpu_only_placement_says_all_on_cpu(tmp_path, tflite_artifact):
    rc, rec, err = run_agent(tmp_path, "--artifact-dir", str(tflite_artifact.folder),
                             "--seq-len-tokens", "20", *QUICK)
    assert rc == 0, err
    placement = rec["op_placement"]
    sig = next(s for s in tflite_artifact.manifest["signatures"] if s["name"] == "seq_32")
    assert placement["ops_total"] == sig["ops_total"] > 0  # the graph that ran, counted
    assert placement["accelerator"] is None and placement["delegated_partitions"] == 0
    assert placement["ops_cpu"] == placement["ops_total"] and placement["ops_accelerator"] == 0
    assert placement["cpu_fallback_ops"] == 0 and placement["fallback_op_names"] == []
    assert "CPU" in placement["note"]


def test_compiled_model_api_gives_the_same_outputs(tmp_path, tflite_artifact):
    rc, rec, err = run_agent(tmp_path, "--artifact-dir", str(tflite_artifact.folder),
                             "--seq-len-tokens", "16", "--runtime-api", "compiled_model",
                             *QUICK)
    assert rc == 0, err
    assert rec["runtime"]["api"] == "compiled_model" and rec["runtime"]["accelerator"] == "cpu"
    assert rec["parity"]["passed"] and rec["parity"]["max_abs_diff"] <= 1e-6
    assert rec["op_placement"]["cpu_fallback_ops"] == 0


def test_missing_delegate_library_is_a_clear_error_before_the_benchmark(tmp_path,
                                                                         tflite_artifact):
    missing = tmp_path / "no" / "libvx_delegate.so"
    rc, rec, _ = run_agent(tmp_path, "--artifact-dir", str(tflite_artifact.folder),
                           "--seq-len-tokens", "16", "--delegate", str(missing), *QUICK)
    assert rc == 3 and rec["ok"] is False
    assert rec["error"]["kind"] == "delegate_missing"
    assert str(missing) in rec["error"]["message"] and "delegate_path" in rec["error"]["message"]


def test_a_format_without_adapter_is_named(tmp_path, tflite_artifact):
    import json
    import shutil

    folder = tmp_path / "art"
    shutil.copytree(tflite_artifact.folder, folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["format"] = "coreml"
    (folder / "manifest.json").write_text(json.dumps(manifest))
    rc, rec, _ = run_agent(tmp_path, "--artifact-dir", str(folder), "--seq-len-tokens", "16",
                           *QUICK)
    assert rc == 2 and "coreml" in rec["error"]["message"]
    assert "onnx, rknn, tflite" in rec["error"]["message"]


def test_onnx_records_carry_placement_too(tmp_path, fixture_artifact):
    rc, rec, err = run_agent(tmp_path, "--artifact-dir", str(fixture_artifact.folder), *QUICK)
    assert rc == 0, err
    assert rec["runtime"]["name"] == "onnxruntime"
    assert rec["op_placement"]["accelerator"] is None
    assert rec["op_placement"]["cpu_fallback_ops"] == 0
