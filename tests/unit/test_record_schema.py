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
