"""Energy per inference, idle baseline, cooldown and the SensorSession around an agent run."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pytest

from harness.sensors.cooldown import cooldown
from harness.sensors.energy import (
    EnergyPlan,
    counter_series,
    energy_from_samples,
    hwmon_series,
    measure_idle,
    plan_energy,
)
from harness.sensors.hwmon_power import HwmonPowerSensor
from harness.sensors.reader import LocalSysfs
from harness.sensors.session import SensorSession, profile_tables
from harness.transports.base import CommandResult, Transport


def put(root: Path, path: str, text: str) -> None:
    f = root / path.lstrip("/")
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_text(text + "\n")


class FakeClock:
    """Monotonic ns clock that only moves when the code under test sleeps."""

    def __init__(self) -> None:
        self.ns = 1_000_000_000

    def __call__(self) -> int:
        return self.ns

    def sleep(self, s: float) -> None:
        self.ns += int(s * 1e9)


class CounterSysfs(LocalSysfs):
    """A LocalSysfs whose RAPL counter advances with the fake clock (constant power)."""

    def __init__(self, root: Path, clock: FakeClock, power_mw: float, start_uj: int,
                 max_uj: int) -> None:
        super().__init__(root)
        self.clock, self.power_mw, self.start, self.max = clock, power_mw, start_uj, max_uj

    def read_text(self, path: str) -> str | None:
        if path.endswith("intel-rapl:0/energy_uj"):
            uj = self.start + self.power_mw * (self.clock() - 1_000_000_000) / 1e6
            return str(int(uj) % self.max)
        return super().read_text(path)

    def read_many(self, paths: Iterable[str]) -> dict[str, str | None]:
        return {p: self.read_text(p) for p in paths}


def ina_tree(root: Path, power_uw: int = 2_000_000) -> None:
    put(root, "/sys/class/hwmon/hwmon4/name", "ina226")
    put(root, "/sys/class/hwmon/hwmon4/power1_input", str(power_uw))
    put(root, "/sys/class/hwmon/hwmon4/update_interval", "1")


def agent_power_samples(path: str, window, mw, rng, interval_ms=50, quantum_mw=25.0):
    """What the agent returns: raw µW text every interval, quantized like an INA226."""
    ts = np.arange(window[0], window[1] + 1, int(interval_ms * 1e6))
    vals = mw + rng.normal(0, 40, ts.size)
    vals = np.round(vals / quantum_mw) * quantum_mw
    return {path: [[int(t), str(int(v * 1000))] for t, v in zip(ts, vals, strict=True)]}


def test_hwmon_energy_per_inference_net_of_idle(tmp_path):
    ina_tree(tmp_path)
    r = LocalSysfs(tmp_path)
    plan = plan_energy({}, r)
    assert plan.kind == "hwmon" and plan.sensor == "hwmon:ina226@hwmon4"
    clock = FakeClock()
    idle = measure_idle(r, plan, duration_s=2.0, interval_s=0.1, clock=clock,
                        sleep=clock.sleep)
    assert idle.power_mw == pytest.approx(2000.0) and idle.samples >= 19
    window = [10_000_000_000, 20_000_000_000]  # 10 s
    samples = agent_power_samples(plan.sample_paths[0], window, 3000.0,
                                  np.random.default_rng(0))
    e = energy_from_samples(plan, samples, window, 200, idle)
    # (3000 - 2000) mW x 10 s / 200 = 50 mJ
    assert e["status"] == "measured"
    assert e["energy_per_inference_mj"] == pytest.approx(50.0, rel=0.02)
    assert e["gross_energy_per_inference_mj"] == pytest.approx(150.0, rel=0.01)
    lo, hi = e["energy_per_inference_ci_mj"]
    assert lo < e["energy_per_inference_mj"] < hi and hi - lo < 5.0
    assert e["window_s"] == 10.0 and e["idle_power_mw"] == pytest.approx(2000.0)
    assert e["sampling_hz"] == pytest.approx(20.0, rel=0.01)
    assert e["power_resolution_mw"] == pytest.approx(25.0)
    assert e["sensor_kind"] == "hwmon" and "update_interval 1 ms" in e["note"]


def test_samples_outside_the_window_are_ignored():
    pts = [(0, 9000.0), (1, 9000.0), (10, 1000.0), (20, 1000.0), (30, 1000.0), (99, 9000.0)]
    sensor = HwmonPowerSensor("ina226", "hwmon0", None, "/p", None, None, None)
    plan = EnergyPlan("hwmon", "x", ("/p",), hwmon=sensor)
    raw = {"/p": [[t, str(int(p * 1000))] for t, p in pts]}
    e = energy_from_samples(plan, raw, [10, 30], 1, None)
    assert e["active_power_mw"] == pytest.approx(1000.0)
    assert e["status"] == "no_idle_baseline" and e["energy_per_inference_mj"] is None
    assert e["gross_energy_per_inference_mj"] == pytest.approx(1000.0 * 20e-9)
    # one reading inside the window is too few, whatever lies outside it
    e = energy_from_samples(plan, raw, [15, 25], 1, None)
    assert e["status"] == "insufficient_samples" and e["active_power_mw"] is None


def test_trapezoid_and_counter_series_arithmetic():
    s = hwmon_series([(0, 1000.0), (1_000_000_000, 3000.0)])
    assert s.mean_mw() == pytest.approx(2000.0)  # linear ramp: trapezoid is exact
    mx = 1_000_000
    c = counter_series([(0, mx - 1000), (1_000_000_000, mx - 1000),  # no update yet: merged
                        (2_000_000_000, 1000)], mx)  # wrapped: +2000 µJ over 2 s
    assert c.p_mw == [pytest.approx(1.0)] and c.mean_mw() == pytest.approx(1.0)


def test_rapl_energy_with_counter_wraparound(tmp_path):
    base = "/sys/class/powercap/intel-rapl:0"
    put(tmp_path, f"{base}/name", "package-0")
    put(tmp_path, f"{base}/energy_uj", "0")
    mx = 60_000_000  # 60 J range: wraps every 4 s at 15 W
    put(tmp_path, f"{base}/max_energy_range_uj", str(mx))
    clock = FakeClock()
    r = CounterSysfs(tmp_path, clock, power_mw=5000.0, start_uj=mx - 3_000_000, max_uj=mx)
    plan = plan_energy({"power": "rapl"}, r)
    assert plan.kind == "rapl" and plan.sensor == "rapl:package-0"
    idle = measure_idle(r, plan, 2.0, 0.1, clock=clock, sleep=clock.sleep)  # wraps after 0.6 s
    assert idle.power_mw == pytest.approx(5000.0, rel=1e-3)
    # the run: 15 W for 10 s, sampled every 50 ms, counter wraps twice
    path = plan.sample_paths[0]
    ts = np.arange(0, 10_000_000_001, 50_000_000)
    raw = {path: [[int(t), str(int((1_000 + 15_000 * t / 1e6) % mx))] for t in ts]}
    e = energy_from_samples(plan, raw, [0, 10_000_000_000], 100, idle)
    assert e["active_power_mw"] == pytest.approx(15000.0, rel=1e-4)
    assert e["energy_per_inference_mj"] == pytest.approx(1000.0, rel=1e-3)  # 10 W x 10 s / 100
    assert e["energy_resolution_mj"] == 0.001 and e["sensor_kind"] == "rapl"


def test_no_sensor_gives_nulls_and_says_why(tmp_path):
    r = LocalSysfs(tmp_path)
    plan = plan_energy({}, r)
    assert not plan.available and "hwmon" in plan.reason and "RAPL" in plan.reason
    e = energy_from_samples(plan, {}, [0, 10], 5, measure_idle(r, plan))
    assert e["energy_per_inference_mj"] is None and e["sensor"] is None
    assert e["status"] == "no_sensor" and e["note"]
    assert plan_energy({"power": "none"}, r).reason.startswith("the profile disables")
    ina_tree(tmp_path)
    assert not plan_energy({"power": "hwmon", "hwmon_chip": "ina260"}, r).available
    one = {plan_energy({}, r).sample_paths[0]: [[5, "3000000"]]}
    e = energy_from_samples(plan_energy({}, r), one, [0, 10], 5, None)
    assert e["status"] == "insufficient_samples" and e["energy_per_inference_mj"] is None


def test_cooldown_is_bounded():
    clock = FakeClock()
    curve = iter([70.0, 66.0, 61.0, 58.0, 55.0])
    res = cooldown(lambda: next(curve), 60.0, timeout_s=60, poll_s=5,
                   clock=lambda: clock() / 1e9, sleep=clock.sleep)
    assert res.reached and res.end_temp_c == 58.0 and res.waited_s == pytest.approx(15.0)
    clock2 = FakeClock()
    hot = cooldown(lambda: 80.0, 60.0, timeout_s=30, poll_s=4,
                   clock=lambda: clock2() / 1e9, sleep=clock2.sleep)
    assert hot.reached is False and hot.waited_s == pytest.approx(30.0)
    assert "running anyway" in hot.reason
    assert cooldown(lambda: None, 60.0).reached is None


class FakePi(Transport):
    """Answers vcgencmd like a Pi whose firmware capped the clock during the run."""

    kind = "fake"

    def __init__(self) -> None:
        super().__init__("fake-pi")
        self.answers = ["throttled=0x0", "throttled=0x20000"]

    def run(self, argv, timeout_s=None, env=None, cwd=None) -> CommandResult:
        if list(argv) == ["vcgencmd", "get_throttled"]:
            return CommandResult(tuple(argv), 0, self.answers.pop(0) + "\n", "", 0.01)
        return CommandResult(tuple(argv), 127, "", "not found", 0.01)

    def remote_sha256(self, remote):  # pragma: no cover - not used
        return None

    def _upload(self, local, remote_tmp):  # pragma: no cover
        raise NotImplementedError

    def _download(self, remote, local_tmp):  # pragma: no cover
        raise NotImplementedError

    def close(self) -> None:
        pass


def test_session_before_and_after_an_agent_run(tmp_path):
    ina_tree(tmp_path)
    put(tmp_path, "/sys/class/thermal/thermal_zone0/type", "cpu-thermal")
    put(tmp_path, "/sys/class/thermal/thermal_zone0/temp", "52000")
    put(tmp_path, "/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor", "performance")
    put(tmp_path, "/sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq", "1500000")
    put(tmp_path, "/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq", "1500000")
    clock = FakeClock()
    s = SensorSession(LocalSysfs(tmp_path), FakePi(), {"cooldown_below_c": 60, "idle_s": 1.0},
                      clock_ns=clock, sleep=clock.sleep)
    paths = s.before_run()
    phys = lambda p: f"{tmp_path}{p}"  # noqa: E731
    assert paths == [phys("/sys/class/hwmon/hwmon4/power1_input"),
                     phys("/sys/class/thermal/thermal_zone0/temp"),
                     phys("/sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq")]
    window = [10_000_000_000, 15_000_000_000]
    samples = agent_power_samples(paths[0], window, 2600.0, np.random.default_rng(1))
    samples[paths[1]] = [[window[0], "53000"], [window[1], "67500"]]
    samples[paths[2]] = [[window[0], "1500000"], [window[1], "1500000"]]
    put(tmp_path, "/sys/class/thermal/thermal_zone0/temp", "64000")
    out = s.after_run({"sysfs_samples": samples, "window_monotonic_ns": window,
                       "run": {"count": 100}})
    e, th = out["energy"], out["thermal"]
    assert e["energy_per_inference_mj"] == pytest.approx(600 * 5 / 100, rel=0.05)
    assert th["temp_start_c"] == 52.0 and th["temp_end_c"] == 64.0 and th["temp_max_c"] == 67.5
    assert th["cooldown"]["reached"] is True
    assert th["throttled"] is True and th["throttle_bits"]["kinds"] == ["freq_capped"]
    assert out["conditioning"]["governor"] == "performance"


def test_profile_tables_are_checked(tmp_path):
    prof = tmp_path / "dev.toml"
    prof.write_text('name = "dev"\ntransport = "local"\nplatform = "linux"\n'
                    'runtime = "onnxruntime"\n'
                    '[sensors]\npower = "hwmon"\nhwmon_chip = "ina219"\nandroid_interval_s = 0.5\n'
                    '[conditioning]\ngovernor = "performance"\n')
    from harness.profiles import parse_profile

    sensors, cond = profile_tables(parse_profile(prof))
    assert sensors["hwmon_chip"] == "ina219" and cond["governor"] == "performance"
    pinned = SensorSession(LocalSysfs(tmp_path), conditioning={"cpus": [2, 3]})
    assert pinned.agent_prefix() == ["taskset", "-c", "2,3"]
    assert pinned.conditioning_record()["cpus"] == [2, 3]
    assert SensorSession(LocalSysfs(tmp_path)).agent_prefix() == []
