"""The history store on a real PostgreSQL server (psycopg 3), as farm hosts share it."""

from __future__ import annotations

import json
import multiprocessing
import uuid
from pathlib import Path

import pytest

pytest.importorskip("sqlalchemy", reason="needs the farm extra: pip install gem-hil[farm]")
pytest.importorskip("psycopg", reason="needs the farm extra: pip install gem-hil[farm]")

from harness.history.store import open_store  # noqa: E402

RECORDS = Path(__file__).resolve().parents[1] / "data" / "records"


def _record(folder: str) -> dict:
    [path] = (RECORDS / folder).glob("fixture-pi4-*.json")
    return json.loads(path.read_text())


def _write_many(url: str, n: int, out) -> None:
    store = open_store(url)  # every process migrates: the advisory lock serialises them
    store.start_campaign("c", "nightly")  # all four at once: one row
    rec = _record("passing")
    for _ in range(n):
        rec["record_id"] = uuid.uuid4().hex
        store.add_record(rec, campaign_id="c")
    store.close()
    out.put("ok")


def test_store_on_postgres(postgres):
    url = postgres.create_database("history_basic")
    store = open_store(url)
    try:
        assert store.dialect == "postgresql" and store.revision() == "0001"
        store.start_campaign("c", "nightly")
        rec = _record("passing")
        store.add_record(rec, campaign_id="c")
        store.add_record(_record("error"), campaign_id="c")
        [good] = store.last_runs("fixture-pi4", rec["artifact"]["model"],
                                 rec["artifact"]["variant"], rec["benchmark"]["name"])
        assert good.record["latency_ms"]["samples_ms"] == rec["latency_ms"]["samples_ms"]
        [f] = store.failures(campaign_id="c")
        assert f.kind == "agent"
    finally:
        store.close()


def test_processes_migrate_and_write_at_once(postgres):
    """Four processes open (and upgrade) one fresh database at the same moment and
    write 10 records each: nothing lost, nothing doubled."""
    url = postgres.create_database("history_concurrent")
    ctx = multiprocessing.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_write_many, args=(url, 10, q)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0] * 4
    store = open_store(url)
    try:
        assert len(store.runs(campaign_id="c")) == 40 and store.sample_count() == 40
    finally:
        store.close()
