"""Render reports/index.html: one self-contained file that opens from disk.

plotly's JS bundle is inlined once for the whole page (4.8 MB; a page per
figure would repeat it), the data goes in one JSON script element, and the
page builds every figure from it in the browser. No CDN, no font, no fetch:
the file works on a laptop on a train.
"""

from __future__ import annotations

import json
import os
import time
from functools import cache
from pathlib import Path

from harness.dashboard.data import TABLE_METRICS, load
from harness.history.store import HistoryStore

TEMPLATES = Path(__file__).resolve().parent / "templates"


@cache
def plotly_js() -> str:
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.4g}"


def render_dashboard(store: HistoryStore, report_dir: Path, campaigns: int = 60,
                     out_name: str = "index.html") -> Path:
    """Write report_dir/index.html (atomically) and return its path."""
    import jinja2

    t0 = time.perf_counter()
    report_dir = Path(report_dir).resolve()
    report_dir.mkdir(parents=True, exist_ok=True)
    data = load(store, report_dir, campaigns)
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             trim_blocks=True, lstrip_blocks=True)
    env.filters["num"] = _fmt
    payload = {"devices": data.devices}
    html = env.get_template("index.html.j2").render(
        plotly_js=plotly_js(), payload=json.dumps(payload, separators=(",", ":")),
        data=data, metrics=TABLE_METRICS, generated=time.strftime("%Y-%m-%d %H:%M UTC",
                                                                  time.gmtime()))
    path = report_dir / out_name
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text(html, encoding="utf-8")
    os.replace(tmp, path)
    _ = time.perf_counter() - t0
    return path
