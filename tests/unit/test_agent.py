"""The on-device agent, run as it runs on a device: a copied file in a subprocess."""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

AGENT = Path(__file__).resolve().parents[2] / "firmware" / "agent" / "gem_agent.py"
ALLOWED = {"__future__", "argparse", "json", "os", "platform", "select", "signal", "stat",
           "sys", "threading", "time", "gc", "subprocess", "random",
           "traceback", "resource", "importlib", "numpy", "onnxruntime", "ai_edge_litert",
           "tflite_runtime", "rknnlite"}


def run_agent(tmp_path: Path, *args: str, timeout: float = 120) -> tuple[int, dict, str]:
    copy = tmp_path / "device" / "gem_agent.py"
    copy.parent.mkdir(exist_ok=True)
    shutil.copy(AGENT, copy)
    # -I: isolated mode, no project on sys.path, as on a device
    res = subprocess.run([sys.executable, "-I", str(copy), *args], capture_output=True,
                         text=True, timeout=timeout, cwd=copy.parent)
    lines = [ln for ln in res.stdout.splitlines() if ln.strip()]
    assert len(lines) == 1, f"exactly one JSON line expected, got {res.stdout!r}"
    return res.returncode, json.loads(lines[0]), res.stderr


def test_agent_imports_nothing_from_the_project():
    tree = ast.parse(AGENT.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            names.add((node.module or "").split(".")[0])
    assert names <= ALLOWED, names - ALLOWED


def test_usage_error_is_a_json_record(tmp_path):
    rc, rec, _ = run_agent(tmp_path, "--min-count", "many")
    assert rc == 2 and rec["ok"] is False and rec["error"]["kind"] == "usage"


def test_missing_artifact_is_a_json_record(tmp_path):
    rc, rec, _ = run_agent(tmp_path, "--artifact-dir", str(tmp_path / "nothing"))
    assert rc == 4 and rec["error"]["kind"] == "artifact"
    assert "manifest" in rec["error"]["message"]


def test_stops_when_both_minimums_are_met(tmp_path, fixture_artifact):
    rc, rec, err = run_agent(tmp_path, "--artifact-dir", str(fixture_artifact.folder),
                             "--min-count", "30", "--min-duration-s", "0.3",
                             "--max-count", "10000000", "--warmup-count", "3")
    assert rc == 0, err
    run = rec["run"]
    assert run["stopped_by"] == "min_reached" and run["min_count_met"] and run["min_duration_met"]
    assert run["duration_s"] >= 0.3 and len(rec["latency_samples_ns"]) == run["count"] >= 30
    assert len(rec["warmup_samples_ns"]) == 3
    assert rec["parity"]["passed"] and rec["peak_rss_kb"] > 1000


@pytest.mark.parametrize(("args", "stopped_by", "valid_count", "valid_duration"), [
    (["--min-count", "10", "--max-count", "10", "--min-duration-s", "5",
      "--max-duration-s", "30"], "max_count", True, False),
    (["--min-count", "10000000", "--max-count", "10000000", "--min-duration-s", "0.2",
      "--max-duration-s", "0.2"], "max_duration", False, True),
])
def test_caps_end_the_run_and_say_so(tmp_path, fixture_artifact, args, stopped_by,
                                     valid_count, valid_duration):
    rc, rec, err = run_agent(tmp_path, "--artifact-dir", str(fixture_artifact.folder), *args)
    assert rc == 0, err
    assert rec["run"]["stopped_by"] == stopped_by
    assert rec["run"]["min_count_met"] is valid_count
    assert rec["run"]["min_duration_met"] is valid_duration


def test_sysfs_sampling_during_the_window(tmp_path, fixture_artifact):
    probe = tmp_path / "power1_input"
    probe.write_text("1234567\n")
    rc, rec, err = run_agent(tmp_path, "--artifact-dir", str(fixture_artifact.folder),
                             "--min-count", "5", "--min-duration-s", "0.3",
                             "--max-count", "100000000",
                             "--sample-path", str(probe), "--sample-interval-ms", "20")
    assert rc == 0, err
    samples = rec["sysfs_samples"][str(probe)]
    assert len(samples) >= 3 and all(v == "1234567" for _, v in samples)
    assert rec["sample_interval_ms"] == 50.0  # asked for 20: a faster sampler disturbs timing
    w0, w1 = rec["window_monotonic_ns"]
    assert samples[0][0] <= w0 + 10**9 and samples[-1][0] >= w1


def test_seq_len_beyond_model_is_refused(tmp_path, fixture_artifact):
    rc, rec, _ = run_agent(tmp_path, "--artifact-dir", str(fixture_artifact.folder),
                           "--seq-len-tokens", "100000")
    assert rc == 2 and "max_len_tokens" in rec["error"]["message"]


@pytest.mark.parametrize("how", ["offset", "flip"])
def test_parity_fails_against_a_perturbed_reference(tmp_path, fixture_artifact, how):
    """The check really compares: a reference that no longer matches the model
    gives the measured difference and agreement, and passed is False."""
    from tests.support.onnx_artifact import perturb_reference

    art = tmp_path / "art"
    expect = perturb_reference(fixture_artifact.folder, art, how)
    rc, rec, err = run_agent(tmp_path, "--artifact-dir", str(art), "--min-count", "5",
                             "--min-duration-s", "0", "--warmup-count", "1")
    assert rc == 0, err
    par = rec["parity"]
    assert par["passed"] is False
    assert par["n_reference"] == expect["n_reference"]
    assert par["top1_agreement"] == pytest.approx(expect["top1_agreement"])
    assert par["max_abs_diff"] == pytest.approx(expect["max_abs_diff"], abs=1e-4)
    assert par["max_abs_diff"] > par["atol"]


@pytest.mark.parametrize(("change", "says"), [
    (lambda ref: ref["outputs"][2].update(logits=[[float("nan")] * 4]), "NaN/inf"),
    (lambda ref: ref["outputs"][0].update(probs=ref["outputs"][0].pop("logits")),
     "outputs ['probs'] != the model's ['logits']"),
    (lambda ref: ref["outputs"].pop(), "of equal length"),
])
def test_parity_fails_closed_on_a_reference_it_cannot_compare(tmp_path, fixture_artifact,
                                                              change, says):
    """NaN (which max() would silently drop), a renamed output or a missing row is
    a parity error, never a skipped comparison."""
    shutil.copytree(fixture_artifact.folder, tmp_path / "art")
    ref_path = tmp_path / "art" / "reference.json"
    ref = json.loads(ref_path.read_text())
    change(ref)
    ref_path.write_text(json.dumps(ref))
    rc, rec, _ = run_agent(tmp_path, "--artifact-dir", str(tmp_path / "art"),
                           "--min-count", "5", "--min-duration-s", "0")
    assert rc == 4 and rec["ok"] is False
    assert rec["error"]["kind"] in ("parity", "artifact") and says in rec["error"]["message"]


def test_parity_with_no_reference_rows_never_passes(tmp_path, fixture_artifact):
    shutil.copytree(fixture_artifact.folder, tmp_path / "art")
    (tmp_path / "art" / "reference.json").write_text(json.dumps({"inputs": [], "outputs": []}))
    rc, rec, err = run_agent(tmp_path, "--artifact-dir", str(tmp_path / "art"),
                             "--min-count", "5", "--min-duration-s", "0")
    assert rc == 0, err
    assert rec["parity"] == {"max_abs_diff": 0.0, "top1_agreement": 0.0, "atol": 1e-5,
                             "n_reference": 0, "passed": False}


@pytest.mark.parametrize("where", ["below", "above"])
def test_parity_counts_every_row_of_a_batch(tmp_path, fixture_artifact, where):
    """A reference input of batch 2 is two rows: one disagreeing winner is 1 of 2,
    whether the reference's winner has a lower or a higher index than the device's."""
    import numpy as np
    import onnxruntime as ort

    shutil.copytree(fixture_artifact.folder, tmp_path / "art")
    sess = ort.InferenceSession(str(tmp_path / "art" / "model.onnx"),
                                providers=["CPUExecutionProvider"])
    for start in range(4, 200, 8):  # a batch whose second row's winner is not at an end
        ids = np.arange(start, start + 16, dtype=np.int64).reshape(2, 8)
        logits = sess.run(["logits"], {"input_ids": ids})[0]
        k = int(logits[1].argmax())
        if 0 < k < logits.shape[1] - 1:
            break
    else:
        pytest.fail("no input with an inner winner found")
    j = 0 if where == "below" else logits.shape[1] - 1
    logits[1, j] = float(logits[1].max()) + 1.0  # the reference now names j, the device k
    (tmp_path / "art" / "reference.json").write_text(json.dumps(
        {"inputs": [{"input_ids": ids.tolist()}], "outputs": [{"logits": logits.tolist()}]}))
    rc, rec, err = run_agent(tmp_path, "--artifact-dir", str(tmp_path / "art"),
                             "--min-count", "5", "--min-duration-s", "0")
    assert rc == 0, err
    assert rec["parity"]["top1_agreement"] == 0.5 and rec["parity"]["passed"] is False


def test_parity_tolerance_is_inclusive_and_defaults_to_1e_4(tmp_path, fixture_artifact):
    """atol 0 with a reference the device reproduces exactly still passes (the
    limit is <=); a manifest without atol gets 1e-4."""
    shutil.copytree(fixture_artifact.folder, tmp_path / "art")
    man_path = tmp_path / "art" / "manifest.json"
    man = json.loads(man_path.read_text())
    man["reference"]["atol"] = 0.0
    man_path.write_text(json.dumps(man))
    rc, rec, err = run_agent(tmp_path, "--artifact-dir", str(tmp_path / "art"),
                             "--min-count", "5", "--min-duration-s", "0")
    assert rc == 0, err
    par = rec["parity"]
    assert par["atol"] == 0.0 and par["passed"] is (par["max_abs_diff"] == 0.0)
    del man["reference"]["atol"]
    man_path.write_text(json.dumps(man))
    rc, rec, err = run_agent(tmp_path, "--artifact-dir", str(tmp_path / "art"),
                             "--min-count", "5", "--min-duration-s", "0")
    assert rc == 0, err
    assert rec["parity"]["atol"] == 1e-4


@pytest.mark.parametrize("classes", [3, 5])  # a reference narrower and wider than the model
def test_parity_output_of_another_shape_is_a_parity_error(tmp_path, fixture_artifact, classes):
    shutil.copytree(fixture_artifact.folder, tmp_path / "art")
    ref_path = tmp_path / "art" / "reference.json"
    ref = json.loads(ref_path.read_text())
    ref["outputs"][0]["logits"] = [[0.5] * classes]
    ref_path.write_text(json.dumps(ref))
    rc, rec, _ = run_agent(tmp_path, "--artifact-dir", str(tmp_path / "art"),
                           "--min-count", "5", "--min-duration-s", "0")
    assert rc == 4 and rec["error"]["kind"] == "parity"
    assert f"output logits shape (1, 4) != reference (1, {classes})" in rec["error"]["message"]


def test_one_nan_is_counted(tmp_path, fixture_artifact):
    shutil.copytree(fixture_artifact.folder, tmp_path / "art")
    ref_path = tmp_path / "art" / "reference.json"
    ref = json.loads(ref_path.read_text())
    ref["outputs"][1]["logits"][0][2] = float("inf")
    ref_path.write_text(json.dumps(ref))
    rc, rec, _ = run_agent(tmp_path, "--artifact-dir", str(tmp_path / "art"),
                           "--min-count", "5", "--min-duration-s", "0")
    assert rc == 4
    assert rec["error"]["message"] == "reference 1: reference output logits has 1 NaN/inf value(s)"


def test_timed_samples_and_cold_start_are_wall_times_of_this_run(tmp_path, fixture_artifact):
    """Every figure the agent reports fits inside the process's own wall time."""
    import time

    t0 = time.perf_counter()
    rc, rec, err = run_agent(tmp_path, "--artifact-dir", str(fixture_artifact.folder),
                             "--min-count", "50", "--min-duration-s", "0.2",
                             "--warmup-count", "3")
    wall_ns = (time.perf_counter() - t0) * 1e9
    assert rc == 0, err
    samples, run = rec["latency_samples_ns"], rec["run"]
    assert all(0 < s < wall_ns for s in samples + rec["warmup_samples_ns"])
    assert sum(samples) <= run["duration_s"] * 1e9 < wall_ns
    cold = rec["cold_start"]
    assert 0 < cold["session_create_ms"] * 1e6 < wall_ns
    assert 0 < cold["first_inference_ms"] * 1e6 < wall_ns
    w0, w1 = rec["window_monotonic_ns"]
    assert run["duration_s"] * 1e9 <= (w1 - w0) < wall_ns
