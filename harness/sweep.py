"""The design-space sweep: model size x variant (compression method, quantization)
x format over devices, one benchmark per point, resumable.

Every point is one RunPlan (harness/plan.py), exactly as `gem-hil bench` makes
it, so a point's artifact comes from the same content-hash cache (a second
sweep, or a second device, builds nothing) and its record lands in
``<report-dir>/points/<point>/``. Progress is a state file,
``<report-dir>/sweep-state.json``, rewritten atomically after each point: a
point is ``done`` (a record exists, whatever its verdict) or ``failed`` (the
build or the run failed; its failure record is the data point). An
interrupted sweep started again with the same report folder skips every point
the state file lists and runs the rest; a point interrupted half-way is not
listed (its "interrupted" record stays in its folder, the point runs again).
A different grid in the same folder is refused (it would mix two studies).

The report (harness/sweep_report.py) puts quality against latency, memory and
energy per device, with the Pareto front.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import ConfigError, HarnessError

STATE_FILE = "sweep-state.json"
STATE_VERSION = 1


@dataclass(frozen=True)
class Point:
    """One cell of the grid."""

    device: str
    model: str
    variant: str
    fmt: str | None  # None: the format the device's runtime consumes

    @property
    def key(self) -> str:
        return f"{self.device}__{self.model}-{self.variant}__{self.fmt or 'default'}"

    def as_dict(self) -> dict[str, Any]:
        return {"device": self.device, "model": self.model, "variant": self.variant,
                "format": self.fmt}


def grid(devices: Sequence[str], models: Sequence[str], variants: Sequence[str],
         formats: Sequence[str | None]) -> list[Point]:
    """Every combination, devices outermost (one device session's points run together)."""
    if not devices or not models or not variants or not formats:
        raise ConfigError("a sweep needs at least one device, model, variant and format")
    return [Point(d, m, v, f) for d in devices for m in models for f in formats
            for v in variants]


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def load_state(report_dir: Path, points: Sequence[Point]) -> dict[str, Any]:
    """The state file of this grid in ``report_dir`` (a fresh one when there is none)."""
    path = report_dir / STATE_FILE
    keys = [p.key for p in points]
    if not path.exists():
        return {"state_version": STATE_VERSION, "grid": keys, "points": {},
                "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc}); delete it to start the sweep "
                          "again from the beginning") from None
    if state.get("grid") != keys:
        raise ConfigError(f"{path}: this report folder holds another sweep's grid "
                          f"({len(state.get('grid') or [])} points); give a new --report-dir, "
                          "or the same devices/models/variants/formats to resume it")
    return state


@dataclass
class SweepResult:
    state: dict[str, Any]
    ran: list[str]  # point keys run by this call
    skipped: list[str]  # finished before (resumed)
    page: Path | None = None


def run_sweep(points: Sequence[Point], values: dict[str, Any], report_dir: Path,
              say: Callable[[str], None] = lambda _m: None, quality: str = "device"
              ) -> SweepResult:
    """Run every unfinished point of ``points``; ``values`` are the shared options
    (Option.dest keys: targets_dir, artifact_cache, budget, accept_new_host_key).

    Each point runs the latency benchmark (latency, memory, energy) and, with
    ``quality="device"``, the eval benchmark (the device's predictions scored on
    the host: the record's quality block); ``quality="host"`` skips it and the
    report uses the build's host evaluation, labelled so."""
    if quality not in ("device", "host"):
        raise ConfigError(f"sweep quality {quality!r}: expected device or host")
    from harness.plan import make_plan

    report_dir = Path(report_dir).resolve()
    report_dir.mkdir(parents=True, exist_ok=True)
    state = load_state(report_dir, points)
    state_path = report_dir / STATE_FILE
    # every point's plan first: an unknown device or a broken profile stops the sweep
    # here, before anything is built or run
    plans = [make_plan({**values, "device": point.device, "gem_model": point.model,
                        "gem_variant": point.variant, "gem_format": point.fmt,
                        "report_dir": str(report_dir)},
                       report_subdir=f"points/{point.key}") for point in points]
    _write_json(state_path, state)
    ran, skipped = [], []
    # (profile, open DeviceSession): a device's points share one session (the agent
    # and artifacts pushed once), as in `pytest --device`
    session: Any = None
    try:
        for i, (point, plan) in enumerate(zip(points, plans, strict=True), 1):
            if point.key in state["points"]:
                skipped.append(point.key)
                continue
            say(f"[{i}/{len(points)}] {point.key}")
            entry: dict[str, Any] = {**point.as_dict(), "format": plan.fmt,
                                     "run_id": plan.run_id}
            t0 = time.perf_counter()
            try:
                art = plan.build_artifact()
                entry["artifact_folder"] = str(art.folder)
                if session is None or session[0] != plan.profile:
                    if session is not None:
                        _close_quietly(session[1])
                        session = None
                    session = (plan.profile, plan.open_device())
                outcome = session[1].run_benchmark(
                    art, budget_overrides=plan.budget_overrides, report_dir=plan.report_dir,
                    run_id=plan.run_id)
                entry.update(record=_rel(outcome.path, report_dir),
                             verdict=outcome.record["overall_verdict"])
                if quality == "device":  # the eval benchmark: quality from the device
                    ev = session[1].run_benchmark(
                        art, name="eval", budget_overrides=plan.budget_overrides,
                        report_dir=plan.report_dir, run_id=plan.run_id)
                    entry.update(eval_record=_rel(ev.path, report_dir),
                                 eval_verdict=ev.record["overall_verdict"])
                entry["status"] = "done"
            except HarnessError as exc:
                # the build or run failed: a data point (its failure record is in the
                # folder); after a failed run the device is opened afresh for the next
                if session is not None and "artifact_folder" in entry:
                    _close_quietly(session[1])
                    session = None
                recs = sorted(plan.report_dir.glob("*.json")) if plan.report_dir.exists() \
                    else []
                entry.update(status="failed", error=str(exc)[:500],
                             record=_rel(recs[-1], report_dir) if recs else None,
                             verdict="error")
            entry["wall_s"] = round(time.perf_counter() - t0, 3)
            state["points"][point.key] = entry
            _write_json(state_path, state)
            ran.append(point.key)
    finally:
        if session is not None:
            _close_quietly(session[1])
    state["finished_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    _write_json(state_path, state)
    return SweepResult(state, ran, skipped)


def _close_quietly(session: Any) -> None:
    try:
        session.close()
    except HarnessError:
        pass  # the device was already lost; its point's record says so


def _rel(path: Path | None, root: Path) -> str | None:
    return None if path is None else os.path.relpath(Path(path).resolve(), root)
