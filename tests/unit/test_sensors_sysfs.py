"""Sensor parsing and arithmetic on fake sysfs trees built in tmp dirs.

The trees mirror real kernel layouts (hwmon ina2xx, powercap intel-rapl,
thermal zones, cpufreq, x86 thermal_throttle); the real parsing code reads
them through LocalSysfs(root) and, once, through TransportSysfs over the real
LocalTransport (so the batched `sh -c` read runs for real).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.sensors import cpufreq, hwmon_power, rapl, thermal, vcgencmd
from harness.sensors.reader import LocalSysfs, TransportSysfs, parse_batch, parse_int


def put(root: Path, path: str, text: str) -> None:
    f = root / path.lstrip("/")
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_text(text + "\n")


def hwmon(root: Path, n: int, name: str, **files: str) -> None:
    put(root, f"/sys/class/hwmon/hwmon{n}/name", name)
    for k, v in files.items():
        put(root, f"/sys/class/hwmon/hwmon{n}/{k}", v)


# -- reader -------------------------------------------------------------------

def test_local_reader_missing_files_and_dirs(tmp_path):
    put(tmp_path, "/sys/a/b", "  42 ")
    r = LocalSysfs(tmp_path)
    assert r.read_text("/sys/a/b") == "42"
    assert r.read_text("/sys/a/nope") is None
    assert r.list_dir("/sys/a") == ["b"] and r.list_dir("/sys/zzz") == []
    assert r.physical("/sys/a/b") == f"{tmp_path}/sys/a/b"
    assert parse_int("N/A") is None and parse_int("") is None and parse_int("-7\n") == -7
    with pytest.raises(ValueError):
        r.physical("relative/path")


def test_batch_output_parser_keeps_missing_files_apart():
    out = "\x1e/r/a\x1f12\n\x1e/r/b\x1f\x1d\x1e/r/c\x1fx y\n"
    got = parse_batch(out, ["/a", "/b", "/c", "/d"], ["/r/a", "/r/b", "/r/c", "/r/d"])
    assert got == {"/a": "12", "/b": None, "/c": "x y", "/d": None}


def test_transport_reader_over_the_real_local_transport(tmp_path):
    from harness.transports.local import LocalTransport

    hwmon(tmp_path, 0, "ina226", power1_input="2500000")
    put(tmp_path, "/sys/class/hwmon/hwmon0/odd name", "has space")
    with LocalTransport("test", home=tmp_path / "home") as t:
        r = TransportSysfs(t, root=str(tmp_path))
        assert r.list_dir("/sys/class/hwmon/hwmon0") == ["name", "odd name", "power1_input"]
        got = r.read_many(["/sys/class/hwmon/hwmon0/power1_input",
                           "/sys/class/hwmon/hwmon0/missing",
                           "/sys/class/hwmon/hwmon0/odd name"])
        assert got == {"/sys/class/hwmon/hwmon0/power1_input": "2500000",
                       "/sys/class/hwmon/hwmon0/missing": None,
                       "/sys/class/hwmon/hwmon0/odd name": "has space"}
        assert r.read_text("/sys/class/hwmon/hwmon0/missing") is None
        sensors = hwmon_power.find_hwmon_power(r)
        assert [s.hwmon for s in sensors] == ["hwmon0"]
        assert hwmon_power.read_power_mw(r, sensors[0]) == 2500.0


# -- hwmon --------------------------------------------------------------------

def test_hwmon_found_by_name_not_number(tmp_path):
    hwmon(tmp_path, 0, "cpu_thermal", temp1_input="45000")
    hwmon(tmp_path, 10, "ina226", power1_input="3100000", curr1_input="620",
          in1_input="5000", update_interval="2")
    hwmon(tmp_path, 2, "ina219", curr1_input="-400", in1_input="5100")  # no power1_input
    hwmon(tmp_path, 3, "ina260")  # no usable files at all: skipped
    r = LocalSysfs(tmp_path)
    found = hwmon_power.find_hwmon_power(r)
    assert [(s.chip, s.hwmon) for s in found] == [("ina219", "hwmon2"), ("ina226", "hwmon10")]
    ina219, ina226 = found
    assert ina226.power_path.endswith("hwmon10/power1_input") and ina226.update_interval_ms == 2
    assert ina226.sample_paths() == ["/sys/class/hwmon/hwmon10/power1_input"]
    assert ina219.power_path is None and len(ina219.sample_paths()) == 2
    assert hwmon_power.read_power_mw(r, ina226) == pytest.approx(3100.0)  # µW -> mW
    assert hwmon_power.read_power_mw(r, ina219) == pytest.approx(2040.0)  # |mA| x mV / 1000
    assert hwmon_power.find_hwmon_power(r, ("ina260",)) == []
    assert hwmon_power.find_hwmon_power(LocalSysfs(tmp_path / "empty")) == []


def test_hwmon_label_selects_among_identical_chips(tmp_path):
    hwmon(tmp_path, 1, "ina226", label="vdd_soc", power1_input="1000")
    hwmon(tmp_path, 2, "ina226", label="vdd_board", power1_input="2000")
    found = hwmon_power.find_hwmon_power(LocalSysfs(tmp_path), label="vdd_board")
    assert [s.hwmon for s in found] == ["hwmon2"] and "vdd_board" in found[0].description


def test_hwmon_power_values_vanishing_files():
    assert hwmon_power.power_mw_from_raw(power_raw="1234567") == pytest.approx(1234.567)
    assert hwmon_power.power_mw_from_raw(curr_raw="100", volt_raw=None) is None
    assert hwmon_power.power_mw_from_raw() is None


# -- RAPL ---------------------------------------------------------------------

def rapl_tree(root: Path, energy: str = "1000", max_range: str = "262143328850") -> None:
    base = "/sys/class/powercap"
    put(root, f"{base}/intel-rapl/enabled", "1")  # the control type: not a domain
    put(root, f"{base}/intel-rapl:0/name", "package-0")
    put(root, f"{base}/intel-rapl:0/energy_uj", energy)
    put(root, f"{base}/intel-rapl:0/max_energy_range_uj", max_range)
    put(root, f"{base}/intel-rapl:0:0/name", "core")  # sub-domain: inside package-0
    put(root, f"{base}/intel-rapl:0:0/energy_uj", "500")


def test_rapl_domains_and_wraparound(tmp_path):
    rapl_tree(tmp_path)
    doms = rapl.find_rapl_domains(LocalSysfs(tmp_path))
    assert [(d.name, d.zone, d.max_range_uj) for d in doms] == [
        ("package-0", "intel-rapl:0", 262143328850)]
    mx = 262143328850
    assert rapl.counter_delta_uj(100, 600, mx) == 500
    assert rapl.counter_delta_uj(mx - 100, 50, mx) == 150  # wrapped once
    assert rapl.energy_uj_from_series([mx - 300, mx - 100, 200, 700], mx) == 1000
    with pytest.raises(ValueError, match="max_energy_range_uj"):
        rapl.counter_delta_uj(500, 100, None)


def test_rapl_unreadable_counter_means_no_domain(tmp_path):
    rapl_tree(tmp_path, energy="")  # what EACCES looks like through a reader: no number
    assert rapl.find_rapl_domains(LocalSysfs(tmp_path)) == []


# -- thermal ------------------------------------------------------------------

def test_thermal_zones_pick_and_read(tmp_path):
    put(tmp_path, "/sys/class/thermal/thermal_zone0/type", "acpitz")
    put(tmp_path, "/sys/class/thermal/thermal_zone0/temp", "27800")
    put(tmp_path, "/sys/class/thermal/thermal_zone1/type", "x86_pkg_temp")
    put(tmp_path, "/sys/class/thermal/thermal_zone1/temp", "61000")
    put(tmp_path, "/sys/class/thermal/thermal_zone2/type", "broken")
    put(tmp_path, "/sys/class/thermal/thermal_zone2/temp", "")
    put(tmp_path, "/sys/class/thermal/cooling_device0/type", "Processor")
    r = LocalSysfs(tmp_path)
    zones = thermal.find_zones(r)
    assert [z.type for z in zones] == ["acpitz", "x86_pkg_temp"]
    assert thermal.pick_zone(zones, r).type == "x86_pkg_temp"  # hottest
    assert thermal.pick_zone(zones, r, "acpitz").zone == "thermal_zone0"
    assert thermal.pick_zone(zones, r, "nope") is None
    assert thermal.read_temps_c(r, zones) == {"thermal_zone0": 27.8, "thermal_zone1": 61.0}
    assert thermal.parse_temp_c("45") == 45.0  # a driver reporting whole degrees


def test_x86_throttle_counters(tmp_path):
    for c in (0, 1):
        put(tmp_path, f"/sys/devices/system/cpu/cpu{c}/thermal_throttle/core_throttle_count",
            "3")
    put(tmp_path, "/sys/devices/system/cpu/cpu0/thermal_throttle/package_throttle_count", "7")
    put(tmp_path, "/sys/devices/system/cpu/cpufreq/boost", "1")
    r = LocalSysfs(tmp_path)
    paths = thermal.throttle_count_paths(r)
    assert len(paths) == 3
    before = thermal.read_throttle_counts(r, paths)
    put(tmp_path, "/sys/devices/system/cpu/cpu1/thermal_throttle/core_throttle_count", "5")
    after = thermal.read_throttle_counts(r, paths)
    assert thermal.throttle_events_between(before, after) == 2


# -- cpufreq ------------------------------------------------------------------

def cpufreq_tree(root: Path, govs=("performance", "performance")) -> None:
    for c, g in enumerate(govs):
        base = f"/sys/devices/system/cpu/cpu{c}/cpufreq"
        put(root, f"{base}/scaling_governor", g)
        put(root, f"{base}/scaling_cur_freq", "1500000")
        put(root, f"{base}/cpuinfo_max_freq", "1500000")
        put(root, f"{base}/scaling_max_freq", "1500000")


def test_cpufreq_state_and_summary(tmp_path):
    cpufreq_tree(tmp_path, ("performance", "ondemand"))
    put(tmp_path, "/sys/devices/system/cpu/cpu2/online", "1")  # no cpufreq dir
    r = LocalSysfs(tmp_path)
    st = cpufreq.read_cpufreq(r)
    assert st.governor == "mixed(ondemand,performance)" and st.max_khz["cpu0"] == 1500000
    assert cpufreq.read_cpufreq(LocalSysfs(tmp_path / "none")).governor is None
    paths = [r.physical(p) for p in cpufreq.cur_freq_paths(r)]
    assert len(paths) == 2
    samples = {paths[0]: [[1, "1500000"], [2, "1200000"]], paths[1]: [[1, "1500000"]]}
    s = cpufreq.freq_summary_from_samples(samples, paths, st.max_khz)
    assert s["below_90pct_of_max"] and s["per_cpu"]["cpu0"]["min_khz"] == 1200000


def test_set_governor_writes_and_restores_via_a_real_transport(tmp_path):
    from harness.transports.local import LocalTransport

    cpufreq_tree(tmp_path, ("ondemand", "ondemand"))
    with LocalTransport("test", home=tmp_path / "home") as t:
        r = TransportSysfs(t, root=str(tmp_path))
        ch = cpufreq.set_governor(t, r, "performance")
        assert ch.applied and ch.previous == {"cpu0": "ondemand", "cpu1": "ondemand"}
        assert cpufreq.read_cpufreq(r).governor == "performance"
        cpufreq.restore_governors(t, r, ch.previous)
        assert cpufreq.read_cpufreq(r).governor == "ondemand"
        (tmp_path / "sys/devices/system/cpu/cpu1/cpufreq/scaling_governor").chmod(0o444)
        import os
        if os.geteuid() != 0:  # root ignores file modes: the refusal cannot be staged
            denied = cpufreq.set_governor(t, r, "performance")
            assert not denied.applied and denied.error
        with pytest.raises(ValueError):
            cpufreq.set_governor(t, r, "perf; rm -rf /")


# -- vcgencmd -----------------------------------------------------------------

def test_vcgencmd_bits():
    assert vcgencmd.parse_throttled("throttled=0x50005\n") == 0x50005
    assert vcgencmd.parse_throttled("error") is None
    flags = vcgencmd.decode(0x50005)
    assert flags["under_voltage_now"] and flags["throttled_now"]
    assert flags["under_voltage_occurred"] and flags["throttled_occurred"]
    assert not flags["freq_capped_now"] and not flags["soft_temp_limit_occurred"]
    clean = vcgencmd.throttled_during(0x0, 0x0)
    assert clean["throttled"] is False and clean["kinds"] == []
    new = vcgencmd.throttled_during(0x0, 0x20000)  # capping happened during the run
    assert new["throttled"] is True and new["kinds"] == ["freq_capped"]
    # already set since boot: a repeat during the run would be invisible
    old = vcgencmd.throttled_during(0x40000, 0x40000)
    assert old["throttled"] is None and old["unknown_kinds"] == ["throttled"]
    assert vcgencmd.throttled_during(None, 0)["throttled"] is None


def test_vcgencmd_on_a_host_without_it(tmp_path):
    from harness.transports.local import LocalTransport

    with LocalTransport("test", home=tmp_path / "home") as t:
        import shutil
        if shutil.which("vcgencmd"):
            pytest.skip("this host has vcgencmd: the 'not a Pi' path cannot be tested here")
        assert vcgencmd.read_throttled(t) is None
