"""The sweep's pieces without devices: the grid, the state file's guard, the
Pareto front on hand-made points, and the quality source chosen per record."""

from __future__ import annotations

import json

import pytest

from harness.errors import ConfigError
from harness.sweep import STATE_FILE, grid, load_state
from harness.sweep_report import build_payload, pareto_front, record_quality


def test_grid_is_the_full_product_devices_outermost():
    pts = grid(["a", "b"], ["tiny"], ["fp32", "int8"], ["onnx", None])
    assert len(pts) == 8 and [p.device for p in pts[:4]] == ["a"] * 4
    assert len({p.key for p in pts}) == 8
    with pytest.raises(ConfigError):
        grid([], ["tiny"], ["fp32"], [None])


def test_state_of_another_grid_is_refused(tmp_path):
    pts = grid(["a"], ["tiny"], ["fp32"], [None])
    state = load_state(tmp_path, pts)
    assert state["points"] == {} and state["grid"] == [pts[0].key]
    (tmp_path / STATE_FILE).write_text(json.dumps(state))
    assert load_state(tmp_path, pts)["grid"] == state["grid"]
    with pytest.raises(ConfigError, match="another sweep's grid"):
        load_state(tmp_path, grid(["a"], ["tiny"], ["int8"], [None]))
    (tmp_path / STATE_FILE).write_text("{")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_state(tmp_path, pts)


def test_pareto_front_by_hand():
    # (cost, quality): b dominates c (cheaper, better); a and b trade off; d ties b's
    # cost with lower quality (dominated); e equals b exactly (neither dominates)
    pts = [(1.0, 0.5), (2.0, 0.8), (3.0, 0.7), (2.0, 0.6), (2.0, 0.8)]
    assert pareto_front(pts) == [True, True, False, False, True]
    assert pareto_front([]) == []


def test_quality_source_device_before_host():
    manifest = {"quality": {"gem": {"macro_f1": 0.7, "macro_f1_ci95": [0.6, 0.8]}}}
    host = record_quality({}, manifest)
    assert host["source"] == "host" and host["value"] == 0.7
    eval_block = {"benchmark": "eval", "f1": {"macro": {"value": 0.65, "ci95": [0.6, 0.7]}}}
    dev = record_quality({"quality": eval_block}, manifest)
    assert dev["source"] == "device" and dev["value"] == 0.65
    assert record_quality({}, None)["value"] is None


def test_payload_skips_null_costs_and_marks_the_front():
    def row(label, lat, q, energy=None):
        return {"device": "d", "emulated": False, "label": label, "record": f"{label}.json",
                "latency_p50_ms": lat, "peak_rss_mb": 10.0, "energy_per_inference_mj": energy,
                "quality": {"value": q, "source": "host"}}

    p = build_payload([row("a", 1.0, 0.5), row("b", 2.0, 0.9), row("c", 3.0, 0.6),
                       row("d", None, 0.99)])
    lat = p["devices"]["d"]["axes"]["latency_p50_ms"]
    assert lat["text"] == ["a", "b", "c"] and lat["on_front"] == [True, True, False]
    assert lat["missing"] == ["d"]
    assert p["devices"]["d"]["axes"]["energy_per_inference_mj"]["x"] == []


def fake_sweep(tmp_path):
    """A finished 2-device sweep folder with hand-made records and manifests."""
    from harness.sweep import Point

    pts = [Point(d, "tiny", v, "onnx") for d in ("a", "b") for v in ("fp32", "int8", "x")]
    state = {"grid": [p.key for p in pts], "points": {}}
    costs = {"fp32": (2.0, 100.0, 0.8), "int8": (1.0, 80.0, 0.7), "x": (3.0, 120.0, 0.6)}
    for p in pts:
        lat, rss, f1 = costs[p.variant]
        folder = tmp_path / "art" / p.variant
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "manifest.json").write_text(json.dumps(
            {"quality": {"gem": {"macro_f1": f1, "macro_f1_ci95": [f1 - 0.05, f1 + 0.05]}}}))
        rec = tmp_path / "points" / p.key / "r.json"
        rec.parent.mkdir(parents=True)
        rec.write_text(json.dumps({
            "overall_verdict": "pass", "device": {"emulated": p.device == "b"},
            "latency_ms": {"p50_ms": lat * (2 if p.device == "b" else 1)},
            "memory": {"peak_rss_mb": rss},
            "energy": {"energy_per_inference_mj": 5.0 * lat if p.device == "b" else None}}))
        state["points"][p.key] = {**p.as_dict(), "status": "done", "verdict": "pass",
                                  "record": str(rec.relative_to(tmp_path)),
                                  "artifact_folder": str(folder)}
    return state


def test_sweep_page_has_a_plot_per_device_and_axis(tmp_path):
    pytest.importorskip("plotly", reason="needs the farm extra: pip install gem-hil[farm]")
    from harness.sweep_report import render_sweep

    page = render_sweep(fake_sweep(tmp_path), tmp_path)
    html = page.read_text()
    assert html.count('class="pareto-plot"') == 6
    data = json.loads(html.split('id="sweep-data">')[1].split("</script>")[0])
    a_lat = data["devices"]["a"]["axes"]["latency_p50_ms"]
    # int8 is cheapest, fp32 best: both on the front; x is worse and dearer than fp32
    assert dict(zip(a_lat["text"], a_lat["on_front"], strict=True)) == {
        "tiny-fp32 (onnx)": True, "tiny-int8 (onnx)": True, "tiny-x (onnx)": False}
    assert data["devices"]["a"]["axes"]["energy_per_inference_mj"]["x"] == []
    assert len(data["devices"]["b"]["axes"]["energy_per_inference_mj"]["x"]) == 3
    assert html.count('class="record-link"') == 6 and "(emulated)" in html


class FakeSession:
    """A device that writes a record per run and can be told to be interrupted."""

    opened = 0
    runs: list = []
    interrupt_at: int | None = None
    eval_ok = False

    def __init__(self) -> None:
        FakeSession.opened += 1

    def run_benchmark(self, art, budget_overrides, report_dir, run_id, name="latency"):
        from harness.bench import BenchOutcome

        if name == "eval":
            if not FakeSession.eval_ok:
                raise AssertionError("the eval benchmark ran with quality=host")
            report_dir.mkdir(parents=True, exist_ok=True)
            path = report_dir / f"{run_id}-eval.json"
            rec = {"overall_verdict": "pass", "benchmark": {"name": "eval"},
                   "quality": {"f1": {"macro": {"value": 0.61, "ci95": [0.5, 0.7]}}}}
            path.write_text(json.dumps(rec))
            return BenchOutcome(rec, path)
        FakeSession.runs.append(run_id)
        if FakeSession.interrupt_at == len(FakeSession.runs):
            raise KeyboardInterrupt
        report_dir.mkdir(parents=True, exist_ok=True)
        path = report_dir / f"{run_id}.json"
        rec = {"overall_verdict": "pass", "run_id": run_id}
        path.write_text(json.dumps(rec))
        return BenchOutcome(rec, path)

    def close(self) -> None:
        pass


def test_run_sweep_resumes_without_redoing_points(tmp_path, monkeypatch):
    import itertools
    from dataclasses import dataclass

    from harness import plan as plan_mod
    from harness.errors import ArtifactError
    from harness.sweep import run_sweep

    ids = itertools.count()

    @dataclass
    class FakePlan:
        device: str
        variant: str
        report_dir: object
        run_id: str
        fmt: str = "onnx"
        budget_overrides: object = None

        @property
        def profile(self):
            return self.device

        def build_artifact(self):
            if self.variant == "broken":
                raise ArtifactError("cannot build tiny-broken (onnx): planted")
            return type("Art", (), {"folder": tmp_path / "art" / self.variant})()

        def open_device(self):
            return FakeSession()

    def fake_make_plan(values, report_subdir=None, **_kw):
        return FakePlan(values["device"], values["gem_variant"],
                        tmp_path / "sweep" / report_subdir, f"run{next(ids)}")

    monkeypatch.setattr(plan_mod, "make_plan", fake_make_plan)
    FakeSession.runs, FakeSession.opened, FakeSession.interrupt_at = [], 0, 2
    pts = grid(["a", "b"], ["tiny"], ["fp32", "broken", "int8"], [None])
    with pytest.raises(KeyboardInterrupt):
        run_sweep(pts, {}, tmp_path / "sweep", quality="host")
    state = json.loads((tmp_path / "sweep" / STATE_FILE).read_text())
    done = dict(state["points"])
    assert [e["status"] for e in done.values()] == ["done", "failed"]  # a:fp32, a:broken
    assert "planted" in done[pts[1].key]["error"]
    assert FakeSession.opened == 1  # a failed build does not reopen the device
    first_record = (tmp_path / "sweep" / done[pts[0].key]["record"]).read_text()

    FakeSession.interrupt_at = None
    before = len(FakeSession.runs)
    res = run_sweep(pts, {}, tmp_path / "sweep", quality="host")
    assert res.skipped == [pts[0].key, pts[1].key]  # finished (done or failed): not redone
    assert res.ran == [p.key for p in pts[2:]]
    assert len(FakeSession.runs) - before == 3  # a:int8 again (interrupted), b:fp32, b:int8
    assert (tmp_path / "sweep" / res.state["points"][pts[0].key]["record"]).read_text() \
        == first_record
    assert [res.state["points"][p.key]["status"] for p in pts] == \
        ["done", "failed", "done", "done", "failed", "done"]


def test_quality_device_runs_eval_and_the_page_uses_it(tmp_path, monkeypatch):
    from harness import plan as plan_mod
    from harness.sweep import run_sweep
    from harness.sweep_report import collect_points

    class Plan:
        fmt, budget_overrides, profile = "onnx", None, "a"

        def __init__(self, values, report_subdir=None, **_kw):
            self.report_dir = tmp_path / "sweep" / report_subdir
            self.run_id = "r-" + values["gem_variant"]

        def build_artifact(self):
            return type("Art", (), {"folder": tmp_path / "none"})()

        def open_device(self):
            return FakeSession()

    monkeypatch.setattr(plan_mod, "make_plan", Plan)
    FakeSession.runs, FakeSession.interrupt_at, FakeSession.eval_ok = [], None, True
    try:
        res = run_sweep(grid(["a"], ["tiny"], ["fp32"], [None]), {}, tmp_path / "sweep")
    finally:
        FakeSession.eval_ok = False
    (entry,) = res.state["points"].values()
    assert entry["eval_record"].endswith("r-fp32-eval.json") and entry["status"] == "done"
    (row,) = collect_points(res.state, tmp_path / "sweep")
    assert row["quality"] == {"value": 0.61, "ci95": [0.5, 0.7], "source": "device",
                              "note": "from the predictions the device returned"}
