"""`gem-hil gate --history URL`: the baseline from the store equals the same
records given as --baseline DIR."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("sqlalchemy", reason="needs the farm extra: pip install gem-hil[farm]")

from harness.history.store import open_store  # noqa: E402
from tests.unit.test_gate_cli import BASELINE, RECORDS, gate  # noqa: E402


@pytest.fixture
def history(tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'h.sqlite'}"
    store = open_store(url)
    for path in BASELINE.glob("*.json"):
        store.add_record(json.loads(path.read_text()), record_path=path)
    # a failed night of the same key: never part of a baseline
    bad = json.loads(next((RECORDS / "failing").glob("fixture-pi4-*.json")).read_text())
    bad["record_id"] = "failing-night"
    bad["created_utc"] = "2026-11-19T12:00:00Z"
    store.add_record(bad)
    store.close()
    return url


def rows_of(js: Path) -> list[dict]:
    return json.loads(js.read_text())["rows"]


@pytest.mark.parametrize("folder,code", [("regressed", 1), ("passing", 0)])
def test_history_baseline_matches_folder_baseline(history, tmp_path, folder, code, capsys):
    a, b = tmp_path / "hist.json", tmp_path / "dir.json"
    assert gate("--results", str(RECORDS / folder), "--history", history, "--no-profiles",
                "--json", str(a)) == code
    assert gate("--results", str(RECORDS / folder), "--baseline", str(BASELINE),
                "--no-profiles", "--json", str(b)) == code
    reg_a = [r for r in rows_of(a) if r["metric"] == "regression_latency_median"]
    reg_b = [r for r in rows_of(b) if r["metric"] == "regression_latency_median"]
    assert len(reg_a) == 2  # both devices compared
    for x, y in zip(sorted(reg_a, key=lambda r: r["device"]),
                    sorted(reg_b, key=lambda r: r["device"]), strict=True):
        assert (x["verdict"], x["measured"], x["change_pct"]) == \
            (y["verdict"], y["measured"], y["change_pct"])
        assert x["source"] == y["source"]  # the same baseline records, by name
    if folder == "regressed":
        assert "REGRESSED" in capsys.readouterr().out


def test_empty_history_is_a_warning_not_a_pass(tmp_path, capsys):
    url = str(tmp_path / "empty.sqlite")  # a bare path is a SQLite file
    assert gate("--results", str(RECORDS / "passing"), "--history", url, "--no-profiles") == 0
    out = capsys.readouterr().out
    assert "regression not checked" in out
    assert "regression_latency_median" not in out


def test_last_must_be_positive(history, capsys):
    assert gate("--results", str(RECORDS / "passing"), "--history", history, "--last",
                "0") == 64
