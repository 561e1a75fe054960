"""What the dashboard shows, read from the store.

Per device and variant, a column per series over the last N campaigns
(latency p50/p95 with their confidence bounds, memory, energy, the budgets,
the gate's regression verdicts) plus the device's failures as points of their
own; and the newest campaign's table (device x metric: value, limit, verdict,
change vs the previous campaign, links to the record and the device log).
Columns, not plot traces: the page builds the traces, so each time stamp is
sent once per series group, which keeps a 1000-campaign page small.
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select

from harness.history.store import HistoryStore, utc
from harness.history.tables import Campaign, Failure, Metric, Run

#: the metrics plotted and tabled, in order
TABLE_METRICS = ("latency_p50_ms", "latency_p95_ms", "peak_rss_mb", "energy_per_inference_mj",
                 "regression_latency_median")
SERIES = {"latency_p50_ms": "p50", "latency_p95_ms": "p95", "peak_rss_mb": "rss",
          "energy_per_inference_mj": "energy"}


def _r(x: float | None) -> float | None:
    """4 significant digits: the page's size, not the number's precision, is what
    the dashboard trades (the record keeps every digit)."""
    return None if x is None else float(f"{x:.4g}")


@dataclass
class Cell:
    metric: str
    value: float | None
    limit: float | None
    verdict: str | None
    unit: str | None
    change_pct: float | None = None


@dataclass
class TableRow:
    device: str
    variant: str
    verdict: str
    cells: dict[str, Cell] = field(default_factory=dict)
    record: str | None = None
    log: str | None = None
    failure: str | None = None


@dataclass
class DashboardData:
    campaigns: list[dict[str, Any]]
    devices: dict[str, dict[str, Any]]
    table: list[TableRow]
    latest: dict[str, Any] | None


def _link(path: str | None, report_dir: Path) -> str | None:
    if not path:
        return None
    try:
        return os.path.relpath(path, report_dir)
    except ValueError:
        return path


def load(store: HistoryStore, report_dir: Path, campaigns: int = 60) -> DashboardData:
    camps = list(reversed(store.campaigns(limit=campaigns)))  # oldest first
    ids = [c.id for c in camps]
    with store.session() as s:
        runs = list(s.execute(
            select(Run.id, Run.campaign_id, Run.device, Run.model, Run.variant,
                   Run.created_utc, Run.overall_verdict, Run.record_path, Run.log_path,
                   Run.error_kind).where(Run.campaign_id.in_(ids))
            .order_by(Run.created_utc, Run.id)))
        metrics = list(s.execute(
            select(Metric.run_pk, Metric.metric, Metric.value, Metric.ci_low, Metric.ci_high,
                   Metric.limit, Metric.verdict, Metric.unit)
            .join(Run, Run.id == Metric.run_pk).where(Run.campaign_id.in_(ids),
                                                     Metric.metric.in_(TABLE_METRICS))))
        fails = list(s.scalars(select(Failure).where(Failure.campaign_id.in_(ids))
                               .order_by(Failure.created_utc)))
    by_run: dict[int, dict[str, Any]] = defaultdict(dict)
    for m in metrics:
        by_run[m.run_pk][m.metric] = m
    camp_time = {c.id: utc(c.started_utc) for c in camps}
    devices: dict[str, dict[str, Any]] = {}

    def series(device: str, variant: str) -> dict[str, list[Any]]:
        dev = devices.setdefault(device, {"variants": {}, "failures": {"t": [], "why": [],
                                                                       "variant": []}})
        return dev["variants"].setdefault(variant, defaultdict(list))

    for r in runs:
        if r.error_kind is not None or r.overall_verdict == "error":
            continue  # an errored run is a failure point (its failure row), not a gap
        col = series(r.device, r.variant)
        m = by_run.get(r.id, {})
        t = camp_time.get(r.campaign_id) or utc(r.created_utc)
        col["t"].append(t.strftime("%Y-%m-%dT%H:%M:%S"))
        col["campaign"].append(r.campaign_id)
        col["verdict"].append(r.overall_verdict)
        for metric, key in SERIES.items():
            row = m.get(metric)
            col[key].append(_r(row.value) if row else None)
            if key in ("p50", "p95"):
                col[f"{key}_lo"].append(_r(row.ci_low) if row else None)
                col[f"{key}_hi"].append(_r(row.ci_high) if row else None)
            if key in ("p95", "rss"):
                col[f"{key}_limit"].append(_r(row.limit) if row else None)
        reg = m.get("regression_latency_median")
        col["regressed"].append(1 if reg is not None and reg.verdict == "regressed" else 0)
        col["regression_pct"].append(_r(reg.value) if reg is not None else None)
    for f in fails:
        dev = devices.setdefault(f.device, {"variants": {}, "failures": {"t": [], "why": [],
                                                                         "variant": []}})
        t = camp_time.get(f.campaign_id) or utc(f.created_utc)
        dev["failures"]["t"].append(t.strftime("%Y-%m-%dT%H:%M:%S"))
        dev["failures"]["why"].append(f"{f.stage}/{f.kind}: {f.reason}"[:300])
        dev["failures"]["variant"].append(f.variant)
    for dev in devices.values():
        dev["variants"] = {v: dict(c) for v, c in sorted(dev["variants"].items())}
    latest = camps[-1] if camps else None
    table = _table(latest, camps, runs, by_run, fails, report_dir) if latest else []
    return DashboardData(
        campaigns=[{"id": c.id, "name": c.name, "status": c.status,
                    "started": utc(c.started_utc).strftime("%Y-%m-%d %H:%M UTC")}  # type: ignore
                   for c in reversed(camps)],
        devices=dict(sorted(devices.items())), table=table,
        latest={"id": latest.id, "status": latest.status,
                "started": utc(latest.started_utc).strftime("%Y-%m-%d %H:%M UTC")}  # type: ignore
        if latest else None)


def _table(latest: Campaign, camps: list[Campaign], runs: list[Any],
           by_run: dict[int, dict[str, Any]], fails: list[Failure], report_dir: Path
           ) -> list[TableRow]:
    order = {c.id: i for i, c in enumerate(camps)}
    prev_value: dict[tuple[str, str, str], float | None] = {}
    rows: list[TableRow] = []
    for r in runs:  # oldest first: prev_value holds the previous campaign's value
        key_campaign = order.get(r.campaign_id, -1)
        m = by_run.get(r.id, {})
        if r.campaign_id == latest.id:
            row = TableRow(r.device, r.variant, r.overall_verdict,
                           record=_link(r.record_path, report_dir),
                           log=_link(r.log_path, report_dir))
            for metric in TABLE_METRICS:
                x = m.get(metric)
                if x is None:
                    continue
                prev = prev_value.get((r.device, r.variant, metric))
                change = None
                if metric != "regression_latency_median" and prev and x.value is not None:
                    change = (x.value / prev - 1) * 100
                row.cells[metric] = Cell(metric, x.value, x.limit, x.verdict, x.unit, change)
            rows.append(row)
        elif key_campaign < order[latest.id]:
            for metric, x in m.items():
                if x.value is not None:
                    prev_value[(r.device, r.variant, metric)] = x.value
    for f in fails:
        if f.campaign_id == latest.id and f.run_pk is None:
            rows.append(TableRow(f.device, f.variant or "-", "error",
                                 log=_link(f.log_path, report_dir),
                                 failure=f"{f.stage}/{f.kind}: {f.reason}"))
        elif f.campaign_id == latest.id:
            for row in rows:
                if row.device == f.device and row.variant == (f.variant or row.variant) \
                        and row.verdict == "error":
                    row.failure = f"{f.stage}/{f.kind}: {f.reason}"
    rows.sort(key=lambda r: (r.device, r.variant))
    return rows
