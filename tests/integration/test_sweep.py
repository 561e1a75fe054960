"""`gem-hil sweep` on the local device and the emulated Pixel 6 (ADB peer):
interrupted after its first points, resumed without redoing them, artifacts
built once for both devices, and the Pareto report opened in headless Chromium
(every point drawn; the drawn front is exactly the non-dominated points).
Quality comes from the eval benchmark run at every point (the device's
predictions scored on the host)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("adb_shell", reason="the ADB tests need adb-shell==0.4.4")
pytest.importorskip("plotly", reason="needs the farm extra: pip install gem-hil[farm]")
pytest.importorskip("torch", reason="the sweep builds artifacts: needs the build extra")

from harness.record import schema_errors  # noqa: E402
from harness.sweep_report import pareto_front  # noqa: E402
from tests.adb_peer import fixtures as peer_fixtures  # noqa: E402
from tests.adb_peer.fixtures import make_targets_dir  # noqa: E402
from tests.support import chromium  # noqa: E402
from tests.support.profiles import make_steady, steady_local  # noqa: E402

adb_key = peer_fixtures.adb_key
adb_peer = peer_fixtures.adb_peer

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.adb, pytest.mark.slow]
VARIANTS = "fp32,sparse50-mix"
DEVICES = "local,pixel6-emulated"


def sweep_argv(targets: Path, reports: Path) -> list[str]:
    return [sys.executable, "-m", "harness.cli", "sweep", "--devices", DEVICES,
            "--variants", VARIANTS, "--models", "tiny", "--targets-dir", str(targets),
            "--report-dir", str(reports)]


def finished(reports: Path) -> dict:
    try:
        return json.loads((reports / "sweep-state.json").read_text())["points"]
    except (OSError, ValueError):
        return {}


def test_sweep_resumes_and_renders_the_pareto_front(adb_peer, adb_key, tmp_path):
    targets = make_targets_dir(tmp_path / "targets", adb_peer, adb_key)
    make_steady(targets / "pixel6-emulated.toml")
    steady_local(targets)
    reports = tmp_path / "sweep"
    env = dict(os.environ)

    # 1. start, interrupt (Ctrl-C) once the first point is finished
    p = subprocess.Popen(sweep_argv(targets, reports), cwd=REPO, env=env,
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 900
        while not finished(reports) and p.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert p.poll() is None, "the sweep ended before it could be interrupted: " + \
            p.communicate()[1][-2000:]
        os.killpg(p.pid, signal.SIGINT)
        out, err = p.communicate(timeout=300)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    assert p.returncode == 128 + signal.SIGINT, (p.returncode, err[-2000:])
    first = finished(reports)
    assert 1 <= len(first) < 4, first.keys()
    kept = {k: (reports / e["record"]).read_bytes() for k, e in first.items()}

    # 2. the same command again: the finished points are not redone
    res = subprocess.run(sweep_argv(targets, reports), cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=1500,
                         stdin=subprocess.DEVNULL)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert f"{4 - len(first)} points run, {len(first)} already finished (resumed)" in res.stdout
    state = json.loads((reports / "sweep-state.json").read_text())
    assert len(state["points"]) == 4
    for k, body in kept.items():
        assert state["points"][k]["run_id"] == first[k]["run_id"]
        assert (reports / state["points"][k]["record"]).read_bytes() == body
    for entry in state["points"].values():
        assert entry["status"] == "done", entry
        rec = json.loads((reports / entry["record"]).read_text())
        assert schema_errors(rec) == []
        assert rec["artifact"]["variant"] == entry["variant"]
        assert rec["device"]["name"] == entry["device"]
    # one artifact per variant, shared by both devices (the content-hash cache)
    by_variant: dict[str, set[str]] = {}
    for e in state["points"].values():
        by_variant.setdefault(e["variant"], set()).add(e["artifact_folder"])
    assert all(len(f) == 1 for f in by_variant.values()), by_variant
    manifest = json.loads((Path(by_variant["sparse50-mix"].pop()) / "manifest.json").read_text())
    assert manifest["compression"]["zero_fraction"] == pytest.approx(0.5)

    # 3. the page, in a real browser
    page = reports / "sweep.html"
    html = page.read_text()
    assert not re.search(r'<(script|link|img)[^>]+(src|href)="https?:', html)
    data = json.loads(re.search(r'id="sweep-data">(.*?)</script>', html, re.S).group(1))
    assert sorted(data["devices"]) == ["local", "pixel6-emulated"]
    for dev in data["devices"].values():  # quality from the predictions the device returned
        assert set(dev["axes"]["latency_p50_ms"]["source"]) == {"device"}
    for entry in state["points"].values():
        ev = json.loads((reports / entry["eval_record"]).read_text())
        assert ev["benchmark"]["name"] == "eval" and ev["quality"]["f1"]["macro"]["value"] >= 0
    links = re.findall(r'class="record-link" href="([^"]+)"', html)
    assert len(links) == 4 and all((reports / ln).is_file() for ln in links)
    reason = chromium.unavailable_reason()
    if reason:
        pytest.skip(reason)
    dom, _ = chromium.dump_dom(page)
    assert 'data-rendered="yes"' in dom, "the page's scripts did not finish"
    plots = re.findall(r'<div class="pareto-plot[^"]*"([^>]*)>', dom)
    assert len(plots) == 2 * 3
    drawn_plots = 0
    for attrs in plots:
        dev = re.search(r'data-device="([^"]+)"', attrs).group(1)
        axis = re.search(r'data-axis="([^"]+)"', attrs).group(1)
        a = data["devices"][dev]["axes"][axis]
        if not a["x"]:
            continue  # e.g. energy on local: no sensor, said so on the page
        drawn_plots += 1
        pts = json.loads(re.search(r'data-all-points="([^"]+)"', attrs).group(1)
                         .replace("&quot;", '"'))
        front = json.loads(re.search(r'data-front-points="([^"]+)"', attrs).group(1)
                           .replace("&quot;", '"'))
        assert len(pts) == 2, (dev, axis, pts)  # every variant of the device is a point
        want = sorted(tuple(x) for x, on in zip(pts, pareto_front([tuple(q) for q in pts]),
                                                strict=True) if on)
        assert sorted(tuple(x) for x in front) == want, (dev, axis)
        for c, q in front:  # and none of them is dominated by any drawn point
            assert not any(c2 <= c and q2 >= q and (c2 < c or q2 > q) for c2, q2 in pts)
    assert drawn_plots >= 4  # latency + memory on both devices at least
    chunk_points = len(re.findall(r'class="point[ "]', dom))  # markers (with customdata)
    assert chunk_points == int(re.search(r'<body[^>]*data-expected-points="(\d+)"',
                                         dom).group(1))
    shot = chromium.screenshot(page, tmp_path / "sweep.png", size="1400,1400")
    assert shot.stat().st_size > 10_000
