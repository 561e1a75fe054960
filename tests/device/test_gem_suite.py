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
    lo, hi = lat["p95_ci_ms"]
    assert lo <= lat["p95_ms"] <= hi


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


def test_repush_of_unchanged_artifact_is_skipped(gem_record, gem_device, gem_artifact):
    """The device already holds the artifact: a push is one hash check."""
    remote_dir = posixpath.join(gem_device.profile.run.workdir, "artifacts",
                                gem_artifact.sha256[:16])
    entry = gem_artifact.folder / gem_artifact.manifest["entrypoint"]
    res = gem_device.transport.push(entry, posixpath.join(remote_dir, entry.name))
    assert res.skipped
    assert res.sha256 == next(f["sha256"] for f in gem_artifact.files if f["name"] == entry.name)


def _generation(gem_record):
    gen = gem_record.get("generation")
    assert gen, ("the record has no generation block: the artifact ships no prefill/decode "
                 "graphs or the agent ran no pp/tg benchmark")
    return gen


def test_generation_reproduces_torch_greedy_tokens(gem_record):
    """Greedy decoding on the device with prefill + decode graphs gives the tokens
    torch gave on the host for the reference prompts."""
    parity = _generation(gem_record)["parity"]
    assert parity["prompts"] >= 1 and parity["passed"], parity
    assert parity["token_agreement"] == 1.0, parity


def test_prefill_time_to_first_token(gem_record):
    """ppN: time to first token of an N-token prompt, every run kept, p95 with its CI."""
    pre = _generation(gem_record)["prefill"]
    assert pre["run"] == f"pp{pre['prompt_tokens']}"
    ttft = pre["ttft_ms"]
    assert len(ttft["samples_ms"]) == gem_record["generation"]["runs"] >= 1
    assert all(x > 0 for x in ttft["samples_ms"])
    lo, hi = ttft["p95_ci_ms"]
    assert lo <= ttft["p95_ms"] <= hi


def test_decode_with_kv_cache(gem_record):
    """tgM: per-token decode latency with the KV cache and tokens/s (tokens are the
    model's tokens, bytes for GEM), peak memory including the cache."""
    gen = _generation(gem_record)
    dec = gen["decode"]
    assert dec["run"] == f"tg{dec['new_tokens']}"
    tok = dec["token_latency_ms"]
    assert len(tok["samples_ms"]) == gen["runs"] * (dec["new_tokens"] - 1)
    rate = dec["tokens_per_s"]
    assert len(rate["samples_per_s"]) == gen["runs"] and rate["median_per_s"] > 0
    # tokens/s and per-token latency describe the same runs: a run's rate lies
    # between the slowest and the fastest step's rate
    assert 1000.0 / tok["max_ms"] <= rate["median_per_s"] <= 1000.0 / tok["min_ms"]
    assert gen["tokens"] == "bytes" and gen["kv_cache_mb"] > 0
    assert gem_record["memory"]["peak_rss_mb"] > gen["kv_cache_mb"]


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
