"""Android thermal and CPU-frequency readings.

Temperatures: /sys/class/thermal/thermal_zone*/temp is in millidegrees C;
`dumpsys thermalservice` prints the thermal HAL's values in degrees C with a
type (3 = SKIN, 2 = BATTERY), which is what Android itself throttles on and
so what the cooldown step waits for. CPU frequencies are in kHz.
"""

from __future__ import annotations

import re

from harness.sensors.android_memory import AndroidParseError

#: One round trip prints every zone as "type temp" and every CPU as "cpuN kHz".
ZONES_SCRIPT = ('for z in /sys/class/thermal/thermal_zone*; do '
                'echo "zone $(cat $z/type 2>/dev/null) $(cat $z/temp 2>/dev/null)"; done')
CPUFREQ_SCRIPT = ('for c in /sys/devices/system/cpu/cpu[0-9]*; do '
                  'echo "${c##*/} $(cat $c/cpufreq/scaling_cur_freq 2>/dev/null) '
                  '$(cat $c/cpufreq/scaling_governor 2>/dev/null)"; done')

_TEMP_RE = re.compile(r"Temperature\{mValue=(-?[\d.]+|NaN), mType=(\d+), mName=([^,]+),")
TYPE_SKIN = 3
TYPE_BATTERY = 2


def parse_zones(text: str, command: str = "thermal zones") -> dict[str, float]:
    """Zone type -> degrees C."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "zone" and parts[2].lstrip("-").isdigit():
            out[parts[1]] = int(parts[2]) / 1000.0
    if not out:
        raise AndroidParseError(command, "no readable thermal zone", text)
    return out


def parse_cpufreq(text: str, command: str = "cpufreq") -> tuple[dict[str, int], dict[str, str]]:
    """(cpuN -> current kHz, cpuN -> governor)."""
    freqs: dict[str, int] = {}
    govs: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].startswith("cpu") and parts[1].isdigit():
            freqs[parts[0]] = int(parts[1])
            if len(parts) >= 3:
                govs[parts[0]] = parts[2]
    if not freqs:
        raise AndroidParseError(command, "no 'cpuN kHz' line", text)
    return freqs, govs


def parse_thermalservice(text: str, command: str = "dumpsys thermalservice"
                         ) -> dict[str, tuple[float, int]]:
    """Sensor name -> (degrees C, HAL type) from 'Current temperatures from HAL'."""
    start = text.find("Current temperatures from HAL:")
    if start < 0:
        raise AndroidParseError(command, "no 'Current temperatures from HAL:' section", text)
    end = text.find("Current cooling devices", start)
    section = text[start: end if end > 0 else len(text)]
    out = {name.strip(): (float(v), int(t)) for v, t, name in _TEMP_RE.findall(section)
           if v != "NaN"}
    if not out:
        raise AndroidParseError(command, "no Temperature{...} rows", text)
    return out


def hottest_of_type(temps: dict[str, tuple[float, int]], hal_type: int) -> float | None:
    values = [v for v, t in temps.values() if t == hal_type]
    return max(values) if values else None
