"""The published record schema covers what the sensor and validity code emit."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from harness.record import schema
from harness.sensors.energy import empty_energy
from harness.sensors.reader import LocalSysfs
from harness.sensors.session import SensorSession
from harness.validity import assess

RECORDS = Path(__file__).resolve().parents[1] / "data" / "records"


def test_session_and_validity_output_validate(tmp_path):
    (tmp_path / "sys/class/hwmon/hwmon0").mkdir(parents=True)
    (tmp_path / "sys/class/hwmon/hwmon0/name").write_text("ina260\n")
    (tmp_path / "sys/class/hwmon/hwmon0/power1_input").write_text("2000000\n")
    t = [1_000_000_000]
    s = SensorSession(LocalSysfs(tmp_path), None, {"idle_s": 0.5},
                      clock_ns=lambda: t[0], sleep=lambda d: t.__setitem__(0, t[0] + int(d * 1e9)))
    paths = s.before_run()
    win = [5_000_000_000, 6_000_000_000]
    samples = {paths[0]: [[win[0] + i * 50_000_000, "2500000"] for i in range(21)]}
    fields = s.after_run({"sysfs_samples": samples, "window_monotonic_ns": win,
                          "run": {"count": 10}})
    # idle 2.0 W, 2.5 W over the 1 s window of 10 inferences: 0.5 J above idle
    assert fields["energy"]["energy_per_inference_mj"] == pytest.approx(50.0, rel=1e-3)
    val = assess(list(20 * np.random.default_rng(0).lognormal(0, 0.05, 100)), duration_s=2.0)
    full = schema()
    base = json.loads((RECORDS / "passing" / "fixture-pi4-00000011.json").read_text())

    def check(**parts) -> None:
        jsonschema.Draft202012Validator(full).validate({**base, **parts})

    check(energy=fields["energy"], thermal=fields["thermal"], validity=val.as_record())
    check(energy=empty_energy("no_sensor", "none here"), thermal=None)
    try:
        check(energy=dict(fields["energy"], status="guessed"))
    except jsonschema.ValidationError:
        pass
    else:
        raise AssertionError("the schema accepts an unknown energy status")
