"""Everything sensor-related around one agent run, in two calls for the engine.

    session = SensorSession.for_profile(profile, transport)
    paths = session.before_run()        # condition, cool down, snapshot, idle baseline
    out = run_agent(..., --sample-path P for P in paths,
                    --sample-interval-ms session.sample_interval_ms)
    fields = session.after_run(out)     # {"energy": ..., "thermal": ..., "conditioning": ...}
    session.close()                     # restore the governor it changed

The order inside before_run matters: the governor is set first (it changes
idle power and clocks), cooldown next, the idle baseline right before the
agent starts (idle power drifts with temperature), the start temperature last.
Every step degrades to "null + reason" when the device lacks the sensor or
refuses the change: a missing sensor never fails a run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from harness.registry import TableContext, registry, setting
from harness.sensors import cpufreq, thermal, vcgencmd
from harness.sensors.cooldown import CooldownResult, cooldown
from harness.sensors.energy import (
    POWER_KINDS,
    EnergyPlan,
    IdleBaseline,
    energy_from_samples,
    measure_idle,
    plan_energy,
)
from harness.sensors.reader import LocalSysfs, SysfsReader, TransportSysfs

if TYPE_CHECKING:
    from harness.transports.base import Transport

@registry.table("sensors", owner="the sensor session",
                help="Energy, thermal and sampling settings (harness/sensors/session.py); "
                     "keys starting with android_ belong to the android platform.")
@dataclass(frozen=True, kw_only=True)
class SensorSettings:
    """The generic keys of [sensors] (android_* keys are the Android platform's)."""

    power: str = setting("auto", choices=POWER_KINDS, help="energy source: an INA2xx hwmon "
                         "monitor, else RAPL (auto), insist on one, or none")
    hwmon_chip: str | None = setting(None, help="hwmon chip name to use, e.g. \"ina219\"")
    hwmon_label: str | None = setting(None, help="hwmon label to pick among several monitors")
    hwmon_index: int = setting(0, minimum=0, help="which of several matching monitors")
    thermal_zone: str | None = setting(None, help="thermal zone type or thermal_zoneN name "
                                       "(default: the CPU zone)")
    vcgencmd: bool | str = setting("auto", help="read `vcgencmd get_throttled` (Raspberry "
                                   "Pi): true, false or \"auto\" (Linux boards)")
    idle_s: float = setting(2.0, minimum=0, help="idle power baseline before the run")
    idle_interval_s: float = setting(0.1, minimum=0.001, help="idle baseline sampling period")
    sample_interval_ms: int = setting(50, minimum=50, help="the agent's sysfs sampling period "
                                      "(a separate process; faster disturbs the timing)")
    cooldown_below_c: float | None = setting(None, help="wait before the run until the zone "
                                             "is below this temperature (C)")
    cooldown_timeout_s: float = setting(120.0, minimum=0, help="give up cooling after this")
    cooldown_poll_s: float = setting(2.0, minimum=0.01, help="temperature poll period")
    allow_throttled: bool | None = setting(None, help="like [validity] allow_throttled "
                                           "(which wins when both are set)")
    sysfs_root: str = setting("/", help="where the device's /sys is read from (tests)")

    def check(self, ctx: TableContext) -> None:
        if isinstance(self.vcgencmd, str) and self.vcgencmd != "auto":
            raise ctx.error("vcgencmd", f"{self.vcgencmd!r}: expected true, false or \"auto\"")

    def as_config(self) -> dict[str, Any]:
        """The set values as the mapping the session and energy planner read."""
        return set_values(self)


@registry.table("conditioning", owner="the sensor session",
                help="Linux conditioning before a run (undone after it unless told not to).")
@dataclass(frozen=True, kw_only=True)
class ConditioningSettings:
    """The generic keys of [conditioning] (android_* keys are the Android platform's)."""

    governor: str | None = setting(None, help="cpufreq governor for the run, e.g. "
                                   "\"performance\"")
    restore_governor: bool = setting(True, help="put the previous governor back afterwards")
    cpus: list[int] | None = setting(None, help="CPU numbers the agent is pinned to "
                                     "(taskset), e.g. [2, 3]", example="[2, 3]")
    realtime_priority: int | None = setting(
        None, help="SCHED_FIFO priority (1-99) of the agent's timing thread during warm-up, "
                   "the timed window and generation; best effort (needs CAP_SYS_NICE), "
                   "applied or not is recorded", example="10")

    def check(self, ctx: TableContext) -> None:
        if self.cpus is not None and (not self.cpus or any(c < 0 for c in self.cpus)):
            raise ctx.error("cpus", f"{self.cpus!r}: expected a non-empty list of CPU numbers, "
                                    "e.g. cpus = [2, 3]")
        if self.realtime_priority is not None and not 1 <= self.realtime_priority <= 99:
            raise ctx.error("realtime_priority", f"{self.realtime_priority!r}: expected a "
                            "SCHED_FIFO priority from 1 to 99, e.g. realtime_priority = 10")

    def as_config(self) -> dict[str, Any]:
        return set_values(self)


def set_values(settings: Any) -> dict[str, Any]:
    """A settings object as a mapping, its defaults filled in and unset (None) keys left out."""
    return {k: v for k, v in asdict(settings).items() if v is not None}


def profile_tables(profile: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The generic [sensors] and [conditioning] settings of a loaded profile, as
    mappings of the set values (checked when the profile was loaded)."""
    settings = getattr(profile, "settings", None) or {}
    sensors = settings.get("sensors") or SensorSettings()
    cond = settings.get("conditioning") or ConditioningSettings()
    return sensors.as_config(), cond.as_config()


class SensorSession:
    """Sensors, thermal state and conditioning for one benchmark run on one device."""

    def __init__(self, reader: SysfsReader, transport: Transport | None = None,
                 sensors: Mapping[str, Any] | None = None,
                 conditioning: Mapping[str, Any] | None = None, platform: str = "linux",
                 clock_ns: Callable[[], int] = time.monotonic_ns,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.reader = reader
        self.transport = transport
        # through the settings classes: their defaults are the only ones (a caller
        # may pass just the keys it sets)
        self.cfg = SensorSettings(**dict(sensors or {})).as_config()
        self.cond = ConditioningSettings(**dict(conditioning or {})).as_config()
        self.platform = platform
        self._clock_ns = clock_ns
        self._sleep = sleep
        self.sample_interval_ms: int = int(self.cfg["sample_interval_ms"])
        self.plan: EnergyPlan = EnergyPlan(None, None, reason="before_run() was not called")
        self.zone: thermal.ThermalZone | None = None
        self.idle: IdleBaseline | None = None
        self.cooldown_result: CooldownResult | None = None
        self.governor_change: cpufreq.GovernorChange | None = None
        self.cpufreq_before: cpufreq.CpuFreqState | None = None
        self._freq_paths: list[str] = []
        self._throttle_paths: list[str] = []
        self._throttle_before: dict[str, int] = {}
        self._vc_before: int | None = None
        self._temp_start: float | None = None

    @classmethod
    def for_profile(cls, profile: Any, transport: Transport) -> SensorSession:
        """From the profile's [sensors]/[conditioning] settings, checked at load."""
        sensors, cond = profile_tables(profile)
        root = str(sensors.get("sysfs_root", "/"))
        # this host is the device: read its files in-process rather than start a
        # `cat` per read (a dozen processes were ~70 ms of every `local` run)
        reader: SysfsReader = LocalSysfs(root) if transport.kind == "local" and \
            root.startswith("/") else TransportSysfs(transport, root=root)
        return cls(reader, transport, sensors, cond,
                   platform=getattr(profile, "platform", "linux"))

    # -- before ---------------------------------------------------------------

    def _use_vcgencmd(self) -> bool:
        v = self.cfg["vcgencmd"]
        return self.transport is not None and (v is True or (v == "auto" and
                                                              self.platform == "linux"))

    def _temp_now(self) -> float | None:
        if self.zone is None:
            return None
        return thermal.parse_temp_c(self.reader.read_text(self.zone.temp_path))

    def before_run(self) -> list[str]:
        """Prepare the device and return the physical sysfs paths the agent must sample."""
        gov = self.cond.get("governor")
        if gov and self.transport is not None:
            self.governor_change = cpufreq.set_governor(self.transport, self.reader, str(gov))
        self.cpufreq_before = cpufreq.read_cpufreq(self.reader)
        self.plan = plan_energy(self.cfg, self.reader)
        zones = thermal.find_zones(self.reader)
        self.zone = thermal.pick_zone(zones, self.reader, self.cfg.get("thermal_zone"))
        self._freq_paths = cpufreq.cur_freq_paths(self.reader)
        self._throttle_paths = thermal.throttle_count_paths(self.reader)
        if "cooldown_below_c" in self.cfg:
            self.cooldown_result = cooldown(
                self._temp_now, float(self.cfg["cooldown_below_c"]),
                float(self.cfg["cooldown_timeout_s"]),
                float(self.cfg["cooldown_poll_s"]),
                clock=lambda: self._clock_ns() / 1e9, sleep=self._sleep)
        self._throttle_before = thermal.read_throttle_counts(self.reader, self._throttle_paths)
        if self._use_vcgencmd():
            self._vc_before = vcgencmd.read_throttled(self.transport)  # type: ignore[arg-type]
        self.idle = measure_idle(self.reader, self.plan, float(self.cfg["idle_s"]),
                                 float(self.cfg["idle_interval_s"]),
                                 clock=self._clock_ns, sleep=self._sleep)
        self._temp_start = self._temp_now()
        return self.sample_paths()

    def sample_paths(self) -> list[str]:
        paths = list(self.plan.sample_paths)
        if self.zone is not None:
            paths.append(self.reader.physical(self.zone.temp_path))
        paths += [self.reader.physical(p) for p in self._freq_paths]
        return list(dict.fromkeys(paths))

    # -- after ----------------------------------------------------------------

    def after_run(self, agent_out: Mapping[str, Any]) -> dict[str, Any]:
        """Record fields from the agent's output: {"energy", "thermal", "conditioning"}."""
        samples: Mapping[str, Any] = agent_out.get("sysfs_samples") or {}
        window = agent_out.get("window_monotonic_ns")
        count = int((agent_out.get("run") or {}).get("count") or
                    len(agent_out.get("latency_samples_ns") or []))
        energy = energy_from_samples(self.plan, samples, window, count, self.idle)
        return {"energy": energy, "thermal": self._thermal_after(samples),
                "conditioning": self.conditioning_record()}

    def _thermal_after(self, samples: Mapping[str, Any]) -> dict[str, Any]:
        temp_end = self._temp_now()
        temps: list[float] = []
        if self.zone is not None:
            phys = self.reader.physical(self.zone.temp_path)
            temps = [t for _, raw in samples.get(phys, [])
                     if (t := thermal.parse_temp_c(raw)) is not None]
        evidence: list[str] = []
        unknown = False
        bits = None
        if self._use_vcgencmd():
            after = vcgencmd.read_throttled(self.transport)  # type: ignore[arg-type]
            if self._vc_before is not None or after is not None:
                bits = vcgencmd.throttled_during(self._vc_before, after)
                if bits["throttled"]:
                    evidence.append("vcgencmd: " + ", ".join(bits["kinds"]))
                elif bits["throttled"] is None:
                    unknown = True
        events = None
        if self._throttle_paths:
            after_counts = thermal.read_throttle_counts(self.reader, self._throttle_paths)
            events = thermal.throttle_events_between(self._throttle_before, after_counts)
            if events:
                evidence.append(f"kernel thermal_throttle counters +{events}")
        freq = cpufreq.freq_summary_from_samples(
            samples, [self.reader.physical(p) for p in self._freq_paths],
            self.cpufreq_before.max_khz if self.cpufreq_before else {})
        gov = self.cpufreq_before.governor if self.cpufreq_before else None
        if freq["below_90pct_of_max"] and gov == "performance":
            evidence.append("a CPU clock fell below 90 % of its maximum under the performance "
                            "governor")
        sources = bool(bits) or events is not None or (gov == "performance" and freq["per_cpu"])
        if evidence:
            throttled: bool | None = True
        elif unknown or not sources:
            throttled = None
        else:
            throttled = False
        zone_note = None
        if self.zone is None and self.cfg.get("thermal_zone"):
            zone_note = (f"[sensors] thermal_zone = {self.cfg['thermal_zone']!r} not found under "
                         "/sys/class/thermal (use a zone's type or thermal_zoneN name)")
        return {
            "zone": self.zone.type if self.zone else None,
            "zone_note": zone_note,
            "temp_start_c": self._temp_start, "temp_end_c": temp_end,
            "temp_max_c": max(temps) if temps else None,
            "temp_samples": len(temps),
            "throttled": throttled, "throttle_evidence": evidence,
            "throttle_bits": bits, "throttle_events": events,
            "cooldown": self.cooldown_result.as_dict() if self.cooldown_result else None,
            "cpufreq": freq,
        }

    def agent_prefix(self) -> list[str]:
        """argv prefix that pins the agent to [conditioning] cpus (Linux taskset), or [].

        Pinning keeps the scheduler from moving the benchmark between big and
        little cores mid-run (a bimodal latency that no statistic can fix).
        """
        cpus = self.cond.get("cpus")
        if not cpus:
            return []
        return ["taskset", "-c", ",".join(str(int(c)) for c in cpus)]

    def agent_args(self) -> list[str]:
        """Agent arguments of [conditioning] the agent applies itself (its own
        thread's scheduling), or []."""
        prio = self.cond.get("realtime_priority")
        return [] if prio is None else ["--realtime-priority", str(int(prio))]

    def conditioning_record(self) -> dict[str, Any]:
        """For environment.conditioning: what was asked, what the device really had."""
        st = self.cpufreq_before
        return {
            "governor_requested": self.cond.get("governor"),
            "governor": st.governor if st else None,
            "governor_change": self.governor_change.as_dict() if self.governor_change else None,
            "cpus": list(self.cond.get("cpus") or []) or None,
            "realtime_priority_requested": self.cond.get("realtime_priority"),
            "max_khz": dict(st.max_khz) if st else {},
            "sample_interval_ms": self.sample_interval_ms,
        }

    def close(self) -> None:
        """Restore the governors set_governor replaced (unless restore_governor = false)."""
        ch = self.governor_change
        if (ch and ch.applied and self.transport is not None
                and self.cond["restore_governor"]):
            cpufreq.restore_governors(self.transport, self.reader, ch.previous)
            self.governor_change = None
