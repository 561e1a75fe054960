"""Regenerate the gate's fixture result records (deterministic: fixed seeds).

    PYTHONPATH=. python tests/data/records/make_fixtures.py

Folders (each a --results DIR for `gem-hil gate`, expected exit code in brackets):
  baseline/      the reference run (two devices)
  passing/       same speed as baseline, within budgets                  [0]
  failing/       p95 clearly over its limit on one device                [1]
  regressed/     within budgets but the median is 10 % slower            [1]
  inconclusive/  p95 CI straddles the limit                               [2]
  invalid/       the run did not reach min_count / min_duration           [2]
  error/         the agent crashed on one device                          [1]
Device names are fixture-* so no real targets/*.toml ever overrides their limits.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))

from harness.budgets import Measurement, evaluate, overall  # noqa: E402
from harness.stats import summarize  # noqa: E402
from harness.validity import ValidityBounds, assess  # noqa: E402

HERE = Path(__file__).resolve().parent
SHA = {"tiny-int8": "1" * 64, "tiny-int8-cand": "2" * 64}
DEVICES = {
    "fixture-pi4": {"transport": "ssh", "platform": "linux", "median_ms": 40.0},
    "fixture-phone": {"transport": "adb", "platform": "android", "median_ms": 25.0},
}


def samples(median_ms: float, n: int, seed: int, sigma: float = 0.08) -> list[float]:
    """Log-normal body with a 2 % tail 1.5-3x slower: what real devices produce."""
    rng = np.random.default_rng(seed)
    x = median_ms * rng.lognormal(0.0, sigma, n)
    tail = rng.random(n) < 0.02
    x[tail] *= rng.uniform(1.5, 3.0, tail.sum())
    return [round(float(v), 4) for v in x]


def record(device: str, seed: int, limits: dict[str, float], slow: float = 1.0, n: int = 300,
           duration_s: float = 12.0, min_count: int = 100, sha: str = SHA["tiny-int8"],
           error: dict | None = None, created: str = "2026-11-20T10:00:00Z") -> dict:
    d = DEVICES[device]
    rec: dict = {
        "schema_version": "1.0", "record_id": f"{device}-{seed:08d}", "run_id": f"run{seed}",
        "created_utc": created,
        "device": {"name": device, "transport": d["transport"], "platform": d["platform"],
                   "runtime": "onnxruntime", "emulated": False, "hardware": {}},
        "artifact": {"model": "tiny", "variant": "int8", "format": "onnx", "sha256": sha,
                     "size_bytes": 3_500_000, "opset": 17, "params_total": 900_000,
                     "params_active_per_token": 400_000},
        "benchmark": {"name": "latency", "seq_len_tokens": 64, "batch": 1, "threads": 4,
                      "warmup_count": 10, "min_count": min_count, "min_duration_s": 10.0,
                      "max_count": 2000, "max_duration_s": 120.0},
        "environment": {"device": device, "os": "Linux", "kernel": "6.6", "machine": "aarch64",
                        "cpu_model": "fixture", "cpu_count": 4, "runtime": "onnxruntime",
                        "runtime_version": "1.20.0", "threads": 4, "governor": "performance",
                        "harness_commit": None, "harness_dirty": None, "conditioning": {}},
        "harness": {"wall_s": 15.0, "agent_wall_s": 14.0, "overhead_ms": 1000.0, "push_s": 0.1,
                    "push_skipped": True},
    }
    if error:
        rec.update({"latency_ms": None, "cold_start_ms": None, "parity": None,
                    "memory": {"peak_rss_mb": None, "source": None},
                    "energy": {"energy_per_inference_mj": None, "sensor": None},
                    "thermal": None,
                    "validity": {"valid": False, "reasons": ["the run failed"], "count": None,
                                 "duration_s": None, "stopped_by": None},
                    "verdicts": [], "overall_verdict": "error", "error": error})
        return rec
    xs = samples(d["median_ms"] * slow, n, seed)
    val = assess(xs, ValidityBounds(min_count=min_count, min_duration_s=10.0),
                 duration_s=duration_s, stopped_by="min_reached")
    lat = {"samples_ms": xs, "warmup_samples_ms": xs[:10], **summarize(val.kept_samples_ms)}
    rec.update({
        "latency_ms": lat,
        "cold_start_ms": {"session_create_ms": 300.0, "first_inference_ms": 60.0,
                          "total_ms": 360.0},
        "memory": {"peak_rss_mb": 180.0, "source": "agent VmHWM (/proc/self/status)"},
        "energy": {"energy_per_inference_mj": None, "sensor": None, "status": "no_sensor",
                   "note": "fixture: no power sensor"},
        "thermal": {"zone": "cpu-thermal", "temp_start_c": 48.0, "temp_end_c": 55.5,
                    "throttled": False},
        "parity": {"max_abs_diff": 0.002, "top1_agreement": 1.0, "atol": 0.05,
                   "n_reference": 8, "passed": True},
        "validity": val.as_record(),
        "error": None,
    })
    meas = {f"latency_p{q}_ms": Measurement(lat[f"p{q}_ms"], *lat[f"p{q}_ci_ms"])
            for q in (50, 90, 95, 99)}
    meas["peak_rss_mb"] = Measurement.exact(180.0)
    verdicts = evaluate(limits, meas, {k: "profile" for k in limits})
    rec["verdicts"] = [v.as_dict() for v in verdicts]
    rec["overall_verdict"] = overall(verdicts)
    if not val.valid and rec["overall_verdict"] == "pass":
        rec["overall_verdict"] = "inconclusive"
    return rec


def write(folder: str, recs: list[dict]) -> None:
    out = HERE / folder
    out.mkdir(exist_ok=True)
    for old in out.glob("*.json"):
        old.unlink()
    for r in recs:
        (out / f"{r['record_id']}.json").write_text(json.dumps(r, indent=1) + "\n")


def main() -> None:
    ok = {"latency_p95_ms": 100.0, "peak_rss_mb": 250.0}
    write("baseline", [record("fixture-pi4", 1, ok, created="2026-11-19T10:00:00Z"),
                       record("fixture-phone", 2, ok, created="2026-11-19T10:00:00Z")])
    write("passing", [record("fixture-pi4", 11, ok, sha=SHA["tiny-int8-cand"]),
                      record("fixture-phone", 12, ok, sha=SHA["tiny-int8-cand"])])
    write("failing", [record("fixture-pi4", 21, {"latency_p95_ms": 35.0, "peak_rss_mb": 250.0}),
                      record("fixture-phone", 22, ok)])
    write("regressed", [record("fixture-pi4", 31, ok, slow=1.10),
                        record("fixture-phone", 32, ok)])
    # p95 of fixture-pi4 is about 45.6 ms: a limit at the point estimate straddles its CI
    probe = record("fixture-pi4", 41, ok)
    p95 = probe["latency_ms"]["p95_ms"]
    write("inconclusive", [record("fixture-pi4", 41, {"latency_p95_ms": round(p95, 3),
                                                      "peak_rss_mb": 250.0}),
                           record("fixture-phone", 42, ok)])
    write("invalid", [record("fixture-pi4", 51, ok, n=40, duration_s=1.6),
                      record("fixture-phone", 52, ok)])
    write("error", [record("fixture-pi4", 61, ok, error={
        "kind": "agent", "message": "fixture-pi4: the agent failed (RuntimeError, exit code 3)",
        "exit_code": 3, "stderr_tail": ""}), record("fixture-phone", 62, ok)])


if __name__ == "__main__":
    main()
