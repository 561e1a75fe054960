"""Bench orchestration: profile -> device -> push -> agent -> record -> verdicts.

One DeviceSession per device per pytest session (or CLI call): the link, the
pushed agent and the pushed artifacts are reused, so a second benchmark costs
one agent run plus a few hash checks.
"""

from __future__ import annotations

import json
import math
import os
import posixpath
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness import __version__, interrupts
from harness.artifacts import LocalArtifact
from harness.budgets import (
    Measurement,
    benchmark_scope,
    evaluate,
    not_applicable,
    overall,
    record_measurements,
)
from harness.device import open_device
from harness.errors import AgentError, HarnessError, TransportError
from harness.profiles import DeviceProfile, RunSettings
from harness.record import SCHEMA_VERSION, harness_git_state, write_record
from harness.resources import agent_source
from harness.runtimes import runtime_agent_args
from harness.sensors.session import SensorSession
from harness.summary_record import explain_inconclusive, is_summary_only, summary_fields
from harness.transports import Transport
from harness.validity import ValidityBounds, assess_agent_run

#: The stale-agent check starts an interpreter and may wait out a SIGTERM grace.
STALE_CHECK_TIMEOUT_S = 60.0


@dataclass
class BenchOutcome:
    record: dict[str, Any]
    path: Path | None

    @property
    def failed_verdicts(self) -> list[dict[str, Any]]:
        return [v for v in self.record["verdicts"] if v["verdict"] == "fail"]


#: files from this size on are named in the progress shown while pushing
LARGE_FILE_BYTES = 4 << 20


class DeviceSession:
    """A device opened for benchmarking: transport, platform and what was pushed."""

    def __init__(self, profile: DeviceProfile, accept_new_host_key: bool = False) -> None:
        self.profile = profile
        self.device = open_device(profile, accept_new_host_key=accept_new_host_key)
        self.platform = self.device.platform
        self._agent_remote: str | None = None
        self._pushed: dict[str, str] = {}
        self._stale_checked = False
        #: called with each step's name as a run goes (the CLI shows it as progress)
        self.progress: Callable[[str], None] | None = None

    @property
    def transport(self) -> Transport:
        """The link (a VM is booted on first use; see harness.device)."""
        return self.device.transport

    def close(self) -> None:
        self.device.close()

    def __enter__(self) -> DeviceSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- pushing ----------------------------------------------------------

    def ensure_agent(self) -> str:
        if self._agent_remote is None:
            source = agent_source()
            remote = posixpath.join(self.profile.run.workdir, "agent", source.name)
            self.transport.push(source, remote)
            self._agent_remote = remote
        return self._agent_remote

    def push_artifact(self, artifact: LocalArtifact) -> tuple[str, bool]:
        """Push every file of the artifact; (remote folder, whether all were already there)."""
        remote_dir = posixpath.join(self.profile.run.workdir, "artifacts", artifact.sha256[:16])
        if self._pushed.get(artifact.sha256) == remote_dir:
            return remote_dir, True
        all_skipped = True
        for local, sha in artifact.upload_list():
            size = local.stat().st_size
            if self.progress is not None and size >= LARGE_FILE_BYTES:
                self.progress(f"pushing the artifact: {local.name} ({size / 2**20:.1f} MiB, "
                              "skipped if the device has it)")
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
        ab_baseline: LocalArtifact | None = None,
    ) -> BenchOutcome:
        """Run one benchmark and write its record, even when the run fails.

        Raises AgentError / TransportError after the failure record is written.
        An interruption (Ctrl-C; SIGTERM under harness.interrupts) is recorded
        the same way (error kind "interrupted") and then re-raised, with the
        record's path as a note; the transport has already stopped the agent.
        Conditioning is undone and sensors are closed whatever happens, and a
        signal arriving during that and the record write waits until the record
        is on disk, so nothing measured is lost.

        ab_baseline: an interleaved A/B run: this artifact is timed alternately
        with `artifact` in the same session, and the record's "ab" object holds
        the paired comparison (regression.compare_paired); a regression fails
        the run.
        """
        settings = settings or self.profile.run
        t_start = time.perf_counter()
        base = self._base_record(artifact, name, settings, run_id)
        run = _RunState(ab_baseline=ab_baseline, benchmark=name)
        run.budgets, run.budget_sources = self._budgets(artifact, budget_overrides or {})
        try:
            self._run_agent(artifact, settings, run)
        except HarnessError as exc:
            run.failure = exc
        except KeyboardInterrupt as exc:  # interrupts.Interrupted is one too
            run.interrupted = exc
            exc.during = f"{run.stage} on {self.profile.name}"  # type: ignore[attr-defined]
        except BaseException:
            self._finish(run)
            raise
        with interrupts.deferred():
            self._finish(run)
            record = self._complete_record(base, artifact, settings, run)
            wall = time.perf_counter() - t_start
            record["harness"] = {
                "wall_s": wall,
                "agent_wall_s": run.agent_wall_s,
                "overhead_ms": (wall - run.agent_wall_s - run.sensor_wait_s) * 1000
                if run.agent_wall_s is not None else None,
                "sensor_wait_s": run.sensor_wait_s,
                "push_s": run.push_s,
                "push_skipped": run.push_skipped,
            }
            path = write_record(record, report_dir) if report_dir is not None else None
        if run.interrupted is not None:
            interrupts.note(run.interrupted, f"record: {path}" if path else "no record written "
                            "(no report folder)")
            raise run.interrupted
        if run.failure is not None:
            if path:  # same exception (type and data), its message now says where the record is
                run.failure.args = (f"{run.failure} (record: {path})",)
            raise run.failure
        return BenchOutcome(record, path)

    def _run_agent(self, artifact: LocalArtifact, settings: RunSettings, run: _RunState) -> None:
        tool = self.platform.bench_tool()  # Android's benchmark_model, the iOS bench app
        if tool is not None:
            self._run_platform_tool(tool, artifact, settings, run)
            return
        t0 = time.perf_counter()
        self._stage(run, "pushing the agent")
        agent_remote = self.ensure_agent()
        if not self._stale_checked:
            self._stage(run, "looking for a stale agent")
            self._end_stale_agent(agent_remote, run)
            self._stale_checked = True
        self._stage(run, "pushing the artifact")
        remote_dir, run.push_skipped = self.push_artifact(artifact)
        eval_remote = self._push_eval_set(artifact, run) if run.benchmark == "eval" else None
        run.push_s = time.perf_counter() - t0
        paths = self._prepare_device(run)
        sensors = run.sensors
        assert sensors is not None
        args = agent_args(remote_dir, settings) + runtime_agent_args(self.profile)
        if self.profile.emulated:  # generation timing is recorded, not gated: keep it short
            args += ["--gen-runs", "6", "--prefill-runs", "20"]
        if eval_remote is not None:  # the eval benchmark: quality, no generation timing
            args += ["--eval-file", eval_remote, "--gen-runs", "0"]
        run.stop_rule, run.stop_rule_reason = self._stop_rule(settings, run.budgets)
        if run.ab_baseline is not None:
            self._stage(run, "pushing the A/B baseline artifact")
            ab_dir, _ = self.push_artifact(run.ab_baseline)
            args += ["--ab-artifact-dir", ab_dir]
            run.stop_rule, run.stop_rule_reason = None, ("interleaved A/B: both arms run to "
                                                         "the minimums")
        if run.stop_rule is not None:
            args += ["--stop-rule", json.dumps(run.stop_rule, separators=(",", ":"))]
        args += sensors.agent_args()
        for path in paths:
            args += ["--sample-path", path]
        if paths:
            args += ["--sample-interval-ms", str(sensors.sample_interval_ms)]
        argv = sensors.agent_prefix() + self.platform.agent_argv(agent_remote, args)
        self._stage(run, "running the agent", f"timed window {settings.min_duration_s:g}-"
                    f"{settings.max_duration_s:g} s")
        warm = warm_up_judging()
        if self.transport.kind == "local" and (os.cpu_count() or 1) < 2:
            warm.join()  # one core shared with the agent: finish first, never compete
        res = self.transport.run(argv, timeout_s=settings.timeout_s)
        warm.join()
        run.agent_wall_s = res.duration_s
        run.agent_out = parse_agent_output(self.profile.name, res)
        if run.eval_set is not None:
            from harness.quality import check_device_output

            run.eval_preds, run.eval_nll = check_device_output(
                run.eval_set, run.agent_out.get("eval"),
                int(artifact.manifest.get("num_classes") or 0), self.profile.name)
        self._stage(run, "reading the device's sensors")
        run.sensor_fields = sensors.after_run(run.agent_out)

    def _prepare_device(self, run: _RunState, sensors: bool = True) -> list[str]:
        """Condition the device and (sensors) start its sensors, after the push so the
        push's heat and current are not in the window; the paths the agent samples."""
        self._stage(run, "preparing the device")
        run.conditioning = self.platform.prepare(self.transport) or {}
        run.platform_prepared = True
        if not sensors:
            return []
        run.sensors = SensorSession.for_profile(self.profile, self.transport)
        t1 = time.perf_counter()
        self._stage(run, "waiting for the device's sensors")
        paths = run.sensors.before_run()
        # cooldown and the idle-power baseline wait on purpose: not harness overhead
        run.sensor_wait_s = sensor_wait_s(run.sensors, time.perf_counter() - t1)
        return paths

    def _push_eval_set(self, artifact: LocalArtifact, run: _RunState) -> str:
        """Build the eval set (hold-out examples + the build's references) and push
        it into the work folder, hash-checked like the artifact; its remote path."""
        import tempfile

        from harness.quality import EvalSettings, build_eval_set

        self._stage(run, "building the eval set")
        es_settings = self.profile.settings.get("eval") or EvalSettings()
        run.eval_settings = es_settings
        run.eval_set = build_eval_set(artifact.manifest, es_settings.per_domain)
        sha = run.eval_set.sha256
        remote = posixpath.join(self.profile.run.workdir, "eval", sha[:16], "eval.json")
        self._stage(run, "pushing the eval set")
        with tempfile.TemporaryDirectory(prefix="gem-hil-eval-") as tmp:
            local = Path(tmp) / "eval.json"
            local.write_bytes(run.eval_set.payload())
            self.transport.push(local, remote, sha256=sha)
        return remote

    def _run_platform_tool(self, tool: str, artifact: LocalArtifact, settings: RunSettings,
                           run: _RunState) -> None:
        """A platform whose benchmark is a tool of its own (bench_tool(): Android's
        benchmark_model, the iOS bench app): the artifact is pushed as for the agent,
        the device prepared, its sensors read around the run where they apply
        (tool_reads_sensors), and the tool hands back the agent's JSON contract."""
        for asked, what, fix in (
                (run.ab_baseline is not None, "an interleaved A/B run", "drop --ab-variant"),
                (run.benchmark == "eval", "the eval benchmark",
                 "run eval on a profile whose platform runs the agent")):
            if asked:
                raise AgentError(f"{self.profile.name}: {what} needs the project's agent; "
                                 f"platform {self.platform.name!r} runs {tool} ({fix})")
        t0 = time.perf_counter()
        self._stage(run, "pushing the artifact")
        remote_dir, run.push_skipped = self.push_artifact(artifact)
        run.push_s = time.perf_counter() - t0
        # where the link's machine is not the device (a Mac), prepare only checks it
        self._prepare_device(run, sensors=self.platform.tool_reads_sensors)
        run.stop_rule, run.stop_rule_reason = None, self.platform.stop_rule_reason
        self._stage(run, f"running {tool}", f"timed window {settings.min_duration_s:g}-"
                    f"{settings.max_duration_s:g} s")
        warm = warm_up_judging()
        out = self.platform.run_tool(self.transport, artifact, remote_dir, settings,
                                     lambda step, detail: self._stage(run, step, detail))
        warm.join()
        run.agent_wall_s = out.wall_s
        run.agent_out = out.out
        if run.sensors is not None:
            self._stage(run, "reading the device's sensors")
            run.sensor_fields = run.sensors.after_run(run.agent_out)

    def _budgets(self, artifact: LocalArtifact, overrides: Mapping[str, float]
                 ) -> tuple[dict[str, float], dict[str, str]]:
        """The budgets this run is gated on (profile, then --budget), with their sources."""
        m = artifact.manifest
        budgets = dict(self.profile.budgets_for(m["model"], m["variant"]))
        sources = {k: "profile" for k in budgets}
        atol = (m.get("reference") or {}).get("atol")
        if "parity_max_abs_diff" not in budgets and atol is not None:
            # the artifact's own tolerance gates parity when the profile sets none:
            # outputs the reference disowns are a failed run, whatever the budgets
            budgets["parity_max_abs_diff"] = float(atol)
            sources["parity_max_abs_diff"] = "artifact"
        for k, v in overrides.items():
            budgets[k] = v
            sources[k] = "cli"
        return budgets, sources

    def _stop_rule(self, settings: RunSettings, budgets: Mapping[str, float]
                   ) -> tuple[dict[str, Any] | None, str]:
        """The sequential stopping rule for the agent, or None and why not."""
        from harness.stats import stop_rule

        if not settings.sequential:
            return None, "[run] sequential = false: sampling stops at the minimums"
        if self.profile.emulated:
            return None, "emulated device: timing is recorded, not gated, so nothing to decide"
        return stop_rule(budgets, settings.min_count, settings.max_count)

    def _stage(self, run: _RunState, stage: str, detail: str = "") -> None:
        """Name the step in progress: for an interruption's message, and for the
        person watching (self.progress, when a front door set one)."""
        run.stage = stage
        if self.progress is not None:
            self.progress(f"{stage} ({detail})" if detail else stage)

    def _end_stale_agent(self, agent_remote: str, run: _RunState) -> None:
        """End an agent that outlived an earlier harness (its lease says which), so it
        neither overlaps this run nor skews its numbers; the record notes it."""
        argv = self.platform.stale_agent_argv(agent_remote)
        if argv is None:
            return
        res = self.transport.run(argv, timeout_s=STALE_CHECK_TIMEOUT_S)
        lines = [ln for ln in res.stdout.splitlines() if ln.strip()]
        try:
            out = json.loads(lines[-1]) if lines else None
        except ValueError:
            out = None
        if not isinstance(out, dict) or out.get("mode") != "stop_stale":
            said = (res.stderr_tail(3) or res.stdout[-300:]).strip() or "(no output)"
            run.notes.append(f"stale-agent check failed (exit code {res.rc}): {said}")
            return
        for e in out.get("ended", []):
            run.notes.append(
                f"ended a stale agent an earlier run left running: PID {e.get('pid')} "
                f"(started {e.get('started_utc')}, {'+'.join(e.get('signals', []))}"
                f"{'' if e.get('gone') else ', STILL RUNNING'})")
        run.notes += [f"stale-agent check: {n}" for n in out.get("notes", [])]

    def _finish(self, run: _RunState) -> None:
        """Undo conditioning and restore governors; a failure here is noted, not raised
        over the run's own outcome."""
        if run.platform_prepared:
            try:
                run.platform_finish = self.platform.finish(self.transport) or {}
            except HarnessError as exc:
                run.notes.append(f"platform finish failed: {exc}")
        if run.sensors is not None:
            try:
                run.sensors.close()
            except HarnessError as exc:
                run.notes.append(f"sensor close failed: {exc}")

    def _base_record(self, artifact: LocalArtifact, name: str, settings: RunSettings,
                     run_id: str | None) -> dict[str, Any]:
        m = artifact.manifest
        return record_head(self.profile, settings, name, run_id or uuid.uuid4().hex[:12], {
            "model": m["model"], "variant": m["variant"], "format": m["format"],
            "sha256": artifact.sha256, "size_bytes": artifact.size_bytes,
            "opset": m.get("opset"), "params_total": m.get("params_total"),
            "params_active_per_token": m.get("params_active_per_token")})

    def _complete_record(self, record: dict[str, Any], artifact: LocalArtifact,
                         settings: RunSettings, run: _RunState) -> dict[str, Any]:
        p = self.profile
        out = run.agent_out
        commit, dirty = harness_git_state()
        host = (out or {}).get("host", {})
        runtime = (out or {}).get("runtime", {})
        sensor_fields = run.sensor_fields or {}
        conditioning = {**run.conditioning, **sensor_fields.get("conditioning", {})}
        if run.platform_finish:
            conditioning["finish"] = {k: v for k, v in run.platform_finish.items()
                                      if k != "sensors"}
        if run.notes:
            conditioning["notes"] = run.notes
        if (out or {}).get("scheduling"):
            conditioning["scheduling"] = out["scheduling"]  # what the agent really got
        record["environment"] = {
            "device": p.name, "os": host.get("os"), "kernel": host.get("kernel"),
            "machine": host.get("machine"), "cpu_model": host.get("cpu_model"),
            "cpu_count": host.get("cpu_count"), "runtime": p.runtime,
            "runtime_version": runtime.get("version"), "threads": settings.threads,
            "governor": host.get("governor") or conditioning.get("governor"),
            "python": host.get("python"), "boot_id": host.get("boot_id"),
            "harness_version": __version__, "harness_commit": commit, "harness_dirty": dirty,
            "host": host, "conditioning": conditioning,
            # what the runtime adapter says of itself: API, sequence bucket that ran, ...
            "runtime_detail": {k: v for k, v in runtime.items() if k not in ("name", "version")},
        }
        # where the work ran (accelerator vs CPU, fallback ops): null when nothing ran
        record["op_placement"] = (out or {}).get("op_placement")
        record["energy"] = energy_fields(sensor_fields.get("energy"), run.platform_finish, out)
        record["thermal"] = sensor_fields.get("thermal")
        platform_sensors = (run.platform_finish or {}).get("sensors")
        if platform_sensors:
            record["platform_sensors"] = platform_sensors
        if out is None:
            record.update(failed_run_fields("the run failed"),
                          error=error_fields(run.interrupted or run.failure))
            return record
        if is_summary_only(out):  # a runner without raw samples (benchmark_model)
            return self._complete_summary_record(record, artifact, run, out)
        throttled = (record["thermal"] or {}).get("throttled")
        from harness.stats import replay_stopping, summarize  # numpy: warmed up meanwhile

        validity = assess_agent_run(out, validity_bounds(p), throttled=throttled)
        samples_ms = [s / 1e6 for s in out["latency_samples_ns"]]
        kept = validity.kept_samples_ms or samples_ms
        agent_run = out.get("run") or {}
        latency = {"samples_ms": samples_ms,
                   "warmup_samples_ms": [s / 1e6 for s in out["warmup_samples_ns"]],
                   **summarize(kept, period=int(agent_run.get("input_pool_size") or 1))}
        cold = dict(out["cold_start"])
        cold["total_ms"] = cold["session_create_ms"] + cold["first_inference_ms"]
        rss_kb = out.get("peak_rss_kb")
        memory: dict[str, Any] = {
            "peak_rss_mb": rss_kb / 1024 if rss_kb is not None else None,
            "source": (out.get("peak_rss_source") or "agent VmHWM (/proc/self/status)")
            if rss_kb is not None else None}
        pss_kb = (platform_sensors or {}).get("agent_meminfo_total_pss_max_kb")
        if pss_kb is not None:
            memory["meminfo_total_pss_max_mb"] = pss_kb / 1024
        stopping = dict(out.get("stopping") or {"rule": None, "looks": []})
        stopping["stopped_by"] = agent_run.get("stopped_by")
        stopping["stopped_at_count"] = agent_run.get("count")
        if stopping.get("rule"):
            stopping["replay"] = replay_stopping(
                samples_ms, stopping,
                agent_run.get("count") if agent_run.get("stopped_by") == "decided" else None)
        else:
            stopping["why_not_sequential"] = run.stop_rule_reason
        if run.eval_set is not None and run.eval_preds is not None:
            from harness.quality import EvalSettings, score

            record["quality"] = score(run.eval_set, run.eval_preds, run.eval_nll,
                                      run.eval_settings or EvalSettings(), out.get("eval") or {})
        record.update({
            "generation": generation_fields(out.get("generation"), summarize),
            "latency_ms": latency,
            "cold_start_ms": cold,
            "memory": memory,
            "parity": out["parity"],
            "validity": validity.as_record(),
            "stopping": stopping,
            "contention": out.get("contention"),
            "error": None,
        })
        measurements = record_measurements(record)
        verdicts = evaluate(run.budgets, measurements, run.budget_sources, emulated=p.emulated,
                            emulator_budgets=p.budgets.get("emulator"),
                            stopped_by=agent_run.get("stopped_by"),
                            unstable=not validity.stable,
                            inapplicable={**not_applicable(artifact.manifest.get("format")),
                                          **benchmark_scope(run.benchmark)})
        record["verdicts"] = [v.as_dict() for v in verdicts]
        record["overall_verdict"] = overall(verdicts)
        if out.get("ab") and run.ab_baseline is not None:
            record["ab"] = ab_fields(out["ab"], run.ab_baseline, samples_ms)
            ab_verdict = record["ab"]["comparison"]["verdict"]
            if ab_verdict == "regressed":
                record["overall_verdict"] = "fail"
            elif ab_verdict == "inconclusive" and record["overall_verdict"] == "pass":
                record["overall_verdict"] = "inconclusive"
        if not record["validity"]["valid"] and record["overall_verdict"] == "pass":
            record["overall_verdict"] = "inconclusive"
        if run.interrupted is not None:  # measured in full, then stopped: keep both facts
            record["error"] = error_fields(run.interrupted)
            record["overall_verdict"] = "error"
        return record

    def _complete_summary_record(self, record: dict[str, Any], artifact: LocalArtifact,
                                 run: _RunState, out: dict[str, Any]) -> dict[str, Any]:
        """A summary-only run's record (harness/summary_record.py): what the runner
        measured, budgets needing raw samples or reference inputs inconclusive."""
        runner = str(out.get("runner") or "external runner")
        record["environment"]["runner"] = runner
        record.update(summary_fields(out, runner))
        measurements = record_measurements(record)
        mean = record["latency_summary_ms"]["mean_ms"]
        measurements["latency_mean_ms"] = Measurement(mean, None, None)  # no interval known
        verdicts = evaluate(run.budgets, measurements, run.budget_sources,
                            emulated=self.profile.emulated,
                            emulator_budgets=self.profile.budgets.get("emulator"),
                            inapplicable=not_applicable(artifact.manifest.get("format")))
        record["verdicts"] = explain_inconclusive([v.as_dict() for v in verdicts], runner)
        verdict = overall(record["verdicts"])
        record["overall_verdict"] = "inconclusive" if verdict == "pass" else verdict
        return record


@dataclass
class _RunState:
    """What one benchmark run gathered so far; a failure keeps what was gathered."""

    push_s: float = 0.0
    push_skipped: bool = False
    agent_wall_s: float | None = None
    sensor_wait_s: float = 0.0
    agent_out: dict[str, Any] | None = None
    failure: HarnessError | None = None
    #: Ctrl-C / SIGTERM (harness.interrupts), re-raised once the record is written
    interrupted: KeyboardInterrupt | None = None
    #: what the run was doing, for an interruption's message
    stage: str = "starting"
    conditioning: dict[str, Any] = field(default_factory=dict)
    platform_prepared: bool = False
    platform_finish: dict[str, Any] | None = None
    sensors: SensorSession | None = None
    sensor_fields: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    budgets: dict[str, float] = field(default_factory=dict)
    budget_sources: dict[str, str] = field(default_factory=dict)
    stop_rule: dict[str, Any] | None = None
    stop_rule_reason: str = "the run failed before the agent started"
    ab_baseline: LocalArtifact | None = None
    #: the benchmark's name; "eval" also runs the evaluation set (harness/quality.py)
    benchmark: str = "latency"
    eval_set: Any = None  # harness.quality.EvalSet
    eval_settings: Any = None  # harness.quality.EvalSettings
    eval_preds: list[int] | None = None
    eval_nll: list[tuple[float, int]] | None = None


_WARM_UP: threading.Thread | None = None


def record_head(profile: DeviceProfile, settings: RunSettings, name: str, run_id: str,
                artifact: dict[str, Any]) -> dict[str, Any]:
    """What every record says of itself first: ids, device, artifact, benchmark.
    Shared by a run's record and the failure record of a run that never started."""
    p = profile
    return {
        "schema_version": SCHEMA_VERSION,
        "record_id": uuid.uuid4().hex,
        "run_id": run_id,
        "created_utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "device": {"name": p.name, "transport": p.transport, "platform": p.platform,
                   "runtime": p.runtime, "emulated": p.emulated, "hardware": p.hardware},
        "artifact": artifact,
        "benchmark": {"name": name, "seq_len_tokens": settings.seq_len_tokens, "batch": 1,
                      "threads": settings.threads, "warmup_count": settings.warmup_count,
                      "min_count": settings.min_count, "min_duration_s": settings.min_duration_s,
                      "max_count": settings.max_count, "max_duration_s": settings.max_duration_s},
    }


def failed_run_fields(reason: str) -> dict[str, Any]:
    """The measurement fields of a run that measured nothing: null, never a guess."""
    return {
        "latency_ms": None, "cold_start_ms": None, "parity": None,
        "memory": {"peak_rss_mb": None, "source": None},
        "validity": {"valid": False, "reasons": [reason], "count": None, "duration_s": None,
                     "stopped_by": None},
        "verdicts": [], "overall_verdict": "error",
    }


def warm_up_judging() -> threading.Thread:
    """Import what judging a run needs (numpy for the statistics, the record's
    schema validator) in a thread, once per process, while the harness waits on
    the agent: these imports were the largest part of its overhead per run.
    join() before judging; it is free once done."""
    global _WARM_UP
    if _WARM_UP is not None:
        return _WARM_UP

    def work() -> None:
        import harness.stats  # noqa: F401
        from harness.record import validator

        validator()

    _WARM_UP = threading.Thread(target=work, name="gem-hil-warm-up", daemon=True)
    _WARM_UP.start()
    return _WARM_UP


def validity_bounds(profile: DeviceProfile) -> ValidityBounds:
    """The profile's bounds. On an emulated device the stability checks (spread, drift,
    background load, warm-up) only report: its timings are recorded, not gated, and an
    emulator's jitter says nothing about the board. LoadGen's minimums still apply; a key
    set in the profile's own [validity] table wins."""
    bounds = ValidityBounds.from_profile(profile)
    if profile.emulated:
        relaxed: dict[str, float] = {k: math.inf for k in (
            "max_spread", "max_trend", "max_background_cpu_cores")}
        relaxed["max_warmup_exclusion"] = 1.0
        relaxed = {k: v for k, v in relaxed.items() if k not in profile.validity}
        bounds = replace(bounds, **relaxed)
    return bounds


def sensor_wait_s(sensors: SensorSession, elapsed_s: float) -> float:
    """Time before_run spent waiting on purpose (cooldown, idle baseline)."""
    waited = 0.0
    if sensors.cooldown_result is not None:
        waited += float(sensors.cooldown_result.as_dict().get("waited_s") or 0.0)
    if sensors.idle is not None:
        waited += float(getattr(sensors.idle, "duration_s", 0.0) or 0.0)
    return min(waited, elapsed_s)


def energy_fields(sensor_energy: dict[str, Any] | None, platform_finish: dict[str, Any] | None,
                  out: dict[str, Any] | None) -> dict[str, Any]:
    """The record's energy object: the sysfs sensor session's figure when it measured
    one; else the platform's before/after meter reading, which covers the whole agent
    process (start-up included), so it is kept as window energy and NOT divided into
    a per-inference figure."""
    energy = dict(sensor_energy or {"energy_per_inference_mj": None, "sensor": None,
                                    "status": "no_sensor", "note": "no sensor session"})
    meter = ((platform_finish or {}).get("sensors") or {}).get("energy") or {}
    if energy.get("energy_per_inference_mj") is None and meter.get("total_mj") is not None:
        energy.update({
            "sensor": meter.get("source"),
            "process_energy_mj": meter["total_mj"],
            "process_window_s": meter.get("window_s"),
            "rails_mj": meter.get("rails_mj"),
            "note": "energy meter read before and after the agent process: includes "
                    "runtime start-up and reference checks, so no per-inference figure "
                    "is derived from it",
        })
    return energy


def ab_fields(ab: Mapping[str, Any], baseline: LocalArtifact, candidate_ms: list[float]
              ) -> dict[str, Any]:
    """The record's "ab" object: the baseline arm's samples and the paired comparison."""
    from harness.regression import compare_paired

    base_ms = [s / 1e6 for s in ab["baseline_samples_ns"]]
    m = baseline.manifest
    return {
        "baseline_artifact": {"model": m["model"], "variant": m["variant"],
                              "format": m["format"], "sha256": baseline.sha256},
        "baseline_samples_ms": base_ms,
        "baseline_parity": ab.get("baseline_parity"),
        "baseline_runtime": ab.get("runtime"),
        "order": ab.get("order"),
        "comparison": compare_paired(base_ms, candidate_ms).as_dict(),
    }


def _throughput(step_summary: Mapping[str, Any]) -> dict[str, Any]:
    """Decode throughput = 1000 / mean per-token latency (ms), with the interval of
    that mean turned over: it rests on every decode step, not on a few runs'
    rates, whose median interval stays unbounded for a handful of drifting runs."""
    lo, hi = step_summary["mean_ci_ms"]
    return {"throughput_per_s": 1000.0 / step_summary["mean_ms"],
            "throughput_ci_per_s": [1000.0 / hi if hi else None,
                                    1000.0 / lo if lo and lo > 0 else None]}


def generation_fields(gen: dict[str, Any] | None, summarize: Any) -> dict[str, Any] | None:
    """The record's ``generation`` block from the agent's pp/tg runs (None when
    the artifact has no generation graphs): raw samples in ms kept, percentiles
    with CIs (harness.stats.summarize), tokens/s as the median over runs with
    its CI. Tokens are the model's tokens (GEM: bytes), named in ``tokens``."""
    if not gen:
        return None
    ttft = [x / 1e6 for x in gen["prefill"]["ttft_samples_ns"]]
    step = [x / 1e6 for x in gen["decode"]["token_samples_ns"]]
    rate = [float(x) for x in gen["decode"]["tokens_per_s_samples"]]
    rate_s = summarize(rate)
    step_s = summarize(step)
    return {
        "tokens": gen.get("tokens", "tokens"),
        "parity": gen["parity"],
        "runs": gen.get("runs"),
        "prefill_runs": gen.get("prefill_runs"),
        "prefill": {"run": gen["prefill"]["run"], "prompt_tokens": gen["prefill"]["prompt_tokens"],
                    "ttft_ms": {"samples_ms": ttft, **summarize(ttft)}},
        "decode": {"run": gen["decode"]["run"], "prompt_tokens": gen["decode"]["prompt_tokens"],
                   "new_tokens": gen["decode"]["new_tokens"],
                   "token_latency_ms": {"samples_ms": step, **step_s},
                   "tokens_per_s": {"samples_per_s": rate, "median_per_s": rate_s["p50_ms"],
                                    "median_ci_per_s": rate_s["p50_ci_ms"],
                                    **_throughput(step_s)}},
        "kv_cache_mb": gen["kv_cache_bytes"] / (1024 * 1024),
    }


def agent_args(remote_dir: str, s: RunSettings) -> list[str]:
    return ["--artifact-dir", remote_dir, "--seq-len-tokens", str(s.seq_len_tokens),
            "--threads", str(s.threads), "--warmup-count", str(s.warmup_count),
            "--min-count", str(s.min_count), "--min-duration-s", str(s.min_duration_s),
            "--max-count", str(s.max_count), "--max-duration-s", str(s.max_duration_s),
            "--input-pool-size", str(s.input_pool_size)]


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
            stderr_tail=tail, exit_code=res.rc,
        )
    if not parsed.get("ok"):
        err = parsed.get("error", {})
        raise AgentError(
            f"{device}: the agent failed ({err.get('kind', '?')}, exit code {res.rc}): "
            f"{err.get('message', '')}"
            + (f"\nstderr tail:\n{tail}" if tail else "")
            + (f"\nagent traceback:\n{err['traceback_tail']}" if err.get("traceback_tail")
               else ""),
            stderr_tail=tail, exit_code=res.rc,
        )
    for key in ("latency_samples_ns", "warmup_samples_ns", "cold_start", "parity", "run"):
        if key not in parsed:
            raise AgentError(f"{device}: the agent's record lacks {key!r}; agent and harness "
                             "versions differ? (push the agent again)")
    if not parsed["latency_samples_ns"]:
        raise AgentError(f"{device}: the agent returned no latency samples")
    return parsed


def error_fields(exc: BaseException | None) -> dict[str, Any]:
    if isinstance(exc, KeyboardInterrupt):
        return {"kind": "interrupted", "message": interrupts.describe(exc), "exit_code": None,
                "stderr_tail": "", "signal": interrupts.signal_name(interrupts.signum_of(exc))}
    text = str(exc) if exc else "unknown failure"
    kind = "transport" if isinstance(exc, TransportError) else \
        "agent" if isinstance(exc, AgentError) else type(exc).__name__
    return {"kind": kind, "message": text, "exit_code": getattr(exc, "exit_code", None),
            "stderr_tail": getattr(exc, "stderr_tail", "")}
