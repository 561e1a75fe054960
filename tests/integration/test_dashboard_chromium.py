"""The dashboard opened in a real headless Chromium: the plots rendered, with
their data points, from a file on disk with no network. Keeps a screenshot."""

from __future__ import annotations

import re
import shutil

import pytest

pytest.importorskip("sqlalchemy", reason="needs the farm extra: pip install gem-hil[farm]")
pytest.importorskip("plotly", reason="needs the farm extra: pip install gem-hil[farm]")

from harness.dashboard import render_dashboard  # noqa: E402
from harness.history.store import open_store  # noqa: E402
from tests.support import chromium  # noqa: E402
from tests.support.farm_history import populate  # noqa: E402


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    d = tmp_path_factory.mktemp("dash")
    store = open_store(str(d / "history.sqlite"))
    try:
        populate(store, campaigns=12, devices=3)
        path = render_dashboard(store, d)
    finally:
        store.close()
    return path


def plot_chunks(dom: str) -> dict[str, str]:
    """device name -> the DOM of its plot div."""
    out = {}
    for m in re.finditer(r'<div class="device-plot[^"]*"[^>]*data-device="([^"]+)"', dom):
        rest = dom[m.start():]
        ends = [i for i in (rest.find('<div class="device-plot', 10), rest.find("<h2>"))
                if i > 0]
        out[m.group(1)] = rest[: min(ends) if ends else len(rest)]
    return out


def test_page_is_self_contained(page):
    html = page.read_text()
    assert html.count("Plotly.newPlot") == 1  # one loop builds every figure
    assert len(re.findall(r"<script>", html)) == 2  # the bundle once, the page's code once
    assert not re.search(r'<(script|link|img)[^>]+(src|href)="https?:', html)
    assert page.stat().st_size < 8 << 20


def test_chromium_renders_every_point(page):
    reason = chromium.unavailable_reason()
    if reason:
        pytest.skip(reason)
    dom, wall_s = chromium.dump_dom(page)
    assert 'data-rendered="yes"' in dom, "the page's scripts did not finish"
    plots = plot_chunks(dom)
    assert sorted(plots) == ["board-0", "board-1", "board-2"]
    for name, chunk in plots.items():
        expected = int(re.search(r'data-expected-points="(\d+)"', chunk).group(1))
        drawn = chunk.count('class="point"')
        assert expected > 0 and drawn == expected, (name, expected, drawn)
        assert "main-svg" in chunk and "scatterlayer" in chunk
    # 12 nights: p50 + p95 + memory + energy per night for a board that always ran
    assert plots["board-2"].count('class="point"') == 12 * 4
    # board-1 failed twice (nights 3 and 10): its failures are points of their own
    assert "failure (no numbers)" in plots["board-1"]
    assert "failure (no numbers)" not in plots["board-2"]
    # board-0's last two nights regressed: the gate's marks are drawn
    assert "regression (gate)" in plots["board-0"]
    # the campaign table: one row per device, the failed one says why
    table = dom[dom.index('id="campaign-table"'):dom.index("</table>")]
    assert table.count("<tr") == 1 + 3
    assert "regressed" in table
    shot = chromium.screenshot(page, page.parent / "dashboard.png")
    assert shot.stat().st_size > 10_000
    keep = chromium.artifacts_dir() / "dashboard.png"
    shutil.copy(shot, keep)
    print(f"\nscreenshot: {keep}; chromium run {wall_s:.1f} s")
