"""Android parsers on recorded real-format output (tests/data/android)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.platforms.android_benchmark_model import build_argv, parse_output, to_agent_output
from harness.sensors.android_memory import (
    AndroidParseError,
    parse_dumpsys_meminfo,
    parse_proc_status,
)
from harness.sensors.android_power import (
    calibrate_current_sign,
    energy_delta_mj,
    parse_iio_energy,
    parse_power_stats,
    parse_power_supply_uevent,
    summarize_battery,
)
from harness.sensors.android_thermal import (
    TYPE_SKIN,
    hottest_of_type,
    parse_cpufreq,
    parse_thermalservice,
    parse_zones,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "android"


def sample(name: str) -> str:
    return (DATA / name).read_text()


def test_proc_status_vmhwm_kb():
    st = parse_proc_status(sample("proc_pid_status.txt"))
    assert st["vm_hwm_kb"] == 81236 and st["vm_rss_kb"] == 76600 and st["rss_anon_kb"] == 47016


def test_proc_status_without_vmhwm_names_the_command():
    with pytest.raises(AndroidParseError, match="`cat /proc/1/status`.*VmHWM"):
        parse_proc_status("Name: x\n", "cat /proc/1/status")


def test_dumpsys_meminfo_totals_kb():
    m = parse_dumpsys_meminfo(sample("dumpsys_meminfo_pid.txt"))
    assert (m.pid, m.total_pss_kb, m.total_rss_kb, m.total_swap_pss_kb) == (12881, 68064, 76600, 0)
    assert m.native_heap_pss_kb == 45088 and m.java_heap_pss_kb == 0


@pytest.mark.parametrize("name,problem", [
    ("dumpsys_meminfo_malformed.txt", "TOTAL PSS"),
    ("dumpsys_meminfo_no_process.txt", "process is gone"),
])
def test_malformed_dumpsys_is_a_clear_parse_error(name, problem):
    with pytest.raises(AndroidParseError) as err:
        parse_dumpsys_meminfo(sample(name), "dumpsys meminfo 12881")
    assert "`dumpsys meminfo 12881`" in str(err.value) and problem in str(err.value)
    assert err.value.command == "dumpsys meminfo 12881"


def test_power_stats_energy_meter_mws():
    rails = parse_power_stats(sample("dumpsys_power_stats.txt"))
    assert len(rails) == 16
    assert rails["S2M_VDD_CPUCL2:CPU(BIG)"] == pytest.approx(3355412.80)
    assert "DISPLAY:DISPLAY" not in rails  # energy consumers section (uWs) is not mixed in


def test_energy_delta_between_two_reads_mj():
    before = parse_power_stats(sample("dumpsys_power_stats.txt"))
    after = parse_power_stats(sample("dumpsys_power_stats_after.txt"))
    delta = energy_delta_mj(before, after)
    assert delta["S2M_VDD_CPUCL2:CPU(BIG)"] == pytest.approx(1289.35)
    assert delta["VSYS_PWR_DISPLAY:Display"] == 0
    with pytest.raises(ValueError, match="backwards"):
        energy_delta_mj(after, before)


def test_power_stats_without_meter_section():
    with pytest.raises(AndroidParseError, match="energy meter"):
        parse_power_stats("Can't find service: android.hardware.power.stats.IPowerStats/default")


def test_iio_energy_value_uws():
    rails = parse_iio_energy(sample("iio_energy_value.txt"))
    assert rails["S10M_VDD_TPU"] == 418220160 and len(rails) == 8


def test_battery_sign_calibration_and_charging_warning():
    dis = parse_power_supply_uevent(sample("battery_uevent.txt"))
    assert (dis.current_ua, dis.voltage_uv, dis.status) == (-612344, 3912500, "Discharging")
    assert calibrate_current_sign([dis]) == -1
    s = summarize_battery([dis, dis], None, 0.5)
    assert s["mean_power_mw"] == pytest.approx(612344 * 3912500 / 1e9)
    assert s["energy_mj"] == pytest.approx(s["mean_power_mw"] * 1.0) and not s["warnings"]
    chg = parse_power_supply_uevent(sample("battery_uevent_charging.txt"))
    s = summarize_battery([chg], None, 0.5)
    assert s["mean_power_mw"] is None and any("charging" in w for w in s["warnings"])


def test_thermal_zones_cpufreq_and_thermalservice():
    zones = parse_zones("zone BIG 38000\nzone battery 31200\nzone broken \n")
    assert zones == {"BIG": 38.0, "battery": 31.2}
    freqs, govs = parse_cpufreq("cpu0 1197000 sched_pixel\ncpu6 2802000 sched_pixel\n")
    assert freqs["cpu6"] == 2802000 and set(govs.values()) == {"sched_pixel"}
    temps = parse_thermalservice(sample("dumpsys_thermalservice.txt"))
    assert temps["BIG"] == (38.0, 0)
    assert hottest_of_type(temps, TYPE_SKIN) == pytest.approx(31.112)


def test_benchmark_model_output():
    r = parse_output(sample("benchmark_model_output.txt"))
    assert r.init_ms == pytest.approx(42.117) and r.first_inference_us == 31245
    assert r.warmup is not None and r.warmup.count == 27
    assert (r.inference.count, r.inference.min_us, r.inference.max_us) == (58, 16802, 19871)
    assert r.inference.avg_us == pytest.approx(17283.4) and r.inference.std_us == 512
    assert (r.footprint_init_mb, r.footprint_overall_mb, r.peak_memory_mb) == \
        (12.3164, 14.9023, 21.3047)
    out = to_agent_output(r)
    assert out["cold_start"]["first_inference_ms"] == pytest.approx(31.245)
    assert out["latency_samples_ns"] == [] and out["latency_summary_us"]["count"] == 58
    assert out["peak_rss_kb"] == int(21.3047 * 1024)


def test_benchmark_model_failure_is_reported():
    with pytest.raises(AndroidParseError, match="Failed to mmap model"):
        parse_output(sample("benchmark_model_output_failed.txt"))


def test_benchmark_model_argv():
    """Every flag, in order, each fed a different value so a swap shows."""
    argv = build_argv("/data/local/tmp/benchmark_model", "/data/local/tmp/m.tflite", 4, 10,
                      100, 2.5, 120.0, extra=["--use_xnnpack=true"])
    assert argv == ["/data/local/tmp/benchmark_model", "--graph=/data/local/tmp/m.tflite",
                    "--num_threads=4", "--warmup_runs=10", "--warmup_min_secs=0",
                    "--num_runs=100", "--min_secs=2.5", "--max_secs=120",
                    "--report_peak_memory_footprint=true", "--use_xnnpack=true"]
