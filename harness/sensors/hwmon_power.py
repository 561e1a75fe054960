"""INA219 / INA226 / INA260 (and kin) power monitors through the Linux hwmon interface.

The kernel's ina2xx / ina238 drivers expose, in /sys/class/hwmon/hwmonN/:
name (the chip, e.g. "ina226"), power1_input (µW), curr1_input (mA),
in1_input (bus voltage, mV), in0_input (shunt voltage, mV) and
update_interval (ms between conversions). hwmonN numbers change between
boots and with probe order, so the monitor is found by its name file, never
by number; when several chips share a name the profile picks one by order
(hwmon_index) or by the device-tree label file.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.sensors.reader import SysfsReader, parse_int

HWMON_ROOT = "/sys/class/hwmon"
SUPPORTED_CHIPS = ("ina219", "ina220", "ina226", "ina230", "ina231", "ina260", "ina238",
                   "ina209")


@dataclass(frozen=True)
class HwmonPowerSensor:
    """One power monitor: where its files are and which ones exist."""

    chip: str
    hwmon: str  # e.g. "hwmon3"
    label: str | None
    power_path: str | None  # power1_input, µW
    curr_path: str | None  # curr1_input, mA
    volt_path: str | None  # in1_input, mV (bus)
    update_interval_ms: int | None

    @property
    def description(self) -> str:
        what = f"hwmon:{self.chip}@{self.hwmon}"
        return f"{what} ({self.label})" if self.label else what

    def sample_paths(self) -> list[str]:
        """Files the agent should sample: power when the driver has it, else current + voltage."""
        if self.power_path:
            return [self.power_path]
        return [p for p in (self.curr_path, self.volt_path) if p]


def find_hwmon_power(reader: SysfsReader, chips: tuple[str, ...] = SUPPORTED_CHIPS,
                     label: str | None = None) -> list[HwmonPowerSensor]:
    """Every hwmon device whose name file is one of chips (and label matches, if given).

    Sorted by hwmon number so hwmon_index is stable for a given probe order.
    A device with neither power1_input nor curr1_input+in1_input is skipped:
    it cannot give power.
    """
    found: list[HwmonPowerSensor] = []
    entries = [e for e in reader.list_dir(HWMON_ROOT) if e.startswith("hwmon")]
    entries.sort(key=lambda e: int(e[5:]) if e[5:].isdigit() else 1 << 30)
    for entry in entries:
        base = f"{HWMON_ROOT}/{entry}"
        files = reader.read_many([f"{base}/name", f"{base}/label", f"{base}/power1_input",
                                  f"{base}/curr1_input", f"{base}/in1_input",
                                  f"{base}/update_interval"])
        name = files[f"{base}/name"]
        if name is None or name.strip() not in chips:
            continue
        lab = files[f"{base}/label"]
        if label is not None and lab != label:
            continue
        power = f"{base}/power1_input" if parse_int(files[f"{base}/power1_input"]) is not None \
            else None
        curr = f"{base}/curr1_input" if parse_int(files[f"{base}/curr1_input"]) is not None \
            else None
        volt = f"{base}/in1_input" if parse_int(files[f"{base}/in1_input"]) is not None else None
        if power is None and not (curr and volt):
            continue
        found.append(HwmonPowerSensor(name.strip(), entry, lab, power, curr, volt,
                                      parse_int(files[f"{base}/update_interval"])))
    return found


def power_mw_from_raw(power_raw: str | None = None, curr_raw: str | None = None,
                      volt_raw: str | None = None) -> float | None:
    """Power in mW from hwmon text: power1_input µW, else curr1_input mA × in1_input mV.

    mA × mV = µW, so both paths divide by 1000. Negative current (a shunt
    wired the other way round) is taken by magnitude: the board draws power.
    """
    p = parse_int(power_raw)
    if p is not None:
        return abs(p) / 1000.0
    i, v = parse_int(curr_raw), parse_int(volt_raw)
    if i is None or v is None:
        return None
    return abs(i) * v / 1000.0


def read_power_mw(reader: SysfsReader, sensor: HwmonPowerSensor) -> float | None:
    """One instantaneous power reading, or None when the files vanished."""
    files = reader.read_many(sensor.sample_paths())
    if sensor.power_path:
        return power_mw_from_raw(power_raw=files.get(sensor.power_path))
    return power_mw_from_raw(curr_raw=files.get(sensor.curr_path or ""),
                             volt_raw=files.get(sensor.volt_path or ""))
