"""The GEM device suite: what `pytest --device=NAME` runs on a device.

Each test reads the one latency record of the session (built, pushed and run
once by the gem_bench fixture) and checks one property of it, so a failure
names exactly what went wrong on the device.
"""

from __future__ import annotations

import posixpath

import pytest

from harness.budgets import METRICS
from harness.record import schema_errors

pytestmark = pytest.mark.device


def test_record_matches_published_schema(gem_record):
    assert schema_errors(gem_record) == []


def test_agent_output_matches_reference(gem_record):
    """The device runs the artifact and reproduces the host's reference outputs."""
    parity = gem_record["parity"]
    assert parity["n_reference"] >= 2
    assert parity["top1_agreement"] == 1.0, parity
    assert parity["max_abs_diff"] <= parity["atol"], parity


def test_run_met_loadgen_minimums(gem_record):
    bench = gem_record["benchmark"]
    lat = gem_record["latency_ms"]
    assert gem_record["validity"]["valid"], gem_record["validity"]["reasons"]
    assert len(lat["samples_ms"]) >= bench["min_count"]
    # statistics use the samples after any excluded warm-up drift; none are dropped
    excluded = gem_record["validity"]["excluded_leading_count"]
    assert lat["count"] == len(lat["samples_ms"]) - excluded
    assert len(lat["warmup_samples_ms"]) == bench["warmup_count"]
    assert lat["min_ms"] <= lat["p50_ms"] <= lat["p95_ms"] <= lat["p99_ms"] <= lat["max_ms"]
    lo, hi = lat["p95_ci_ms"]  # an end is None (unbounded) when n cannot reach it
    assert (lo is None or lo <= lat["p95_ms"]) and (hi is None or lat["p95_ms"] <= hi)
    assert hi is not None or lat["effective_sample_size"] < 100  # p95 needs ~72


def test_stability_and_stopping_are_reported(gem_record):
    """Stability is always in the record; on a shared host it is reported, not asserted
    (the run's conditions are not the test's), and an unstable pass carries its margin."""
    import warnings

    stability = gem_record["validity"]["stability"]
    assert isinstance(stability["stable"], bool) and stability["spread_log_mad"] is not None
    lat = gem_record["latency_ms"]
    assert 1.0 <= lat["variance_inflation"] and \
        lat["effective_sample_size"] == pytest.approx(lat["count"] / lat["variance_inflation"])
    stopping = gem_record["stopping"]
    if stopping["rule"]:
        assert stopping["replay"]["agrees"], stopping  # the harness recomputed the decision
    if not stability["stable"]:
        warnings.warn("device unstable during the run: " + "; ".join(stability["reasons"]),
                      stacklevel=1)
        for v in gem_record["verdicts"]:
            if v["verdict"] == "pass" and METRICS[v["metric"]].timing:
                assert "unstable run" in v["reason"], v


def test_memory_and_cold_start_measured(gem_record):
    assert gem_record["memory"]["peak_rss_mb"] is not None
    assert gem_record["memory"]["peak_rss_mb"] > 1.0
    cold = gem_record["cold_start_ms"]
    assert cold["total_ms"] == pytest.approx(cold["session_create_ms"]
                                             + cold["first_inference_ms"])


def test_environment_fingerprint_describes_the_device(gem_record, gem_profile):
    env = gem_record["environment"]
    assert env["device"] == gem_profile.name
    assert env["runtime_version"], "the agent must report the runtime version"
    assert env["machine"] and env["cpu_count"] >= 1
    assert env["threads"] == gem_profile.run.threads


def test_record_names_format_runtime_and_op_placement(gem_record, gem_artifact):
    """The record says which artifact format ran, in which runtime, and where."""
    from harness.artifacts import format_for_runtime

    runtime = gem_record["environment"]["runtime"]
    assert gem_record["artifact"]["format"] == gem_artifact.manifest["format"]
    assert gem_record["artifact"]["format"] == format_for_runtime(runtime)
    assert gem_record["device"]["runtime"] == runtime
    placement = gem_record["op_placement"]
    assert placement is not None, "the agent must report where the work ran"
    if placement["accelerator"] is None:  # CPU only: everything ran there, nothing fell back
        assert placement["ops_accelerator"] == 0 and placement["cpu_fallback_ops"] == 0
    buckets = gem_artifact.manifest.get("seq_buckets")
    if buckets:  # a fixed-shape file: the record names the bucket that ran
        bucket = gem_record["environment"]["runtime_detail"]["bucket"]
        asked = gem_record["benchmark"]["seq_len_tokens"]
        assert bucket["seq_len_tokens"] == min(b for b in buckets if b >= asked)
        assert bucket["requested_tokens"] == asked
        assert placement["ops_total"] > 0


def test_repush_of_unchanged_artifact_is_skipped(gem_record, gem_device, gem_artifact):
    """The device already holds the artifact: a push is one hash check."""
    remote_dir = posixpath.join(gem_device.profile.run.workdir, "artifacts",
                                gem_artifact.sha256[:16])
    entry = gem_artifact.folder / gem_artifact.manifest["entrypoint"]
    res = gem_device.transport.push(entry, posixpath.join(remote_dir, entry.name))
    assert res.skipped
    assert res.sha256 == next(f["sha256"] for f in gem_artifact.files if f["name"] == entry.name)


def test_budgets(gem_record):
    """The gate: every budget of this device and artifact holds."""
    assert gem_record["verdicts"], "the profile defines no budgets for this artifact"
    assert {v["metric"] for v in gem_record["verdicts"]} <= set(METRICS)
    bad = [v for v in gem_record["verdicts"] if v["verdict"] in ("fail", "inconclusive")]
    if bad:
        from harness.budgets import Verdict

        dev = gem_record["device"]["name"]
        art = (f"{gem_record['artifact']['model']}-{gem_record['artifact']['variant']} "
               f"({gem_record['artifact']['sha256'][:12]})")
        pytest.fail("budget broken:\n" + "\n".join(Verdict(**v).message(dev, art)
                                                   for v in bad), pytrace=False)
