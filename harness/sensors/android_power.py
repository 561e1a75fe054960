"""Android energy: the on-device power monitor (ODPM) and the battery gauge.

Sources, best first:
1. `dumpsys android.hardware.power.stats.IPowerStats/default`: the PowerStats
   HAL's cumulative energy per ODPM rail, printed in mWs (= mJ). Works
   without root. Energy of a run = after - before, per rail.
2. /sys/bus/iio/devices/iio:deviceN/energy_value (root): the same counters in
   uWs, lines ``CHn(T=ms)[RAIL], value``.
3. Battery fallback: /sys/class/power_supply/battery current_now (uA) x
   voltage_now (uV). The sign convention differs between devices (Pixel:
   negative while discharging), so it is calibrated from the STATUS field,
   and while USB charges the phone the reading is the NET battery current:
   useless for the model's power, hence a warning in the record.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from harness.sensors.android_memory import AndroidParseError

POWER_STATS_COMMAND = "dumpsys android.hardware.power.stats.IPowerStats/default"
_METER_HEADER = re.compile(r"^=+ PowerStats HAL [\d.]+ energy meter =+\s*$", re.M)
_SECTION = re.compile(r"^=+ .* =+\s*$", re.M)
_RAIL_ROW = re.compile(r"^\s*(\S+)\s+(-?\d+(?:\.\d+)?)\s+mWs\b", re.M)


def parse_power_stats(text: str, command: str = POWER_STATS_COMMAND) -> dict[str, float]:
    """Rail name -> cumulative energy in mWs from the energy meter section."""
    head = _METER_HEADER.search(text)
    if not head:
        raise AndroidParseError(command, "no 'PowerStats HAL ... energy meter' section "
                                "(the device may have no ODPM; use the battery fallback)", text)
    end = _SECTION.search(text, head.end())
    section = text[head.end(): end.start() if end else len(text)]
    rails = {m.group(1): float(m.group(2)) for m in _RAIL_ROW.finditer(section)}
    if not rails:
        raise AndroidParseError(command, "the energy meter section has no 'NAME  VALUE mWs' "
                                "rows", text)
    return rails


_IIO_T = re.compile(r"^t=(\d+)\s*$", re.M)
_IIO_ROW = re.compile(r"^CH(\d+)\(T=(\d+)\)\[([^\]]+)\],\s*(\d+)\s*$", re.M)


def parse_iio_energy(text: str, command: str = "cat energy_value") -> dict[str, float]:
    """Rail -> cumulative energy in uWs from an ODPM iio energy_value file."""
    rows = _IIO_ROW.findall(text)
    if not rows:
        raise AndroidParseError(command, "no 'CHn(T=..)[RAIL], VALUE' rows", text)
    return {rail: float(value) for _ch, _t, rail, value in rows}


def energy_delta_mj(before_mws: dict[str, float], after_mws: dict[str, float]
                    ) -> dict[str, float]:
    """Per-rail energy spent between two meter reads (mWs == mJ)."""
    missing = sorted(set(before_mws) ^ set(after_mws))
    if missing:
        raise ValueError(f"rails differ between the two reads: {', '.join(missing)}")
    out = {k: after_mws[k] - before_mws[k] for k in before_mws}
    negative = [k for k, v in out.items() if v < 0]
    if negative:
        raise ValueError(f"energy counters went backwards on {', '.join(negative)} "
                         "(device rebooted or counters reset during the run)")
    return out


@dataclass(frozen=True)
class BatteryReading:
    current_ua: int
    voltage_uv: int
    status: str
    usb_online: bool | None = None
    temp_decic: int | None = None
    warnings: list[str] = field(default_factory=list)


def parse_power_supply_uevent(text: str, command: str = "cat battery/uevent"
                              ) -> BatteryReading:
    kv = dict(re.findall(r"^POWER_SUPPLY_([A-Z_]+)=(.*)$", text, re.M))
    try:
        current = int(kv["CURRENT_NOW"])
        voltage = int(kv["VOLTAGE_NOW"])
    except (KeyError, ValueError):
        raise AndroidParseError(command, "POWER_SUPPLY_CURRENT_NOW / VOLTAGE_NOW missing "
                                "or not integers", text) from None
    temp = kv.get("TEMP")
    return BatteryReading(current_ua=current, voltage_uv=voltage,
                          status=kv.get("STATUS", "Unknown"),
                          temp_decic=int(temp) if temp and temp.lstrip("-").isdigit() else None)


def calibrate_current_sign(readings: list[BatteryReading]) -> int:
    """+1 or -1 such that sign * current_ua is the DRAIN while discharging.

    Decided from readings taken while STATUS=Discharging (the majority sign);
    raises ValueError when none was discharging (then nobody can tell).
    """
    discharging = [r.current_ua for r in readings if r.status == "Discharging" and r.current_ua]
    if not discharging:
        raise ValueError("no reading taken while discharging: unplug USB (or `dumpsys battery "
                         "unplug`) or set [sensors] battery_current_sign in the profile")
    negatives = sum(1 for c in discharging if c < 0)
    return -1 if negatives * 2 > len(discharging) else 1


def battery_power_mw(reading: BatteryReading, sign: int) -> float:
    """Battery drain power in mW (uA x uV = pW; / 1e9 -> mW)."""
    return sign * reading.current_ua * reading.voltage_uv / 1e9


def battery_warnings(readings: list[BatteryReading]) -> list[str]:
    charging = [r for r in readings if r.status in ("Charging", "Full")]
    if charging:
        return [f"{len(charging)} of {len(readings)} battery readings were taken while "
                "the phone was charging: current_now is the net battery current, so "
                "battery-derived power is distorted (use ODPM, or `dumpsys battery unplug` "
                "over adb tcpip)"]
    return []


def summarize_battery(readings: list[BatteryReading], sign: int | None,
                      interval_s: float) -> dict[str, Any]:
    """Mean drain power and integrated energy (mJ) over evenly spaced readings."""
    warnings = battery_warnings(readings)
    if not readings:
        return {"mean_power_mw": None, "energy_mj": None, "samples": 0, "warnings": warnings}
    if sign is None:
        try:
            sign = calibrate_current_sign(readings)
        except ValueError as exc:
            return {"mean_power_mw": None, "energy_mj": None, "samples": len(readings),
                    "warnings": [*warnings, str(exc)]}
    powers = [battery_power_mw(r, sign) for r in readings]
    mean = sum(powers) / len(powers)
    return {"mean_power_mw": mean, "energy_mj": mean * interval_s * len(readings),
            "samples": len(readings), "current_sign": sign, "warnings": warnings}
