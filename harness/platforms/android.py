"""Android phones (Pixel 6 first): conditioning, fingerprint and sensors.

The engine calls, around each benchmark run (see harness/bench.py):
  prepare(transport)  -> conditioning done + device fingerprint; reads the
                         ODPM energy meter and starts the host-side sampler
  agent_argv(...)     -> the agent command, pinned with taskset if configured
  finish(transport)   -> stops the sampler, reads the energy meter again,
                         undoes conditioning; returns {"sensors": ..., ...}

Sensors are sampled FROM THE HOST during the run over a second ADB connection
(adbd serves several; over USB adb-shell holds one, so sampling during the run
is then skipped and said so). Energy needs no sampling: the ODPM counters are
cumulative, so after - before is exact. Every number carries its unit in its
field name; a sensor that fails is recorded with its error, never guessed.

Profile keys used (all optional; prefixed android_ so the generic sensor
session, which owns the other keys of these tables, leaves them to us; the
classes below register them, and the profile loader checks them):
  [conditioning] android_cooldown_max_skin_c, android_cooldown_timeout_s,
                 android_force_idle, android_taskset_mask (hex, e.g. "c0" =
                 the two Cortex-X1 on Tensor), android_screen_off,
                 android_battery_unplug
  [sensors]      android_interval_s, android_meminfo_every,
                 android_battery_current_sign (+1/-1)
  [run]          android_runner ("agent" | "benchmark_model"),
                 android_benchmark_model (host path of LiteRT's benchmark_model)

Runners: "agent" (the default) runs firmware/agent/gem_agent.py with the
phone's Python; "benchmark_model" pushes LiteRT's stock benchmark_model binary
(Android arm64, from the path the profile names) and runs the artifact's
.tflite with it. benchmark_model keeps only summary statistics of its timed
loop (count/min/max/avg/std in us; its flags offer per-op profiles, not
per-run times), so its record holds those as latency_summary_ms with no raw
samples, and every budget that needs raw samples is inconclusive.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import ConfigError, HarnessError
from harness.platforms.base import Platform, ToolRun
from harness.registry import TableContext, registry, setting
from harness.sensors.android_memory import (
    AndroidParseError,
    parse_dumpsys_meminfo,
    parse_proc_status,
)
from harness.sensors.android_power import (
    POWER_STATS_COMMAND,
    BatteryReading,
    energy_delta_mj,
    parse_power_stats,
    parse_power_supply_uevent,
    summarize_battery,
)
from harness.sensors.android_thermal import (
    CPUFREQ_SCRIPT,
    TYPE_SKIN,
    ZONES_SCRIPT,
    hottest_of_type,
    parse_cpufreq,
    parse_thermalservice,
    parse_zones,
)

if TYPE_CHECKING:
    from harness.artifacts import LocalArtifact
    from harness.profiles import DeviceProfile, RunSettings
    from harness.transports.base import Transport

SEP = "@@GEMHIL@@"
BENCHMARK_MODEL_CACHE = Path("~/.cache/gem-hil/android/benchmark_model")
AGENT_PATTERN = "[g]em_agent.py"  # the bracket keeps pgrep from matching its own shell


@registry.table("conditioning", owner="android platform", prefix="android_",
                help="Android conditioning before a run (undone after it).")
@dataclass(frozen=True, kw_only=True)
class Conditioning:
    cooldown_max_skin_c: float | None = setting(
        None, help="wait until VIRTUAL-SKIN (dumpsys thermalservice) is at most this (C)")
    cooldown_timeout_s: float = setting(300.0, minimum=0, help="give up waiting after this")
    force_idle: bool = setting(False, help="dumpsys deviceidle force-idle during the run")
    taskset_mask: str | None = setting(None, help="hex CPU mask the agent is pinned to, e.g. "
                                       "\"c0\" = CPUs 6-7", example='"c0"')
    screen_off: bool = setting(False, help="turn the screen off during the run")
    battery_unplug: bool = setting(False, help="dumpsys battery unplug during the run")

    def check(self, ctx: TableContext) -> None:
        if self.taskset_mask is not None:
            try:
                int(self.taskset_mask, 16)
            except ValueError:
                raise ctx.error("android_taskset_mask", f"{self.taskset_mask!r} is not a hex "
                                "CPU mask (e.g. \"c0\" for CPUs 6-7)") from None


@registry.table("sensors", owner="android platform", prefix="android_",
                help="Android sensors sampled from the host during the run.")
@dataclass(frozen=True, kw_only=True)
class SensorSettings:
    interval_s: float = setting(0.5, minimum=0.05, help="host-side sampling period")
    meminfo_every: int = setting(4, minimum=1, help="dumpsys meminfo every N samples")
    battery_current_sign: int | None = setting(None, choices=(1, -1), help="+1 or -1: the "
                                               "sign of current_now while discharging")


RUNNERS = ("agent", "benchmark_model")


@registry.table("run", owner="android platform", prefix="android_",
                help="Which runner times the model on an Android device.")
@dataclass(frozen=True, kw_only=True)
class RunnerSettings:
    runner: str = setting("agent", choices=RUNNERS, help="\"agent\": the project's agent "
                          "with [run] python; \"benchmark_model\": LiteRT's benchmark_model "
                          "binary on the .tflite artifact (summary statistics only, no raw "
                          "samples: percentile budgets are inconclusive)")
    benchmark_model: str | None = setting(
        None, help="host path of the Android arm64 benchmark_model binary, pushed to the "
                   "device (never downloaded; firmware/android/README.md says where to get "
                   "it); ~ expanded, ./ or ../ relative to the profile's folder; needed "
                   "with android_runner = \"benchmark_model\"",
        example='"~/.cache/gem-hil/android/benchmark_model"')

    def check(self, ctx: TableContext) -> RunnerSettings:
        if self.runner != "benchmark_model":
            if self.benchmark_model is not None:
                raise ctx.error("android_benchmark_model", "is only used with android_runner "
                                "= \"benchmark_model\"; set that or remove this key")
            return self
        if ctx.raw.get("runtime") != "litert":
            raise ctx.error("android_runner", "benchmark_model runs .tflite artifacts: set "
                            f"runtime = \"litert\" (the profile says {ctx.raw.get('runtime')!r})")
        if not self.benchmark_model:
            raise ctx.error("android_benchmark_model", "android_runner = \"benchmark_model\" "
                            "needs the binary's host path, e.g. android_benchmark_model = "
                            '"~/.cache/gem-hil/android/benchmark_model" '
                            "(firmware/android/README.md: how to obtain it)")
        path = Path(self.benchmark_model).expanduser()
        if self.benchmark_model.startswith(("./", "../")):
            path = ctx.file.parent / self.benchmark_model
        path = path.resolve()
        if ctx.check_files and not path.is_file():
            raise ctx.error("android_benchmark_model", f"{path} does not exist; put the Android "
                            "arm64 benchmark_model there (firmware/android/README.md) or fix "
                            "the path")
        return dataclasses.replace(self, benchmark_model=str(path))


class AndroidSampler:
    """Background thread reading battery, thermal, cpufreq and the agent's
    memory through its own link, every interval_s."""

    def __init__(self, link: Transport, settings: SensorSettings,
                 pattern: str = AGENT_PATTERN, max_lifetime_s: float = 3600.0) -> None:
        self.link = link
        # Bounded even if nobody calls stop() (a run that failed before finish()).
        self.max_lifetime_s = max_lifetime_s
        self.settings = settings
        self.pattern = pattern
        self.battery: list[BatteryReading] = []
        self.temps_c: dict[str, list[float]] = {}
        self.freqs_khz: dict[str, list[int]] = {}
        self.vm_hwm_kb: int | None = None
        self.meminfo_pss_kb: list[int] = []
        self.errors: list[str] = []
        self.ticks = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="android-sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        with contextlib.suppress(Exception):
            self.link.close()

    def _note(self, msg: str) -> None:
        if msg not in self.errors and len(self.errors) < 20:
            self.errors.append(msg)

    def _loop(self) -> None:
        try:
            self._sample_until_stopped()
        finally:
            with contextlib.suppress(Exception):
                self.link.close()

    def _sample_until_stopped(self) -> None:
        script = (f"cat /sys/class/power_supply/battery/uevent 2>/dev/null; echo {SEP}; "
                  f"{ZONES_SCRIPT}; echo {SEP}; {CPUFREQ_SCRIPT}; echo {SEP}; "
                  f"pid=$(pgrep -f -n -- '{self.pattern}'); "
                  'if [ -n "$pid" ]; then echo "pid=$pid"; cat /proc/$pid/status; fi')
        failures = 0
        ends = time.monotonic() + self.max_lifetime_s
        while not self._stop.is_set() and time.monotonic() < ends:
            t0 = time.monotonic()
            try:
                self.sample_once(script)
                failures = 0
            except HarnessError as exc:
                self._note(str(exc))
                failures += 1
                if failures >= 3:  # the link is gone: stop rather than spin
                    self._note("sampling stopped after 3 consecutive failures")
                    return
            self.ticks += 1
            self._stop.wait(max(0.0, self.settings.interval_s - (time.monotonic() - t0)))

    def sample_once(self, script: str) -> None:
        res = self.link.run(["sh", "-c", script], timeout_s=30)
        parts = res.stdout.split(SEP)
        if len(parts) != 4:
            raise AndroidParseError("sensor sample script", "missing section separators",
                                    res.stdout)
        battery, zones, cpus, proc = parts
        for parse, text in ((self._battery, battery), (self._zones, zones),
                            (self._cpus, cpus), (self._proc, proc)):
            try:
                parse(text)
            except AndroidParseError as exc:
                self._note(str(exc))

    def _battery(self, text: str) -> None:
        if text.strip():
            self.battery.append(parse_power_supply_uevent(text,
                                "cat /sys/class/power_supply/battery/uevent"))

    def _zones(self, text: str) -> None:
        for name, c in parse_zones(text, "cat /sys/class/thermal/thermal_zone*/temp").items():
            self.temps_c.setdefault(name, []).append(c)

    def _cpus(self, text: str) -> None:
        freqs, _ = parse_cpufreq(text, "cat cpu*/cpufreq/scaling_cur_freq")
        for cpu, khz in freqs.items():
            self.freqs_khz.setdefault(cpu, []).append(khz)

    def _proc(self, text: str) -> None:
        text = text.strip()
        if not text.startswith("pid="):
            return
        first, _, rest = text.partition("\n")
        pid = first[4:].strip()
        status = parse_proc_status(rest, f"cat /proc/{pid}/status")
        self.vm_hwm_kb = max(self.vm_hwm_kb or 0, status["vm_hwm_kb"])
        if self.ticks % self.settings.meminfo_every == 0:
            cmd = ["dumpsys", "meminfo", pid]
            out = self.link.run(cmd, timeout_s=30).stdout
            with contextlib.suppress(AndroidParseError):  # the process may just have ended
                self.meminfo_pss_kb.append(parse_dumpsys_meminfo(out, " ".join(cmd)).total_pss_kb)

    def summary(self) -> dict[str, Any]:
        return {
            "samples": self.ticks,
            "interval_s": self.settings.interval_s,
            "agent_vm_hwm_kb": self.vm_hwm_kb,
            "agent_meminfo_total_pss_max_kb": max(self.meminfo_pss_kb, default=None),
            "thermal_max_c": {k: max(v) for k, v in self.temps_c.items()},
            "thermal_end_c": {k: v[-1] for k, v in self.temps_c.items()},
            "cpufreq_mean_khz": {k: sum(v) / len(v) for k, v in self.freqs_khz.items()},
            "battery": summarize_battery(self.battery, self.settings.battery_current_sign,
                                         self.settings.interval_s),
            "errors": self.errors,
        }


class AndroidPlatform(Platform):
    name = "android"

    def __init__(self, profile: DeviceProfile) -> None:
        super().__init__(profile)
        # checked when the profile was loaded (registered below as android_* keys)
        self.conditioning: Conditioning = profile.settings["conditioning.android"]
        self.sensor_settings: SensorSettings = profile.settings["sensors.android"]
        self.runner_settings: RunnerSettings = profile.settings["run.android"]
        self._sampler: AndroidSampler | None = None
        self._energy_before: dict[str, float] | None = None
        self._energy_t0 = 0.0
        self._done: list[str] = []
        self._sensor_notes: list[str] = []

    # -- fingerprint ----------------------------------------------------

    def fingerprint(self, transport: Transport) -> dict[str, Any]:
        props = ("ro.build.fingerprint", "ro.build.version.sdk", "ro.build.version.release",
                 "ro.product.model", "ro.product.device", "ro.soc.model", "ro.board.platform")
        script = "; ".join(f"getprop {p}" for p in props) + "; uname -r; " + CPUFREQ_SCRIPT
        res = transport.run(["sh", "-c", script], timeout_s=30)
        lines = res.stdout.splitlines()
        fp: dict[str, Any] = dict(zip((p.replace("ro.", "").replace(".", "_") for p in props),
                                      lines[: len(props)], strict=False))
        fp["kernel"] = lines[len(props)] if len(lines) > len(props) else None
        with contextlib.suppress(AndroidParseError):
            _, govs = parse_cpufreq("\n".join(lines[len(props) + 1:]))
            fp["governors"] = sorted(set(govs.values()))
        sdk = fp.get("build_version_sdk")
        fp["sdk_level"] = int(sdk) if sdk and sdk.isdigit() else None
        return fp

    # -- conditioning ---------------------------------------------------

    def _cooldown(self, transport: Transport) -> dict[str, Any]:
        c = self.conditioning
        assert c.cooldown_max_skin_c is not None
        deadline = time.monotonic() + c.cooldown_timeout_s
        waited = 0.0
        t0 = time.monotonic()
        while True:
            out = transport.run(["dumpsys", "thermalservice"], timeout_s=30).stdout
            skin = hottest_of_type(parse_thermalservice(out), TYPE_SKIN)
            if skin is None or skin <= c.cooldown_max_skin_c or time.monotonic() > deadline:
                waited = time.monotonic() - t0
                return {"skin_c": skin, "max_skin_c": c.cooldown_max_skin_c,
                        "waited_s": round(waited, 1),
                        "reached": skin is not None and skin <= c.cooldown_max_skin_c}
            time.sleep(5.0)

    def prepare(self, transport: Transport) -> dict[str, Any]:
        c = self.conditioning
        steps: dict[str, Any] = {}
        self._done = []
        if c.cooldown_max_skin_c is not None:
            steps["cooldown"] = self._cooldown(transport)
        if c.screen_off:
            transport.run(["input", "keyevent", "KEYCODE_SLEEP"], timeout_s=30)
            steps["screen_off"] = True
            self._done.append("screen_off")
        if c.battery_unplug:
            transport.run(["dumpsys", "battery", "unplug"], timeout_s=30)
            steps["battery_unplug"] = True
            self._done.append("battery_unplug")
        if c.force_idle:
            out = transport.run(["dumpsys", "deviceidle", "force-idle"], timeout_s=30).stdout
            steps["force_idle"] = out.strip() or True
            self._done.append("force_idle")
        if c.taskset_mask:
            steps["taskset_mask"] = c.taskset_mask
        result: dict[str, Any] = {"platform": "android", "steps": steps,
                                  "fingerprint": self.fingerprint(transport)}
        self._start_sensors(transport)
        return result

    def agent_argv(self, agent_remote: str, args: Sequence[str]) -> list[str]:
        argv = [self.profile.run.python, agent_remote, *args]
        if self.conditioning.taskset_mask:
            argv = ["taskset", self.conditioning.taskset_mask, *argv]
        return argv

    # -- sensors --------------------------------------------------------

    def read_energy_mws(self, transport: Transport) -> dict[str, float]:
        out = transport.run(POWER_STATS_COMMAND.split(), timeout_s=30).stdout
        return parse_power_stats(out, POWER_STATS_COMMAND)

    def _start_sensors(self, transport: Transport) -> None:
        self._sensor_notes = []
        try:
            self._energy_before = self.read_energy_mws(transport)
        except AndroidParseError as exc:
            self._energy_before = None
            self._sensor_notes.append(str(exc))
        self._energy_t0 = time.monotonic()
        clone = getattr(transport, "clone", None)
        if clone is None:
            self._sensor_notes.append("sampling during the run needs a second link; this "
                                      "transport has one (energy is before/after only)")
            return
        try:
            link = clone()
        except HarnessError as exc:
            self._sensor_notes.append(f"no second link for sampling: {exc}")
            return
        if self._sampler is not None:  # a previous run failed before finish()
            self._sampler.stop()
        # the process whose memory is sampled: the agent, or benchmark_model
        pattern = "[b]enchmark_model" if self.bench_tool() else AGENT_PATTERN
        self._sampler = AndroidSampler(link, self.sensor_settings, pattern=pattern,
                                       max_lifetime_s=self.profile.run.timeout_s + 60)
        self._sampler.start()

    def finish(self, transport: Transport) -> dict[str, Any]:
        sensors: dict[str, Any] = {}
        window_s = time.monotonic() - self._energy_t0
        if self._sampler is not None:
            self._sampler.stop()
            sensors.update(self._sampler.summary())
            self._sampler = None
        energy: dict[str, Any] = {"source": None, "window_s": round(window_s, 3)}
        if self._energy_before is not None:
            try:
                rails = energy_delta_mj(self._energy_before, self.read_energy_mws(transport))
                energy.update({"source": "odpm " + POWER_STATS_COMMAND,
                               "rails_mj": rails, "total_mj": sum(rails.values())})
            except (AndroidParseError, ValueError) as exc:
                self._sensor_notes.append(f"energy: {exc}")
        if energy["source"] is None and sensors.get("battery", {}).get("energy_mj") is not None:
            energy.update({"source": "battery current_now x voltage_now",
                           "total_mj": sensors["battery"]["energy_mj"]})
        sensors["energy"] = energy
        sensors["notes"] = self._sensor_notes
        undone = self._undo(transport)
        return {"sensors": sensors, "undone": undone}

    # -- TFLite benchmark_model runner ----------------------------------

    @staticmethod
    def find_benchmark_model(explicit: str | None = None) -> Path:
        """The Android arm64 benchmark_model binary: explicit path, else
        $GEM_HIL_BENCHMARK_MODEL, else the cache folder. Never downloaded."""
        import os

        raw = explicit or os.environ.get("GEM_HIL_BENCHMARK_MODEL") or str(BENCHMARK_MODEL_CACHE)
        path = Path(raw).expanduser()
        if not path.is_file():
            raise ConfigError(f"TFLite benchmark_model not found at {path}; obtain the Android "
                              "arm64 build (firmware/android/README.md) and put it there or set "
                              "GEM_HIL_BENCHMARK_MODEL")
        return path

    def run_benchmark_model(self, transport: Transport, binary: Path, model_remote: str,
                            extra: Sequence[str] = (), settings: RunSettings | None = None
                            ) -> dict[str, Any]:
        """Push benchmark_model (skipped when present), run it on model_remote
        with the run settings' stopping rule, and return agent-contract fields."""
        import posixpath

        from harness.errors import AgentError
        from harness.platforms import android_benchmark_model as bm

        r = settings or self.profile.run
        remote_bin = posixpath.join(r.workdir, "bin", "benchmark_model")
        transport.push(binary, remote_bin)
        transport.run(["chmod", "755", remote_bin], timeout_s=30)
        argv = bm.build_argv(remote_bin, model_remote, r.threads, r.warmup_count, r.min_count,
                             r.min_duration_s, r.max_duration_s, extra)
        if self.conditioning.taskset_mask:
            argv = ["taskset", self.conditioning.taskset_mask, *argv]
        res = transport.run(argv, timeout_s=r.timeout_s)
        text = res.stdout + res.stderr
        try:
            result = bm.parse_output(text, " ".join(argv[:3]))
        except AndroidParseError as exc:
            raise AgentError(f"{self.profile.name}: benchmark_model failed (rc={res.rc}): "
                             f"{exc}", stderr_tail=res.stderr_tail(20), exit_code=res.rc
                             ) from None
        out = bm.to_agent_output(result)
        out["wall_s"] = res.duration_s
        return out

    # -- the runner the profile chose ([run] android_runner) --------------

    def bench_tool(self) -> str | None:
        """benchmark_model when [run] android_runner chose it, else None (the agent)."""
        return "benchmark_model" if self.runner_settings.runner == "benchmark_model" else None

    def run_tool(self, transport: Transport, artifact: LocalArtifact, remote_dir: str,
                 settings: RunSettings, stage: Callable[[str, str], None]) -> ToolRun:
        """Time the pushed artifact with benchmark_model: its .tflite, the signature
        of the smallest sequence bucket that holds [run] seq_len_tokens, integer
        inputs drawn by the tool from the byte range (it cannot read our reference
        inputs, so parity is not checked: null in the record)."""
        import posixpath

        from harness.errors import AgentError
        from harness.platforms import android_benchmark_model as bm

        manifest = artifact.manifest
        if manifest.get("format") != "tflite":
            raise AgentError(f"{self.profile.name}: android_runner = \"benchmark_model\" runs "
                             f".tflite artifacts, this one is {manifest.get('format')!r}; run "
                             "with --gem-format tflite or set android_runner = \"agent\"")
        path = self.runner_settings.benchmark_model
        if path is None:  # checked at load; a profile built in code may skip that
            raise ConfigError(f"{self.profile.name}: [run] android_benchmark_model is not set")
        binary = self.find_benchmark_model(path)
        buckets = sorted(int(b) for b in manifest.get("seq_buckets") or [])
        bucket = next((b for b in buckets if b >= settings.seq_len_tokens), None)
        if bucket is None:
            raise AgentError(f"{self.profile.name}: [run] seq_len_tokens = "
                             f"{settings.seq_len_tokens} exceeds the artifact's largest "
                             f"sequence bucket ({buckets[-1] if buckets else 'none'})")
        signature = f"seq_{bucket}"
        model_remote = posixpath.join(remote_dir, str(manifest["entrypoint"]))
        high = int(manifest.get("vocab_size", 256)) - 1
        extra = bm.input_flags(signature, "input_ids", 0, min(high, 255))
        out = self.run_benchmark_model(transport, binary, model_remote, extra, settings)
        out["runtime"].update({
            "api": "benchmark_model (classic Interpreter, XNNPACK)",
            "bucket": {"signature": signature, "requested_tokens": settings.seq_len_tokens,
                       "padded_tokens": bucket,
                       "input": "benchmark_model's generated input: random bytes 0-"
                                f"{min(high, 255)} over all {bucket} positions (no padding)"}})
        out["op_placement"] = bm.op_placement(out)
        return ToolRun(out=out, wall_s=float(out.pop("wall_s")))

    def _undo(self, transport: Transport) -> list[str]:
        undo = {"force_idle": ["dumpsys", "deviceidle", "unforce"],
                "battery_unplug": ["dumpsys", "battery", "reset"],
                "screen_off": ["input", "keyevent", "KEYCODE_WAKEUP"]}
        done = []
        for step in reversed(self._done):
            with contextlib.suppress(HarnessError):
                transport.run(undo[step], timeout_s=30)
                done.append(step)
        self._done = []
        return done
