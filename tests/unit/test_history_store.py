"""The history store on SQLite: migrations, one-transaction writes, queries, retention."""

from __future__ import annotations

import copy
import json
import sqlite3
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

pytest.importorskip("sqlalchemy", reason="needs the farm extra: pip install gem-hil[farm]")

from harness.errors import ConfigError  # noqa: E402
from harness.history.store import open_store  # noqa: E402
from harness.history.tables import Base  # noqa: E402
from harness.history.url import normalize_url, redact  # noqa: E402

RECORDS = Path(__file__).resolve().parents[1] / "data" / "records"


def fixture_record(folder: str = "passing", device: str = "fixture-pi4") -> dict:
    [path] = (RECORDS / folder).glob(f"{device}-*.json")
    return json.loads(path.read_text())


def variant_of(rec: dict, days_ago: float, verdict: str | None = None) -> dict:
    r = copy.deepcopy(rec)
    r["record_id"] = uuid.uuid4().hex
    when = datetime.now(UTC) - timedelta(days=days_ago)
    r["created_utc"] = when.strftime("%Y-%m-%dT%H:%M:%SZ")
    if verdict:
        r["overall_verdict"] = verdict
    return r


@pytest.fixture
def store(tmp_path):
    s = open_store(str(tmp_path / "h.sqlite"))
    yield s
    s.close()


def test_migrations_build_exactly_the_declared_schema(store):
    """Alembic's upgrade, not create_all, makes the tables: autogenerate finds no drift."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    assert store.revision() == "0001"
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []
    assert store.migrate() == "0001"  # a second upgrade is a no-op


def test_record_round_trip_keeps_raw_samples(store):
    rec = fixture_record()
    pk = store.add_record(rec, record_path="r.json", log_path="d.log")
    assert store.add_record(rec) == pk  # the same record twice is stored once
    [run] = store.runs(with_records=True)
    assert run.device == rec["device"]["name"] and run.p95_ms == rec["latency_ms"]["p95_ms"]
    assert run.record["latency_ms"]["samples_ms"] == rec["latency_ms"]["samples_ms"]
    assert run.record["latency_ms"]["warmup_samples_ms"] == rec["latency_ms"]["warmup_samples_ms"]
    assert run.record_path == "r.json" and run.log_path == "d.log"
    # the samples are not duplicated inside the record JSON
    with sqlite3.connect(store.url[len("sqlite:///"):]) as db:
        (blob,) = db.execute("select record_json from runs").fetchone()
        (comp,) = db.execute("select length(samples) from samples").fetchone()
    assert "samples_ms" not in blob
    assert comp < 8 * len(rec["latency_ms"]["samples_ms"])


def test_error_record_is_a_failure_row(store):
    rec = fixture_record("error")
    store.add_record(rec, campaign_id=None)
    [f] = store.failures()
    assert f.stage == "run" and f.device == rec["device"]["name"]
    assert f.reason == rec["error"]["message"]
    assert store.device(rec["device"]["name"]).last_verdict == "error"


def test_last_runs_is_newest_n_good_oldest_first(store):
    rec = fixture_record()
    for days, verdict in ((5, "pass"), (4, "pass"), (3, "fail"), (2, "pass"), (1, "pass")):
        store.add_record(variant_of(rec, days, verdict))
    dev, art = rec["device"]["name"], rec["artifact"]
    got = store.last_runs(dev, art["model"], art["variant"], rec["benchmark"]["name"], n=3)
    assert [r.overall_verdict for r in got] == ["pass"] * 3
    assert [r.created_utc for r in got] == sorted(r.created_utc for r in got)
    ages = [(datetime.now(UTC) - r.created_utc).days for r in got]
    assert ages == [4, 2, 1]  # the failing night is skipped, the oldest good one dropped
    assert store.last_runs(dev, art["model"], "other", n=3) == []
    hist = store.metric_history(dev, art["variant"], "latency_p95_ms", n=10)
    assert len(hist) == 5 and all(v == rec["latency_ms"]["p95_ms"] for _, v, _, _ in hist)


def test_retention_prunes_samples_never_summaries(store):
    rec = fixture_record()
    store.add_record(variant_of(rec, 40))
    store.add_record(variant_of(rec, 1))
    assert store.sample_count() == 2
    assert store.prune_samples(30) == 1
    assert store.sample_count() == 1
    runs = store.runs(with_records=True)
    assert len(runs) == 2 and all(r.p95_ms is not None for r in runs)  # summaries intact
    old = min(runs, key=lambda r: r.created_utc)
    assert old.record["latency_ms"]["samples_ms"] == []
    assert old.record["latency_ms"]["samples_pruned"] is True


def test_a_failed_write_leaves_nothing_half_written(store, monkeypatch):
    """One transaction per record: a crash between the run row and its samples
    rolls the run row back too."""
    from harness.history import samples

    def boom(_values):
        raise RuntimeError("disk gone")

    monkeypatch.setattr(samples, "pack", boom)
    with pytest.raises(RuntimeError):
        store.add_record(fixture_record())
    assert store.runs() == [] and store.sample_count() == 0


def test_campaigns_and_failures(store):
    store.start_campaign("c1", "nightly")
    store.add_failure("board-a", "health", "unreachable", "no route", campaign_id="c1")
    store.finish_campaign("c1")
    [c] = store.campaigns()
    assert c.status == "finished" and c.finished_utc is not None
    [f] = store.failures(campaign_id="c1")
    assert (f.device, f.stage, f.kind) == ("board-a", "health", "unreachable")


def test_urls():
    assert normalize_url("postgresql://u:pw@h:5/db") == "postgresql+psycopg://u:pw@h:5/db"
    assert redact("postgresql://u:pw@h:5/db") == "postgresql://u:***@h:5/db"
    assert normalize_url("x.sqlite").startswith("sqlite:////")
    with pytest.raises(ConfigError, match="expected sqlite"):
        normalize_url("mysql://h/db")
