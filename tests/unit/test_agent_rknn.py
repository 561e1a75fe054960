"""The agent's RKNNLite adapter, run as on a board but against a FAKE ``rknnlite``.

rknn-toolkit-lite2 has no x86_64 wheel (it needs an RK3588's librknnrt and NPU
driver), so the real module cannot run here. The fake below implements the
part of RKNNLite's API the adapter uses (load_rknn, init_runtime with a core
mask, inference, get_sdk_version, release) and checks what the adapter hands
it: the .rknn of the right bucket, a [1, bucket] int64 input, the core mask
constant. What this does NOT exercise: the real runtime, its numerics and
its error codes on a board (docs/gem.md "RK3588" says so).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from tests.unit.test_agent import AGENT

CLASSES = 8
BUCKETS = (16, 32)
QUICK = ("--min-count", "5", "--min-duration-s", "0", "--warmup-count", "1", "--gen-runs", "0")

FAKE = '''
import json, os
import numpy as np

NPU_CORE_AUTO, NPU_CORE_0, NPU_CORE_1, NPU_CORE_2 = 0, 1, 2, 4
NPU_CORE_0_1, NPU_CORE_0_1_2, NPU_CORE_ALL = 3, 7, 0xFFFF


def logits(x):
    return np.stack([np.mean(x % 8 == c, axis=-1) for c in range(8)], -1).astype(np.float32)


class RKNNLite:
    NPU_CORE_AUTO, NPU_CORE_0, NPU_CORE_1, NPU_CORE_2 = 0, 1, 2, 4
    NPU_CORE_0_1, NPU_CORE_0_1_2, NPU_CORE_ALL = 3, 7, 0xFFFF

    def __init__(self, verbose=False):
        self.length = None

    def _log(self, **event):
        with open(os.environ["FAKE_RKNN_LOG"], "a") as f:
            f.write(json.dumps(event) + "\\n")

    def load_rknn(self, path):
        head = open(path, "rb").read()
        if not head.startswith(b"FAKE-RKNN seq="):
            return -1
        self.length = int(head.split(b"=")[1])
        self._log(call="load_rknn", file=os.path.basename(path))
        return 0

    def init_runtime(self, core_mask=NPU_CORE_AUTO):
        self._log(call="init_runtime", core_mask=core_mask)
        return 0

    def get_sdk_version(self):
        return os.environ.get("FAKE_RKNN_SDK", "API: 2.5.0 (fake)\\nDRV: rknpu2 0.9.8")

    def inference(self, inputs):
        (x,) = inputs
        if x.shape != (1, self.length) or x.dtype != np.int64:
            raise ValueError(f"fake rknn: {x.shape} {x.dtype} into a [1, {self.length}] model")
        return [logits(x)]

    def release(self):
        self._log(call="release")
'''


def fake_logits(x: np.ndarray) -> np.ndarray:
    return np.stack([np.mean(x % 8 == c, axis=-1) for c in range(CLASSES)], -1)


def rknn_artifact(folder: Path) -> dict:
    """A synthetic rknn artifact: fake .rknn files, references from fake_logits."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    refs = [rng.integers(0, 256, size=(1, b)) for b in BUCKETS]
    buckets = []
    for b in BUCKETS:
        (folder / f"model_seq_{b}.rknn").write_bytes(f"FAKE-RKNN seq={b}".encode())
        buckets.append({"seq_len_tokens": b, "file": f"model_seq_{b}.rknn", "ops_total": 40,
                        "ops_npu": 37, "ops_cpu": 3, "cpu_ops": ["Gather", "TopK", "Gather"],
                        "cpu_op_names": ["Gather", "TopK"]})
    (folder / "reference.json").write_text(json.dumps({
        "inputs": [{"input_ids": r.tolist()} for r in refs],
        "outputs": [{"logits": fake_logits(r).tolist()} for r in refs]}))
    manifest = {"format": "rknn", "entrypoint": "model_seq_32.rknn", "model": "tiny",
                "variant": "int8", "vocab_size": 260, "max_len_tokens": 1024, "pad_id": 259,
                "bos_id": 256, "inputs": [{"name": "input_ids", "dtype": "int64",
                                           "shape": [1, "seq"]}],
                "outputs": [{"name": "logits", "dtype": "float32", "shape": [1, CLASSES]}],
                "seq_buckets": list(BUCKETS), "rknn_buckets": buckets,
                "reference": {"file": "reference.json", "atol": 1e-6, "n": len(refs)}}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return manifest


def run_board(tmp_path: Path, *args: str, fake: bool = True, sdk: str | None = None
              ) -> tuple[int, dict, list[dict]]:
    """The agent in isolated mode (no project on sys.path) with the fake on its path."""
    fake_dir = tmp_path / "site"
    (fake_dir / "rknnlite").mkdir(parents=True, exist_ok=True)
    (fake_dir / "rknnlite" / "__init__.py").write_text("")
    (fake_dir / "rknnlite" / "api.py").write_text(FAKE)
    lib = tmp_path / "librknnrt.so"
    lib.write_bytes(b"\x7fELF")
    log = tmp_path / "fake-rknn.jsonl"
    path = [str(fake_dir)] if fake else []
    code = (f"import sys, runpy; sys.path[:0] = {path!r}; sys.argv = [{str(AGENT)!r}] + "
            f"sys.argv[1:]; runpy.run_path({str(AGENT)!r}, run_name='__main__')")
    env = {"FAKE_RKNN_LOG": str(log), "PATH": "/usr/bin:/bin"}
    if sdk:
        env["FAKE_RKNN_SDK"] = sdk
    argv = [sys.executable, "-I", "-c", code]
    if "--rknn-library" not in args:
        argv_args = ["--rknn-library", str(lib), *args]
    else:
        argv_args = list(args)
    res = subprocess.run([*argv, *argv_args], capture_output=True, text=True, timeout=120,
                         env=env, cwd=tmp_path)
    lines = [ln for ln in res.stdout.splitlines() if ln.strip()]
    assert len(lines) == 1, (res.stdout, res.stderr)
    events = [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []
    return res.returncode, json.loads(lines[0]), events


def test_a_short_request_runs_the_next_bucket_on_the_profiles_cores(tmp_path):
    rknn_artifact(tmp_path / "art")
    rc, rec, events = run_board(tmp_path, "--artifact-dir", str(tmp_path / "art"),
                                "--seq-len-tokens", "10", "--rknn-core-mask", "0_1", *QUICK)
    assert rc == 0, rec
    rt = rec["runtime"]
    assert rt["name"] == "rknn" and rt["api"] == "RKNNLite" and rt["core_mask"] == "0_1"
    assert rt["sdk_version"].startswith("API: 2.5.0")
    assert rt["bucket"] == {"seq_len_tokens": 16, "file": "model_seq_16.rknn",
                            "requested_tokens": 10, "padded_tokens": 6}
    # both buckets' references ran (each in its own .rknn) and matched exactly
    assert rec["parity"]["passed"] and rec["parity"]["n_reference"] == 2
    assert rec["parity"]["max_abs_diff"] <= 1e-6
    inits = [e for e in events if e["call"] == "init_runtime"]
    assert inits and all(e["core_mask"] == 3 for e in inits)  # NPU_CORE_0_1
    loaded = sorted({e["file"] for e in events if e["call"] == "load_rknn"})
    assert loaded == ["model_seq_16.rknn", "model_seq_32.rknn"]
    place = rec["op_placement"]
    assert place["accelerator"] == "RKNPU2" and place["ops_accelerator"] == 37
    assert place["ops_cpu"] == 3 and place["cpu_fallback_ops"] == 3
    assert place["fallback_op_names"] == ["Gather", "TopK"]


def test_missing_librknnrt_is_a_clear_error_before_the_benchmark(tmp_path):
    rknn_artifact(tmp_path / "art")
    missing = tmp_path / "no" / "librknnrt.so"
    rc, rec, events = run_board(tmp_path, "--artifact-dir", str(tmp_path / "art"),
                                "--rknn-library", str(missing), *QUICK)
    assert rc != 0 and rec["ok"] is False
    assert rec["error"]["kind"] == "runtime_missing"
    assert str(missing) in rec["error"]["message"] and "library_path" in rec["error"]["message"]
    assert events == []  # nothing was loaded


def test_missing_rknn_file_names_the_file(tmp_path):
    rknn_artifact(tmp_path / "art")
    (tmp_path / "art" / "model_seq_16.rknn").unlink()
    rc, rec, _ = run_board(tmp_path, "--artifact-dir", str(tmp_path / "art"), *QUICK)
    assert rc != 0 and rec["error"]["kind"] == "artifact"
    assert "model_seq_16.rknn" in rec["error"]["message"]


def test_no_rknnlite_on_the_board_says_what_to_install(tmp_path):
    rknn_artifact(tmp_path / "art")
    rc, rec, _ = run_board(tmp_path, "--artifact-dir", str(tmp_path / "art"), *QUICK,
                           fake=False)
    assert rc != 0 and rec["error"]["kind"] == "runtime_missing"
    assert "rknn-toolkit-lite2" in rec["error"]["message"]


def test_a_runtime_version_the_profile_does_not_expect_is_refused(tmp_path):
    rknn_artifact(tmp_path / "art")
    rc, rec, _ = run_board(tmp_path, "--artifact-dir", str(tmp_path / "art"),
                           "--rknn-runtime-version", "2.5.0", *QUICK,
                           sdk="API: 1.6.0 (9a7b5d24c@2023-12-13)\nDRV: rknpu2 0.9.2")
    assert rc != 0 and rec["error"]["kind"] == "runtime_mismatch"
    assert "1.6.0" in rec["error"]["message"] and "runtime_version" in rec["error"]["message"]


def test_a_request_beyond_the_largest_bucket_names_it(tmp_path):
    rknn_artifact(tmp_path / "art")
    rc, rec, _ = run_board(tmp_path, "--artifact-dir", str(tmp_path / "art"),
                           "--seq-len-tokens", "40", *QUICK)
    assert rc != 0 and rec["error"]["kind"] == "usage"
    assert "largest sequence bucket 32" in rec["error"]["message"]
