"""harness.validity: LoadGen minimums, stability, warm-up drift, trend, outliers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from harness.errors import ConfigError
from harness.validity import ValidityBounds, assess, assess_agent_run


def steady(n=400, seed=0, sigma=0.05):
    return list(20.0 * np.random.default_rng(seed).lognormal(0.0, sigma, n))


def test_a_clean_run_is_valid():
    r = assess(steady(), duration_s=12.0)
    assert r.valid and r.reasons == [] and r.excluded_leading_count == 0
    assert r.cv < 0.1 and r.p99_over_p50 < 1.3 and len(r.kept_samples_ms) == 400
    rec = r.as_record()
    assert "kept_samples_ms" not in rec and rec["valid"] is True


def test_minimum_count_and_duration_both_required():
    r = assess(steady(30), ValidityBounds(min_count=50, min_duration_s=1.0), duration_s=5.0)
    assert not r.valid and "min_count 50" in r.reasons[0]
    r = assess(steady(), ValidityBounds(min_duration_s=10.0), duration_s=3.0)
    assert not r.valid and any("min_duration_s 10" in x for x in r.reasons)
    r = assess([], duration_s=0.0)
    assert not r.valid and "no timed samples" in r.reasons


def test_warmup_drift_is_detected_and_excluded():
    x = steady(400, 1)
    for i in range(40):  # first 10 % are 40 % slower, fading out
        x[i] *= 1.4 - 0.005 * i
    r = assess(x, duration_s=12.0)
    assert r.warmup_drift["detected"] and 20 <= r.excluded_leading_count <= 60
    assert r.valid  # excluded, under the 20 % cap
    assert r.kept_samples_ms == x[r.excluded_leading_count:]


def test_warmup_drift_beyond_the_cap_invalidates():
    x = steady(400, 2)
    for i in range(150):
        x[i] *= 1.3
    r = assess(x, duration_s=12.0)
    assert not r.valid and any("raise warmup_count" in m for m in r.reasons)


def test_unstable_heavy_tail_and_trend():
    rng = np.random.default_rng(3)
    noisy = list(20.0 * rng.lognormal(0.0, 0.5, 400))
    r = assess(noisy, duration_s=12.0)
    assert not r.valid and any("CV" in m for m in r.reasons)
    tail = steady(400, 4)
    for i in range(10, 400, 40):
        tail[i] *= 6.0
    r = assess(tail, duration_s=12.0)
    assert any("p99/p50" in m for m in r.reasons)
    assert r.outliers["count"] == 10 and r.outliers["indices"][0] == 10
    assert len(tail) == r.count  # reported, not dropped
    ramp = [v * (1.0 + 0.3 * i / 400) for i, v in enumerate(steady(400, 5))]
    r = assess(ramp, duration_s=12.0)
    assert any("drifted" in m for m in r.reasons)


def test_throttling_is_gated_only_when_asked():
    assert assess(steady(), duration_s=12.0, throttled=True).valid
    r = assess(steady(), ValidityBounds(allow_throttled=False), duration_s=12.0, throttled=True)
    assert not r.valid and "allow_throttled" in r.reasons[-1]


def test_agent_output_and_bounds_from_a_profile(tmp_path):
    out = {"latency_samples_ns": [int(v * 1e6) for v in steady(100)],
           "run": {"count": 100, "duration_s": 2.5, "min_count_met": True,
                   "min_duration_met": False, "stopped_by": "max_duration"}}
    r = assess_agent_run(out)
    assert not r.valid and r.stopped_by == "max_duration"
    prof = tmp_path / "dev.toml"
    prof.write_text('name = "dev"\ntransport = "local"\nplatform = "linux"\n'
                    'runtime = "onnxruntime"\n[run]\nmin_count = 10\nmin_duration_s = 0.5\n'
                    '[validity]\nmax_cv = 0.05\n[sensors]\nallow_throttled = false\n')

    from harness.profiles import parse_profile

    b = ValidityBounds.from_profile(parse_profile(prof))
    assert b.max_cv == 0.05 and b.min_count == 10 and b.allow_throttled is False
    from harness.registry import TableContext, parse_settings

    ctx = TableContext(Path("<mapping>"), "validity")
    with pytest.raises(ConfigError, match="max_cvv"):
        parse_settings(ValidityBounds, {"max_cvv": 1}, ctx)
    with pytest.raises(ConfigError, match="expected a number"):
        parse_settings(ValidityBounds, {"max_cv": "high"}, ctx)
