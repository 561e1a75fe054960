"""Bench orchestration: profile -> device -> push -> agent -> record -> verdicts.

One DeviceSession per device per pytest session (or CLI call): the link, the
pushed agent and the pushed artifacts are reused, so a second benchmark costs
one agent run plus a few hash checks.
"""

from __future__ import annotations

import json
import posixpath
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness import __version__, stats
from harness.artifacts import LocalArtifact
from harness.budgets import METRICS, Measurement, evaluate, overall
from harness.errors import AgentError, HarnessError, TransportError
from harness.platforms import get_platform
from harness.profiles import DeviceProfile, RunSettings
from harness.record import SCHEMA_VERSION, harness_git_state, write_record
from harness.transports import Transport, open_transport

AGENT_SOURCE = Path(__file__).resolve().parent.parent / "firmware" / "agent" / "gem_agent.py"
MIB = 1024 * 1024


@dataclass
class BenchOutcome:
    record: dict[str, Any]
    path: Path | None

    @property
    def failed_verdicts(self) -> list[dict[str, Any]]:
        return [v for v in self.record["verdicts"] if v["verdict"] == "fail"]


class DeviceSession:
    """A device opened for benchmarking: transport, platform and what was pushed."""

    def __init__(self, profile: DeviceProfile, accept_new_host_key: bool = False) -> None:
        self.profile = profile
        self.platform = get_platform(profile)
        self._accept_new_host_key = accept_new_host_key
        self._transport: Transport | None = None
        self._agent_remote: str | None = None
        self._pushed: dict[str, str] = {}

    @property
    def transport(self) -> Transport:
        if self._transport is None:
            self._transport = open_transport(self.profile, self._accept_new_host_key)
        return self._transport

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    def __enter__(self) -> DeviceSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- pushing ----------------------------------------------------------

    def ensure_agent(self) -> str:
        if self._agent_remote is None:
            remote = posixpath.join(self.profile.run.workdir, "agent", AGENT_SOURCE.name)
            self.transport.push(AGENT_SOURCE, remote)
            self._agent_remote = remote
        return self._agent_remote

    def push_artifact(self, artifact: LocalArtifact) -> tuple[str, bool]:
        """Push every file of the artifact; (remote folder, whether all were already there)."""
        remote_dir = posixpath.join(self.profile.run.workdir, "artifacts", artifact.sha256[:16])
        if self._pushed.get(artifact.sha256) == remote_dir:
            return remote_dir, True
        all_skipped = True
        for local, sha in artifact.upload_list():
            res = self.transport.push(local, posixpath.join(remote_dir, local.name), sha256=sha)
            all_skipped &= res.skipped
        self._pushed[artifact.sha256] = remote_dir
        return remote_dir, all_skipped

    # -- running ----------------------------------------------------------

    def run_benchmark(
        self,
        artifact: LocalArtifact,
        name: str = "latency",
        budget_overrides: Mapping[str, float] | None = None,
        report_dir: Path | None = None,
        run_id: str | None = None,
        settings: RunSettings | None = None,
    ) -> BenchOutcome:
        """Run one benchmark and write its record, even when the run fails.

        Raises AgentError / TransportError after the failure record is written.
        """
        settings = settings or self.profile.run
        t_start = time.perf_counter()
        base = self._base_record(artifact, name, settings, run_id)
        push_s, push_skipped = 0.0, False
        agent_wall_s: float | None = None
        failure: HarnessError | None = None
        agent_out: dict[str, Any] | None = None
        conditioning: dict[str, Any] = {}
        try:
            t0 = time.perf_counter()
            agent_remote = self.ensure_agent()
            remote_dir, push_skipped = self.push_artifact(artifact)
            push_s = time.perf_counter() - t0
            conditioning = self.platform.prepare(self.transport) or {}
            argv = self.platform.agent_argv(agent_remote, agent_args(remote_dir, settings))
            res = self.transport.run(argv, timeout_s=settings.timeout_s)
            agent_wall_s = res.duration_s
            agent_out = parse_agent_output(self.profile.name, res)
            conditioning.update(self.platform.finish(self.transport) or {})
        except HarnessError as exc:
            failure = exc
        record = self._complete_record(base, artifact, settings, agent_out, failure,
                                       budget_overrides or {}, conditioning)
        wall = time.perf_counter() - t_start
        record["harness"] = {
            "wall_s": wall,
            "agent_wall_s": agent_wall_s,
            "overhead_ms": (wall - agent_wall_s) * 1000 if agent_wall_s is not None else None,
            "push_s": push_s,
            "push_skipped": push_skipped,
        }
        path = write_record(record, report_dir) if report_dir is not None else None
        if failure is not None:
            where = f" (record: {path})" if path else ""
            raise type(failure)(f"{failure}{where}")
        return BenchOutcome(record, path)

    def _base_record(self, artifact: LocalArtifact, name: str, settings: RunSettings,
                     run_id: str | None) -> dict[str, Any]:
        p = self.profile
        m = artifact.manifest
        return {
            "schema_version": SCHEMA_VERSION,
            "record_id": uuid.uuid4().hex,
            "run_id": run_id or uuid.uuid4().hex[:12],
            "created_utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "device": {"name": p.name, "transport": p.transport, "platform": p.platform,
                       "runtime": p.runtime, "emulated": p.emulated, "hardware": p.hardware},
            "artifact": {"model": m["model"], "variant": m["variant"], "format": m["format"],
                         "sha256": artifact.sha256, "size_bytes": artifact.size_bytes,
                         "opset": m.get("opset"), "params_total": m.get("params_total"),
                         "params_active_per_token": m.get("params_active_per_token")},
            "benchmark": {"name": name, "seq_len_tokens": settings.seq_len_tokens, "batch": 1,
                          "threads": settings.threads, "warmup_count": settings.warmup_count,
                          "min_count": settings.min_count,
                          "min_duration_s": settings.min_duration_s,
                          "max_count": settings.max_count,
                          "max_duration_s": settings.max_duration_s},
        }

    def _complete_record(self, record: dict[str, Any], artifact: LocalArtifact,
                         settings: RunSettings, out: dict[str, Any] | None,
                         failure: HarnessError | None, budget_overrides: Mapping[str, float],
                         conditioning: dict[str, Any]) -> dict[str, Any]:
        p = self.profile
        commit, dirty = harness_git_state()
        host = (out or {}).get("host", {})
        runtime = (out or {}).get("runtime", {})
        record["environment"] = {
            "device": p.name, "os": host.get("os"), "kernel": host.get("kernel"),
            "machine": host.get("machine"), "cpu_model": host.get("cpu_model"),
            "cpu_count": host.get("cpu_count"), "runtime": p.runtime,
            "runtime_version": runtime.get("version"), "threads": settings.threads,
            "governor": host.get("governor"), "python": host.get("python"),
            "harness_version": __version__, "harness_commit": commit, "harness_dirty": dirty,
            "host": host, "conditioning": conditioning,
        }
        record["energy"] = {"energy_per_inference_mj": None, "sensor": None}
        if out is None:
            record.update({
                "latency_ms": None, "cold_start_ms": None, "parity": None,
                "memory": {"peak_rss_mb": None, "source": None},
                "validity": {"valid": False, "reasons": ["the run failed"], "count": None,
                             "duration_s": None, "stopped_by": None},
                "verdicts": [], "overall_verdict": "error",
                "error": error_fields(failure),
            })
            return record
        samples_ms = [s / 1e6 for s in out["latency_samples_ns"]]
        latency = stats.summarize(samples_ms)
        latency = {"samples_ms": samples_ms,
                   "warmup_samples_ms": [s / 1e6 for s in out["warmup_samples_ns"]], **latency}
        cold = dict(out["cold_start"])
        cold["total_ms"] = cold["session_create_ms"] + cold["first_inference_ms"]
        rss_kb = out.get("peak_rss_kb")
        record.update({
            "latency_ms": latency,
            "cold_start_ms": cold,
            "memory": {"peak_rss_mb": rss_kb / 1024 if rss_kb is not None else None,
                       "source": "agent VmHWM (/proc/self/status)" if rss_kb is not None
                       else None},
            "parity": out["parity"],
            "validity": run_validity(out["run"]),
            "error": None,
        })
        measurements = collect_measurements(record)
        budgets = dict(p.budgets_for(artifact.manifest["model"], artifact.manifest["variant"]))
        sources = {k: "profile" for k in budgets}
        for k, v in budget_overrides.items():
            budgets[k] = v
            sources[k] = "cli"
        verdicts = evaluate(budgets, measurements, sources, emulated=p.emulated,
                            emulator_budgets=p.budgets.get("emulator"))
        record["verdicts"] = [v.as_dict() for v in verdicts]
        record["overall_verdict"] = overall(verdicts)
        if not record["validity"]["valid"] and record["overall_verdict"] == "pass":
            record["overall_verdict"] = "inconclusive"
        return record


def agent_args(remote_dir: str, s: RunSettings) -> list[str]:
    return ["--artifact-dir", remote_dir, "--seq-len-tokens", str(s.seq_len_tokens),
            "--threads", str(s.threads), "--warmup-count", str(s.warmup_count),
            "--min-count", str(s.min_count), "--min-duration-s", str(s.min_duration_s),
            "--max-count", str(s.max_count), "--max-duration-s", str(s.max_duration_s)]


def parse_agent_output(device: str, res) -> dict[str, Any]:
    """The agent's one JSON line, or an AgentError that carries the stderr tail."""
    lines = [ln for ln in res.stdout.splitlines() if ln.strip()]
    parsed: dict[str, Any] | None = None
    if lines:
        try:
            parsed = json.loads(lines[-1])
        except ValueError:
            parsed = None
    tail = res.stderr_tail(20)
    if parsed is None or not isinstance(parsed, dict):
        raise AgentError(
            f"{device}: the agent crashed or printed no record (exit code {res.rc}); "
            f"stderr tail:\n{tail or '(empty)'}\nstdout tail:\n{res.stdout[-500:] or '(empty)'}",
        )
    if not parsed.get("ok"):
        err = parsed.get("error", {})
        raise AgentError(
            f"{device}: the agent failed ({err.get('kind', '?')}, exit code {res.rc}): "
            f"{err.get('message', '')}"
            + (f"\nstderr tail:\n{tail}" if tail else "")
            + (f"\nagent traceback:\n{err['traceback_tail']}" if err.get("traceback_tail")
               else "")
        )
    for key in ("latency_samples_ns", "warmup_samples_ns", "cold_start", "parity", "run"):
        if key not in parsed:
            raise AgentError(f"{device}: the agent's record lacks {key!r}; agent and harness "
                             "versions differ? (push the agent again)")
    if not parsed["latency_samples_ns"]:
        raise AgentError(f"{device}: the agent returned no latency samples")
    return parsed


def error_fields(exc: HarnessError | None) -> dict[str, Any]:
    text = str(exc) if exc else "unknown failure"
    tail = ""
    if "stderr tail:" in text:
        tail = text.split("stderr tail:", 1)[1].strip()
    kind = "transport" if isinstance(exc, TransportError) else \
        "agent" if isinstance(exc, AgentError) else type(exc).__name__
    return {"kind": kind, "message": text, "exit_code": None, "stderr_tail": tail}


def run_validity(run: Mapping[str, Any]) -> dict[str, Any]:
    """LoadGen rule: a run is valid only when BOTH minimums were met."""
    reasons = []
    if not run.get("min_count_met"):
        reasons.append(f"minimum count not met ({run.get('count')} samples, stopped by "
                       f"{run.get('stopped_by')})")
    if not run.get("min_duration_met"):
        reasons.append(f"minimum duration not met ({run.get('duration_s', 0):.3g} s, stopped "
                       f"by {run.get('stopped_by')})")
    return {"valid": not reasons, "reasons": reasons, "count": run.get("count"),
            "duration_s": run.get("duration_s"), "stopped_by": run.get("stopped_by")}


def collect_measurements(record: Mapping[str, Any]) -> dict[str, Measurement]:
    lat = record["latency_ms"]
    out: dict[str, Measurement] = {}
    for q in (50, 90, 95, 99):
        lo, hi = lat[f"p{q}_ci_ms"]
        out[f"latency_p{q}_ms"] = Measurement(lat[f"p{q}_ms"], lo, hi)
    lo, hi = lat["mean_ci_ms"]
    out["latency_mean_ms"] = Measurement(lat["mean_ms"], lo, hi)
    out["cold_start_ms"] = Measurement.exact(record["cold_start_ms"]["total_ms"])
    out["peak_rss_mb"] = Measurement.exact(record["memory"]["peak_rss_mb"])
    out["model_size_mb"] = Measurement.exact(record["artifact"]["size_bytes"] / MIB)
    out["parity_max_abs_diff"] = Measurement.exact(record["parity"]["max_abs_diff"])
    out["top1_agreement"] = Measurement.exact(record["parity"]["top1_agreement"])
    out["energy_per_inference_mj"] = Measurement.exact(
        record["energy"]["energy_per_inference_mj"])
    assert set(out) == set(METRICS), "every metric needs a measurement"
    return out


def with_overrides(settings: RunSettings, **kw: Any) -> RunSettings:
    return replace(settings, **{k: v for k, v in kw.items() if v is not None})
