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
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the store needs sqlalchemy; a sweep page (render_page) does not
    from harness.history.store import HistoryStore

TEMPLATES = Path(__file__).resolve().parent / "templates"


@cache
def plotly_js() -> str:
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.4g}"


def render_page(template: str, path: Path, payload: object, **context: object) -> Path:
    """Render one self-contained page (plotly inlined once, ``payload`` as compact
    JSON for the page's script) from templates/<template>, written atomically.
    The farm dashboard and the sweep report (harness/sweep_report.py) both use it."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             trim_blocks=True, lstrip_blocks=True)
    env.filters["num"] = _fmt
    html = env.get_template(template).render(
        plotly_js=plotly_js(), payload=json.dumps(payload, separators=(",", ":")),
        generated=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), **context)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text(html, encoding="utf-8")
    os.replace(tmp, path)
    return path


def render_dashboard(store: HistoryStore, report_dir: Path, campaigns: int = 60,
                     out_name: str = "index.html") -> Path:
    """Write report_dir/index.html (atomically) and return its path."""
    from harness.dashboard.data import TABLE_METRICS, load

    report_dir = Path(report_dir).resolve()
    report_dir.mkdir(parents=True, exist_ok=True)
    data = load(store, report_dir, campaigns)
    return render_page("index.html.j2", report_dir / out_name, {"devices": data.devices},
                       data=data, metrics=TABLE_METRICS)
