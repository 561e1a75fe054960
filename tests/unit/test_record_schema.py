"""The published schema accepts engine records and rejects malformed ones."""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from pathlib import Path

import jsonschema
import pytest

from harness.bench import DeviceSession
from harness.profiles import load_profile
from harness.record import schema, schema_errors, validate, write_record
from tests.support.profiles import LENIENT

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def record(fixture_artifact, tmp_path_factory):
    p = load_profile("local", REPO / "targets")
    p = replace(p, run=replace(p.run, min_count=10, min_duration_s=0.01, warmup_count=1),
                validity=dict(LENIENT))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GEM_HIL_LOCAL_HOME", str(tmp_path_factory.mktemp("home")))
        with DeviceSession(p) as dev:
            return dev.run_benchmark(fixture_artifact).record


def test_schema_is_itself_valid():
    jsonschema.Draft202012Validator.check_schema(schema())


def test_engine_record_validates(record):
    assert schema_errors(record) == []


@pytest.mark.parametrize(("mutate", "where"), [
    (lambda r: r["latency_ms"].pop("p95_ci_ms"), "latency_ms"),
    (lambda r: r["verdicts"][0].update(verdict="maybe"), "verdicts/0/verdict"),
    (lambda r: r["artifact"].update(sha256="xyz"), "artifact/sha256"),
    (lambda r: r["device"].update(emulated="no"), "device/emulated"),
    (lambda r: r["memory"].pop("peak_rss_mb"), "memory"),
    (lambda r: r["environment"].pop("harness_commit"), "environment"),
])
def test_malformed_records_are_rejected_with_their_path(record, mutate, where):
    bad = copy.deepcopy(record)
    if not bad["verdicts"]:
        bad["verdicts"] = [{"metric": "x", "unit": "ms", "direction": "max", "limit": 1,
                            "measured": 1, "ci_low": 1, "ci_high": 1, "verdict": "pass",
                            "source": "profile", "reason": ""}]
    mutate(bad)
    errors = schema_errors(bad)
    assert errors and any(e.startswith(where) for e in errors), errors


def test_invalid_record_is_never_written(record, tmp_path):
    bad = copy.deepcopy(record)
    bad["overall_verdict"] = "great"
    with pytest.raises(jsonschema.ValidationError):
        write_record(bad, tmp_path)
    assert list(tmp_path.iterdir()) == []
    path = write_record(record, tmp_path)
    validate(json.loads(path.read_text()))


def _agent_generation() -> dict:
    """What the agent reports for pp8/tg5 (3 runs), in its own units (ns)."""
    return {"tokens": "bytes", "runs": 3,
            "parity": {"prompts": 3, "token_agreement": 1.0, "passed": True},
            "prefill": {"run": "pp8", "prompt_tokens": 8,
                        "ttft_samples_ns": [2_000_000, 2_500_000, 2_200_000]},
            "decode": {"run": "tg5", "prompt_tokens": 8, "new_tokens": 5,
                       "token_samples_ns": [1_000_000 + 10_000 * i for i in range(12)],
                       "tokens_per_s_samples": [990.0, 1000.0, 960.0]},
            "kv_cache_bytes": 2 * 1024 * 1024}


def test_generation_block_validates_and_feeds_the_budget_metrics(record):
    from harness.bench import generation_fields
    from harness.budgets import record_measurements
    from harness.report import generation_runs
    from harness.stats import summarize

    rec = copy.deepcopy(record)
    rec["generation"] = generation_fields(_agent_generation(), summarize)
    assert schema_errors(rec) == []
    gen = rec["generation"]
    assert gen["prefill"]["ttft_ms"]["samples_ms"] == [2.0, 2.5, 2.2]
    assert gen["kv_cache_mb"] == 2.0
    m = record_measurements(rec)
    assert m["ttft_p95_ms"].value == pytest.approx(gen["prefill"]["ttft_ms"]["p95_ms"])
    assert 1.0 < m["decode_token_p95_ms"].value < 1.2
    # throughput = 1000 / mean step latency (ms): the 12 steps average 1.055 ms
    assert m["decode_tokens_per_s"].value == pytest.approx(1000.0 / 1.055)
    assert gen["decode"]["tokens_per_s"]["median_per_s"] == pytest.approx(990.0)
    assert generation_runs(rec) == {"ttft_p95_ms": "pp8", "decode_token_p95_ms": "tg5",
                                    "decode_tokens_per_s": "tg5"}
    rec["generation"]["prefill"]["run"] = "prefill-8"  # not a llama-bench name
    assert any(e.startswith("generation") for e in schema_errors(rec))
    assert generation_fields(None, summarize) is None


def test_decode_tokens_per_s_is_a_minimum_budget():
    from harness.budgets import METRICS

    assert METRICS["decode_tokens_per_s"].direction == "min"
    assert {METRICS[n].direction for n in ("ttft_p95_ms", "decode_token_p95_ms")} == {"max"}
    assert all(METRICS[n].timing for n in ("ttft_p95_ms", "decode_token_p95_ms",
                                           "decode_tokens_per_s"))
