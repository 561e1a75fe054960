"""`pytest --device=local --gem-format tflite` and `gem-hil build --device` as a user
runs them: the real GEM tiny LiteRT artifact (litert-torch conversion, checked
against torch at build time) built, run by the agent's LiteRT adapter and gated."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.record import schema_errors
from tests.integration.test_device_suite_local import pytest_argv, run
from tests.support.profiles import steady_local

pytest.importorskip("litert_torch", reason="the LiteRT tests need the litert extra "
                                           "(litert-torch, ai-edge-litert, ai-edge-quantizer)")
pytestmark = pytest.mark.slow


def test_local_suite_passes_with_the_litert_artifact(tmp_path):
    targets = steady_local(tmp_path / "targets")  # a noisy host must not make it invalid
    res = run(pytest_argv(tmp_path, "--device=local", "--gem-format", "tflite",
                          f"--targets-dir={targets}"), tmp_path, timeout=1500)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    (path,) = list((tmp_path / "reports").rglob("*.json"))
    rec = json.loads(path.read_text())
    assert schema_errors(rec) == []
    assert rec["artifact"]["format"] == "tflite" and rec["environment"]["runtime"] == "litert"
    assert rec["device"]["runtime"] == "litert"
    assert rec["environment"]["runtime_detail"]["bucket"]["signature"] == "seq_64"
    assert rec["op_placement"]["cpu_fallback_ops"] == 0
    assert rec["parity"]["passed"] and rec["overall_verdict"] == "pass"


def test_build_device_builds_without_running(tmp_path):
    """After the suite above the artifact is cached: build --device finds it and
    prints what the device would run; no record is written."""
    res = run([sys.executable, "-m", "harness.cli", "build", "--device", "local",
               "--format", "tflite"], tmp_path, timeout=1500)
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads(res.stdout)
    assert out["device"] == "local" and out["format"] == "tflite"
    assert out["model"] == "tiny" and out["variant"] == "int8"
    from gem.config import get_config
    from gem.export.tflite import seq_buckets

    # powers of two from 16, then the model's context (1024 for tiny)
    assert out["seq_buckets"] == list(seq_buckets(get_config("tiny").max_len_tokens))
    assert out["seq_buckets"][:2] == [16, 32] and out["seq_buckets"][-1] == 1024
    manifest = json.loads((Path(out["folder"]) / "manifest.json").read_text())
    # what the issue asks every manifest to record
    assert manifest["build"]["litert-torch"] == "0.10.0"
    assert manifest["checked_with"]["ai-edge-litert"] == "2.3.0"
    assert manifest["build"]["torch_vs_tflite_max_abs_diff"] <= 1e-4
    quant = manifest["quantization"]
    assert quant["policy"] == "dynamic_wi8_afp32_tensorwise"
    assert quant["vs_fp32_holdout"]["n"] >= 100
    assert 0 < quant["size_vs_fp32"] < 1
    assert quant["precision"]["weight_tensors_by_dtype"]["int8"] > 0
    assert manifest["reference"]["atol"] >= 1e-2 and manifest["reference"]["n"] == 4
    assert not (tmp_path / "reports").exists()


def test_build_rejects_an_unknown_format(tmp_path):
    res = subprocess.run([sys.executable, "-m", "harness.cli", "build", "--device", "local",
                          "--format", "tensorrt"], capture_output=True, text=True, timeout=120)
    assert res.returncode != 0
    assert "tensorrt" in res.stderr and "coreml, onnx, rknn, tflite" in res.stderr
