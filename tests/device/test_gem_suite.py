"""The GEM device suite: what `pytest --device=NAME` runs on a device.

Each test reads the one latency record of the session (built, pushed and run
once by the gem_bench fixture) and checks one property of it, so a failure
names exactly what went wrong on the device.
"""

from __future__ import annotations

import posixpath
import warnings

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
    validity = gem_record["validity"]
    # the agent's stopping rule is in its own hands on any device: always asserted
    assert validity["min_count_met"] and validity["min_duration_met"], validity["reasons"]
    if not validity["valid"]:
        # stability (CV, trend, throttling) depends on the device's neighbours, which
        # this suite does not control: reported here, and the session exits 2
        # (inconclusive) as `gem-hil gate` does, instead of a flaky failure here
        warnings.warn(f"run invalid on {gem_record['device']['name']}: "
                      f"{'; '.join(validity['reasons'])}", pytest.PytestWarning, stacklevel=1)
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


def test_memory_and_cold_start_measured(gem_record, gem_device, gem_artifact):
    """Checked against what the harness saw by itself, not re-added from the record:
    the agent held the model in memory, within the device's RAM, and its cold
    start and timed samples fit inside the wall time the harness measured."""
    mem = gem_record["memory"]["peak_rss_mb"]
    model_mb = sum(f["size_bytes"] for f in gem_artifact.files) / 2**20
    assert mem is not None and mem > max(model_mb, 10.0), (mem, model_mb)  # MB, not kB or GB
    res = gem_device.transport.run(["sh", "-c", "grep MemTotal /proc/meminfo"], timeout_s=30)
    if res.ok:  # a device without /proc/meminfo is not a reason to fail this test
        assert mem < int(res.stdout.split()[1]) / 1024, (mem, res.stdout)
    cold = gem_record["cold_start_ms"]
    assert cold["session_create_ms"] > 0 and cold["first_inference_ms"] > 0
    assert cold["total_ms"] == pytest.approx(cold["session_create_ms"]
                                             + cold["first_inference_ms"])
    lat = gem_record["latency_ms"]
    # the first inference is the coldest: never twice as fast as the fastest timed one
    assert cold["first_inference_ms"] >= 0.5 * lat["min_ms"], (cold, lat["min_ms"])
    inside_ms = cold["total_ms"] + sum(lat["samples_ms"]) + sum(lat["warmup_samples_ms"])
    assert inside_ms <= gem_record["harness"]["agent_wall_s"] * 1000.0, \
        (inside_ms, gem_record["harness"]["agent_wall_s"])


def test_environment_fingerprint_describes_the_device(gem_record, gem_profile, gem_device):
    """The fingerprint is the device's, as the device itself says through its shell
    (uname, getconf), not the harness host's or values copied from the profile."""
    env = gem_record["environment"]
    assert env["device"] == gem_profile.name
    assert env["runtime_version"], "the agent must report the runtime version"
    assert env["threads"] == gem_profile.run.threads
    if gem_profile.platform == "ios":  # the link's shell is the Mac's: ask devicectl instead
        phone = env["conditioning"]["fingerprint"]
        assert env["machine"] == phone["product_type"], (env["machine"], phone)
        assert env["os"] == f"iOS {phone['os_version']}", (env["os"], phone)
        return
    res = gem_device.transport.run(["sh", "-c", "uname -m; uname -r; getconf _NPROCESSORS_ONLN"],
                                   timeout_s=60)
    assert res.ok, res.stderr
    machine, kernel, cpus = res.stdout.split()[:3]
    arch = gem_profile.hardware.get("arch", "host")
    if arch != "host":  # e.g. qemu-user: the shell is the host's, the agent's CPU emulated
        machine = arch
    assert (env["machine"], env["kernel"], env["cpu_count"]) == (machine, kernel, int(cpus))
    assert env["host"]["machine"] == machine  # the raw facts the agent sent agree


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


#: formats whose export has no prefill/decode graphs yet (docs/gem.md): their
#: records must then carry no generation block, which these tests check instead
NO_GENERATION_EXPORT = {"tflite", "coreml"}


def _generation(gem_record, gem_artifact):
    gen = gem_record.get("generation")
    if "generation" not in gem_artifact.manifest:
        fmt = gem_artifact.manifest["format"]
        assert fmt in NO_GENERATION_EXPORT, f"a {fmt} artifact without generation graphs"
        assert gen is None, "a generation block without generation graphs"
        return None
    assert gen, ("the record has no generation block: the artifact ships prefill/decode "
                 "graphs but the agent ran no pp/tg benchmark")
    return gen


def test_generation_reproduces_torch_greedy_tokens(gem_record, gem_artifact):
    """Greedy decoding on the device with prefill + decode graphs gives the tokens
    torch gave on the host for the reference prompts."""
    gen = _generation(gem_record, gem_artifact)
    if gen is None:
        return
    parity = gen["parity"]
    assert parity["prompts"] >= 1 and parity["passed"], parity
    assert parity["token_agreement"] == 1.0, parity


def test_prefill_time_to_first_token(gem_record, gem_artifact):
    """ppN: time to first token of an N-token prompt, every run kept, p95 with its CI."""
    gen = _generation(gem_record, gem_artifact)
    if gen is None:
        return
    pre = gen["prefill"]
    assert pre["run"] == f"pp{pre['prompt_tokens']}"
    ttft = pre["ttft_ms"]
    assert len(ttft["samples_ms"]) == gem_record["generation"]["prefill_runs"] >= 1
    assert all(x > 0 for x in ttft["samples_ms"])
    lo, hi = ttft["p95_ci_ms"]  # an end is None (unbounded) when n_eff cannot reach it
    assert (lo is None or lo <= ttft["p95_ms"]) and (hi is None or ttft["p95_ms"] <= hi)


def test_decode_with_kv_cache(gem_record, gem_artifact):
    """tgM: per-token decode latency with the KV cache and tokens/s (tokens are the
    model's tokens, bytes for GEM), peak memory including the cache."""
    gen = _generation(gem_record, gem_artifact)
    if gen is None:
        return
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
