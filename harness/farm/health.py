"""Device health, LAVA-style: good / unknown / bad / maintenance.

Before each device's run the farm checks, over the device's real link:
reachable (a trivial command), free disk space in the work folder, the
runtime importable by the device's interpreter, and the hottest thermal zone
under the cooldown threshold. Then:

* all pass -> good (the failure count resets);
* an infrastructure error (the link itself failed) -> unknown: the next run
  checks again;
* a failed check (full disk, runtime missing, too hot) or an infrastructure
  error counts as a health failure; ``quarantine_after`` of them in a row
  put the device in quarantine (bad) until ``gem-hil farm return DEVICE``.

bad and maintenance devices are not run; the campaign records that as a
failure of their own (a device that did not run is a point on the dashboard,
not a gap).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from harness.errors import HarnessError, TransportError
from harness.history.store import HistoryStore, now
from harness.history.tables import Device

STATES = ("good", "unknown", "bad", "maintenance")
#: states a device is run in
RUNNABLE = ("good", "unknown")
CHECK_TIMEOUT_S = 60.0

_DISK = r"""mkdir -p "$1" && df -Pk "$1" | tail -n 1"""
_TEMP = (r"""for z in /sys/class/thermal/thermal_zone*/temp; do [ -r "$z" ] && cat "$z"; """
         r"""done; true""")


@dataclass
class HealthResult:
    ok: bool
    #: the link failed (not the device's state): health becomes unknown
    infrastructure: bool = False
    problems: list[str] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def reason(self) -> str:
        return "; ".join(self.problems) or "healthy"


def check_device(session: Any, max_temperature_c: float, min_free_disk_mb: float
                 ) -> HealthResult:
    """Run the health checks on an open DeviceSession. TransportError propagates
    (the caller retries it, then calls it an infrastructure error)."""
    p = session.profile
    t = session.transport
    res = t.run(["true"], timeout_s=CHECK_TIMEOUT_S)
    if not res.ok:
        return HealthResult(False, True, [f"unreachable: `true` exited {res.rc}"])
    out = HealthResult(True)
    if p.platform != "linux":  # Android devices: reachability only (no shell python)
        out.facts["checks"] = ["reachable"]
        return out
    disk = t.run(["sh", "-c", _DISK, "sh", p.run.workdir], timeout_s=CHECK_TIMEOUT_S)
    try:
        free_mb = int(disk.stdout.split()[3]) / 1024
        out.facts["free_disk_mb"] = round(free_mb, 1)
        if free_mb < min_free_disk_mb:
            out.problems.append(f"disk: {free_mb:.0f} MB free in {p.run.workdir}, below "
                                f"{min_free_disk_mb:g} MB")
    except (IndexError, ValueError):
        out.problems.append(f"disk: cannot read free space of {p.run.workdir} "
                            f"(exit {disk.rc}): {disk.stderr_tail(2).strip()}")
    module = {"onnxruntime": "onnxruntime"}.get(p.runtime)
    if module:
        imp = t.run([p.run.python, "-c", f"import {module}"], timeout_s=CHECK_TIMEOUT_S)
        if not imp.ok:
            out.problems.append(f"runtime: {p.run.python} cannot import {module} (exit "
                                f"{imp.rc}): {imp.stderr_tail(2).strip()}")
    temps = t.run(["sh", "-c", _TEMP], timeout_s=CHECK_TIMEOUT_S)
    zones = [int(x) / 1000 for x in temps.stdout.split() if x.strip().lstrip("-").isdigit()]
    if zones:
        from harness.sensors.session import profile_tables

        limit = profile_tables(p)[1].get("cooldown_below_c") or max_temperature_c
        out.facts["max_temperature_c"] = max(zones)
        if max(zones) > float(limit):
            out.problems.append(f"temperature: {max(zones):.1f} C above {float(limit):g} C")
    out.ok = not out.problems
    return out


def run_check(session: Any, max_temperature_c: float, min_free_disk_mb: float,
              retry: Any) -> HealthResult:
    """check_device with transport retries; a link that never answers is an
    infrastructure result, not an exception."""
    try:
        return retry(lambda: check_device(session, max_temperature_c, min_free_disk_mb))
    except TransportError as exc:
        return HealthResult(False, True, [f"unreachable: {exc}"])
    except HarnessError as exc:
        return HealthResult(False, True, [f"health check failed: {exc}"])


def record(store: HistoryStore, device: str, result: HealthResult,
           quarantine_after: int) -> str:
    """Store the outcome; return the device's new health."""
    store.ensure_devices([device])
    with store.transaction() as s:
        row = s.get(Device, device)
        assert row is not None
        row.health_checked_utc = now()
        row.health_note = result.reason
        if result.ok:
            row.health, row.health_failures = "good", 0
        else:
            row.health_failures = (row.health_failures or 0) + 1
            if row.health_failures >= quarantine_after:
                row.health = "bad"
                row.health_note = (f"quarantined after {row.health_failures} failed health "
                                   f"checks (last: {result.reason}); gem-hil farm return "
                                   f"{device} puts it back")
            else:
                row.health = "unknown"
        return row.health


def mark_unknown(store: HistoryStore, device: str, why: str) -> None:
    """An infrastructure error during a run: check the device again next time."""
    store.ensure_devices([device])
    with store.transaction() as s:
        row = s.get(Device, device)
        if row is not None and row.health not in ("bad", "maintenance"):
            row.health, row.health_note = "unknown", why


def set_health(store: HistoryStore, device: str, health: str, note: str) -> None:
    """`farm return` (good... after a person fixed it) and maintenance."""
    if health not in STATES:
        raise ValueError(health)
    store.ensure_devices([device])
    with store.transaction() as s:
        row = s.get(Device, device)
        assert row is not None
        row.health, row.health_note = health, note
        if health in ("good", "unknown"):
            row.health_failures = 0
