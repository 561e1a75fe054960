"""The sweep report: quality against latency, memory and energy per device, with
the Pareto front, each point linked to its record (``<report-dir>/sweep.html``).

Quality comes from the ``quality`` block of the point's eval record when the
device evaluated the artifact (the on-device ``eval`` benchmark, harness/quality.py:
macro-F1 with its bootstrap CI from the predictions the device returned), else
from the host evaluation the build wrote into the artifact manifest
(``quality.gem``: macro-F1 with its bootstrap 95 % CI on the hold-out),
labelled "host" on the page and in the
data. A host figure is the torch model's: for an int8 variant that is the model
before the int8 conversion (the conversion's own agreement with fp32 is in the
manifest's ``quantization.vs_fp32_holdout``); a compressed variant's host
figure is the pruned / GPTQ model itself.

A point is on the front of (cost, quality) when no other point of the device
has cost <= and quality >= with one of them strict. Points whose cost is null
("no sensor", or a failed run) are listed, not plotted.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

#: the cost axes: record field -> (label, unit)
AXES: dict[str, tuple[str, str]] = {
    "latency_p50_ms": ("latency p50", "ms"),
    "peak_rss_mb": ("peak RSS", "MB"),
    "energy_per_inference_mj": ("energy per inference", "mJ"),
}
QUALITY_METRIC = "macro_f1"


def pareto_front(points: list[tuple[float, float]]) -> list[bool]:
    """For (cost, quality) pairs: True where no other pair dominates (lower or equal
    cost, higher or equal quality, one strict)."""
    out = []
    for i, (c, q) in enumerate(points):
        dominated = any((c2 <= c and q2 >= q and (c2 < c or q2 > q))
                        for j, (c2, q2) in enumerate(points) if j != i)
        out.append(not dominated)
    return out


def _num(x: Any) -> float | None:
    return float(x) if isinstance(x, int | float) and not isinstance(x, bool) else None


def record_quality(record: dict[str, Any], manifest: dict[str, Any] | None
                   ) -> dict[str, Any]:
    """{value, ci95, source, note} of a point's macro-F1."""
    q = record.get("quality")
    if isinstance(q, dict):  # the eval benchmark: scored from the device's predictions
        fig = (q.get("f1") or {}).get("macro") or {}
        if _num(fig.get("value")) is not None:
            return {"value": _num(fig["value"]), "ci95": fig.get("ci95"),
                    "source": "device", "note": "from the predictions the device returned"}
    gem = ((manifest or {}).get("quality") or {}).get("gem") or {}
    if _num(gem.get(QUALITY_METRIC)) is not None:
        return {"value": _num(gem[QUALITY_METRIC]), "ci95": gem.get(f"{QUALITY_METRIC}_ci95"),
                "source": "host",
                "note": "host evaluation at build time (torch model; an int8 variant's "
                        "figure is before its int8 conversion)"}
    return {"value": None, "ci95": None, "source": None, "note": "no quality figure"}


def collect_points(state: dict[str, Any], report_dir: Path) -> list[dict[str, Any]]:
    """One row per grid point: its settings, costs, quality, verdict and record link."""
    rows = []
    for key in state["grid"]:
        entry = state["points"].get(key)
        if entry is None:
            continue
        record: dict[str, Any] = {}
        if entry.get("record"):
            p = report_dir / entry["record"]
            if p.is_file():
                record = json.loads(p.read_text(encoding="utf-8"))
        manifest = None
        folder = entry.get("artifact_folder")
        if folder and (Path(folder) / "manifest.json").is_file():
            manifest = json.loads((Path(folder) / "manifest.json").read_text(encoding="utf-8"))
        eval_rec: dict[str, Any] = {}
        if entry.get("eval_record") and (report_dir / entry["eval_record"]).is_file():
            eval_rec = json.loads((report_dir / entry["eval_record"]).read_text(encoding="utf-8"))
        lat = record.get("latency_ms") or {}
        costs = {
            "latency_p50_ms": _num(lat.get("p50_ms")),
            "peak_rss_mb": _num((record.get("memory") or {}).get("peak_rss_mb")),
            "energy_per_inference_mj": _num(
                (record.get("energy") or {}).get("energy_per_inference_mj")),
        }
        ok = entry.get("status") == "done" and record.get("overall_verdict") != "error"
        rows.append({
            "key": key, "device": entry["device"], "model": entry["model"],
            "variant": entry["variant"], "format": entry.get("format"),
            "label": f"{entry['model']}-{entry['variant']} ({entry.get('format')})",
            "status": entry.get("status"), "verdict": entry.get("verdict"),
            "emulated": bool((record.get("device") or {}).get("emulated")),
            "record": entry.get("record"), "eval_record": entry.get("eval_record"),
            "error": entry.get("error"),
            "quality": record_quality(eval_rec or record, manifest),
            **{k: (v if ok else None) for k, v in costs.items()},
        })
    return rows


def build_payload(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per device and axis: the plotted points (cost, quality, link) and the front."""
    devices: dict[str, Any] = {}
    for r in rows:
        devices.setdefault(r["device"], {"emulated": r["emulated"], "axes": {}})
    for dev, d in devices.items():
        mine = [r for r in rows if r["device"] == dev]
        for axis, (label, unit) in AXES.items():
            pts = [r for r in mine if r[axis] is not None and r["quality"]["value"] is not None]
            front = pareto_front([(r[axis], r["quality"]["value"]) for r in pts])
            d["axes"][axis] = {
                "label": f"{label} ({unit})",
                "x": [r[axis] for r in pts], "y": [r["quality"]["value"] for r in pts],
                "text": [r["label"] for r in pts], "link": [r["record"] for r in pts],
                "source": [r["quality"]["source"] for r in pts],
                "on_front": front,
                "missing": [r["label"] for r in mine if r not in pts],
            }
    return {"devices": devices, "quality_metric": QUALITY_METRIC}


def render_sweep(state: dict[str, Any], report_dir: Path, title: str = "gem-hil sweep"
                 ) -> Path:
    """Write ``report_dir/sweep.html`` (one self-contained file) and return its path."""
    from harness.dashboard.render import render_page

    report_dir = Path(report_dir).resolve()
    rows = collect_points(state, report_dir)
    payload = build_payload(rows)
    sources = sorted({r["quality"]["source"] for r in rows if r["quality"]["source"]})
    return render_page("sweep.html.j2", report_dir / "sweep.html", payload, rows=rows,
                       axes=AXES, title=title, sources=sources, state=state,
                       state_file=os.path.basename("sweep-state.json"))
