"""HistoryStore: write records as benchmarks end, read them back for the gate
and the dashboard.

Every write is one transaction (``with self.session() as s, s.begin()``): a
farm killed at any moment leaves the database consistent and loses at most
the benchmark that was running. SQLite runs in WAL mode with a busy timeout,
so the farm's per-device processes can write to one file at once.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, delete, event, func, insert, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from harness.errors import ConfigError
from harness.history import samples as codec
from harness.history.tables import Campaign, Device, Failure, Metric, Run, Samples
from harness.history.url import normalize_url, redact

#: the store's URL when neither --history nor the inventory names one
DEFAULT_URL_ENV = "GEM_HIL_HISTORY"
#: SQLite waits this long for another process's write before failing
SQLITE_BUSY_S = 60.0


def default_url(report_root: Path | str = "reports") -> str:
    """$GEM_HIL_HISTORY, else a SQLite file beside the reports."""
    env = os.environ.get(DEFAULT_URL_ENV)
    if env:
        return env
    return f"sqlite:///{Path(report_root).resolve() / 'history.sqlite'}"


def utc(dt: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; everything stored is UTC."""
    if dt is None:
        return None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def now() -> datetime:
    return datetime.now(UTC)


def parse_utc(text_value: str | None) -> datetime:
    if not text_value:
        return now()
    return datetime.strptime(text_value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


@dataclass(frozen=True)
class StoredRun:
    """A run as read back: the summary columns and (when asked) the full record."""

    pk: int
    record_id: str
    campaign_id: str | None
    device: str
    model: str
    variant: str
    benchmark: str
    created_utc: datetime
    overall_verdict: str
    valid: bool | None
    error_kind: str | None
    p50_ms: float | None
    p95_ms: float | None
    p95_ci_low_ms: float | None
    p95_ci_high_ms: float | None
    peak_rss_mb: float | None
    energy_per_inference_mj: float | None
    record_path: str | None
    log_path: str | None
    record: dict[str, Any] | None = None


class HistoryStore:
    """One database: SQLite file or PostgreSQL. Create with open_store()."""

    def __init__(self, url: str, engine: Engine) -> None:
        self.url = url
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def session(self) -> Session:
        return self._sessions()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Session]:
        """One transaction: committed on success, rolled back on any exception."""
        with self.session() as s, s.begin():
            yield s

    def close(self) -> None:
        self.engine.dispose()

    # -- schema -------------------------------------------------------------

    def migrate(self) -> str:
        """Upgrade the schema to the newest shipped migration; return the revision.

        On PostgreSQL an advisory lock serialises farm hosts starting at once."""
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", "harness.history:migrations")
        with self.engine.begin() as conn:
            if self.dialect == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(4101966)"))
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
        return self.revision() or ""

    def revision(self) -> str | None:
        from alembic.runtime.migration import MigrationContext

        with self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    # -- campaigns ------------------------------------------------------------

    def start_campaign(self, campaign_id: str, name: str, inventory: str | None = None,
                       host: str | None = None, started: datetime | None = None) -> None:
        with contextlib.suppress(IntegrityError), self.transaction() as s:  # another host won
            if s.get(Campaign, campaign_id) is None:
                s.add(Campaign(id=campaign_id, name=name, started_utc=started or now(),
                               status="running",
                               inventory=inventory, host=host))

    def finish_campaign(self, campaign_id: str, status: str = "finished") -> None:
        with self.transaction() as s:
            s.execute(update(Campaign).where(Campaign.id == campaign_id)
                      .values(status=status, finished_utc=now()))

    def campaigns(self, limit: int | None = None) -> list[Campaign]:
        """Newest first."""
        with self.session() as s:
            q = select(Campaign).order_by(Campaign.started_utc.desc(), Campaign.id.desc())
            if limit:
                q = q.limit(limit)
            return list(s.scalars(q))

    # -- records --------------------------------------------------------------

    def add_record(self, record: Mapping[str, Any], campaign_id: str | None = None,
                   record_path: Path | str | None = None,
                   log_path: Path | str | None = None) -> int:
        """Store one result record (run, raw samples, metrics, failure) in one
        transaction; return the run's key. The same record twice is stored once."""
        from harness.budgets import record_measurements

        rec = json.loads(json.dumps(record))  # a private copy we may strip
        lat = rec.get("latency_ms") or {}
        raw = lat.pop("samples_ms", None) or []
        warm = lat.pop("warmup_samples_ms", None) or []
        art = rec.get("artifact") or {}
        dev = rec.get("device") or {}
        mem = rec.get("memory") or {}
        energy = rec.get("energy") or {}
        err = rec.get("error") or None
        created = parse_utc(rec.get("created_utc"))
        ci = lat.get("p95_ci_ms") or [None, None]
        run = Run(record_id=rec["record_id"], campaign_id=campaign_id, run_id=rec.get("run_id"),
                  device=dev.get("name", "?"), model=str(art.get("model")),
                  variant=str(art.get("variant")),
                  benchmark=str((rec.get("benchmark") or {}).get("name")),
                  created_utc=created, overall_verdict=rec.get("overall_verdict", "error"),
                  valid=(rec.get("validity") or {}).get("valid"),
                  emulated=bool(dev.get("emulated")),
                  error_kind=err.get("kind") if err else None,
                  p50_ms=lat.get("p50_ms"), p95_ms=lat.get("p95_ms"), p95_ci_low_ms=ci[0],
                  p95_ci_high_ms=ci[1], peak_rss_mb=mem.get("peak_rss_mb"),
                  energy_per_inference_mj=energy.get("energy_per_inference_mj"),
                  record_path=str(record_path) if record_path else None,
                  log_path=str(log_path) if log_path else None,
                  record_json=json.dumps(rec, separators=(",", ":")))
        try:
            with self.transaction() as s:
                s.add(run)
                s.flush()
                if raw or warm:
                    s.execute(insert(Samples), [{
                        "run_pk": run.id, "codec": codec.CODEC, "count": len(raw),
                        "samples": codec.pack(raw), "warmup_count": len(warm),
                        "warmup": codec.pack(warm)}])
                verdicts = {v.get("metric"): v for v in rec.get("verdicts") or []}
                rows = []
                for metric, m in record_measurements(record).items():
                    v = verdicts.get(metric) or {}
                    rows.append({"run_pk": run.id, "device": run.device, "variant": run.variant,
                                 "metric": metric, "created_utc": created, "value": m.value,
                                 "ci_low": m.ci_low, "ci_high": m.ci_high,
                                 "limit": v.get("limit"), "unit": v.get("unit"),
                                 "verdict": v.get("verdict")})
                s.execute(insert(Metric), rows)  # one executemany, not an ORM object each
                if err or run.overall_verdict == "error":
                    s.add(Failure(campaign_id=campaign_id, run_pk=run.id, device=run.device,
                                  variant=run.variant, stage="run",
                                  kind=str((err or {}).get("kind") or "error"),
                                  reason=str((err or {}).get("message") or "the run failed"),
                                  created_utc=created, log_path=run.log_path))
                self._touch_device(s, run.device, created, run.overall_verdict, campaign_id)
        except IntegrityError:
            with self.session() as s:
                pk = s.scalar(select(Run.id).where(Run.record_id == rec["record_id"]))
            if pk is None:
                raise
            return int(pk)
        return int(run.id)

    def add_gate_rows(self, run_pk: int, rows: Sequence[Any]) -> None:
        """The gate's regression rows (harness.gate.GateRow) for a stored run: the
        dashboard marks a regression where the gate found one."""
        with self.transaction() as s:
            run = s.get(Run, run_pk)
            if run is None:
                return
            for r in rows:
                s.add(Metric(run_pk=run_pk, device=run.device, variant=run.variant,
                             metric=r.metric, created_utc=run.created_utc,
                             value=r.change_pct, ci_low=r.ci_low, ci_high=r.ci_high,
                             limit=r.limit, unit="%", verdict=r.verdict))

    def add_failure(self, device: str, stage: str, kind: str, reason: str,
                    campaign_id: str | None = None, variant: str | None = None,
                    log_path: Path | str | None = None, when: datetime | None = None) -> int:
        """A failure that produced no record (health check, lease, set-up)."""
        with self.transaction() as s:
            f = Failure(campaign_id=campaign_id, device=device, variant=variant, stage=stage,
                        kind=kind, reason=reason, created_utc=when or now(),
                        log_path=str(log_path) if log_path else None)
            s.add(f)
            s.flush()
            self._touch_device(s, device, f.created_utc, "error", campaign_id)
            return int(f.id)

    @staticmethod
    def _touch_device(s: Session, device: str, when: datetime, verdict: str,
                      campaign_id: str | None) -> None:
        values: dict[str, Any] = {"last_run_utc": when, "last_verdict": verdict}
        if campaign_id:
            values["last_campaign_id"] = campaign_id
        # insert-if-absent first, in one statement: two farm processes writing a new
        # device's first records at once must not fail either record's transaction
        s.execute(_insert_ignore(s, Device, name=device, health="unknown", health_failures=0))
        s.execute(update(Device).where(Device.name == device).values(**values))

    def failures(self, campaign_id: str | None = None, device: str | None = None
                 ) -> list[Failure]:
        with self.session() as s:
            q = select(Failure).order_by(Failure.created_utc, Failure.id)
            if campaign_id is not None:
                q = q.where(Failure.campaign_id == campaign_id)
            if device is not None:
                q = q.where(Failure.device == device)
            return list(s.scalars(q))

    def runs(self, campaign_id: str | None = None, device: str | None = None,
             with_records: bool = False) -> list[StoredRun]:
        """Runs oldest first, optionally of one campaign or device."""
        q = select(Run).order_by(Run.created_utc, Run.id)
        if campaign_id is not None:
            q = q.where(Run.campaign_id == campaign_id)
        if device is not None:
            q = q.where(Run.device == device)
        return self._read_runs(q, with_records)

    def last_runs(self, device: str, model: str, variant: str, benchmark: str = "latency",
                  n: int = 5, good_only: bool = True, before: datetime | None = None,
                  exclude_campaign: str | None = None) -> list[StoredRun]:
        """The last n runs of device x model x variant x benchmark, oldest first,
        with their records and raw samples (the gate's baseline). Good = the run
        passed its gate and was valid."""
        q = (select(Run).where(Run.device == device, Run.model == model,
                               Run.variant == variant, Run.benchmark == benchmark)
             .order_by(Run.created_utc.desc(), Run.id.desc()).limit(n))
        if good_only:
            q = q.where(Run.overall_verdict == "pass", Run.valid.is_not(False))
        if before is not None:
            q = q.where(Run.created_utc < before)
        if exclude_campaign is not None:
            q = q.where((Run.campaign_id != exclude_campaign) | Run.campaign_id.is_(None))
        return list(reversed(self._read_runs(q, True)))

    def metric_history(self, device: str, variant: str, metric: str, n: int = 30
                       ) -> list[tuple[datetime, float | None, float | None, str | None]]:
        """(time, value, limit, verdict) of the last n values, oldest first."""
        with self.session() as s:
            rows = s.execute(
                select(Metric.created_utc, Metric.value, Metric.limit, Metric.verdict)
                .where(Metric.device == device, Metric.variant == variant,
                       Metric.metric == metric)
                .order_by(Metric.created_utc.desc(), Metric.id.desc()).limit(n)).all()
        return [(utc(r[0]), r[1], r[2], r[3]) for r in reversed(rows)]  # type: ignore[misc]

    def _read_runs(self, q: Any, with_records: bool) -> list[StoredRun]:
        with self.session() as s:
            rows = list(s.scalars(q))
            blobs: dict[int, Samples] = {}
            if with_records and rows:
                ids = [r.id for r in rows]
                blobs = {b.run_pk: b for b in s.scalars(select(Samples)
                                                        .where(Samples.run_pk.in_(ids)))}
        out = []
        for r in rows:
            rec = None
            if with_records:
                rec = json.loads(r.record_json)
                b = blobs.get(r.id)
                if rec.get("latency_ms") is not None:
                    rec["latency_ms"]["samples_ms"] = codec.unpack(b.samples, b.codec) \
                        if b else []
                    rec["latency_ms"]["warmup_samples_ms"] = codec.unpack(b.warmup, b.codec) \
                        if b else []
                    if b is None:
                        rec["latency_ms"]["samples_pruned"] = True
            out.append(StoredRun(r.id, r.record_id, r.campaign_id, r.device, r.model,
                                 r.variant, r.benchmark, utc(r.created_utc),  # type: ignore
                                 r.overall_verdict, r.valid, r.error_kind, r.p50_ms, r.p95_ms,
                                 r.p95_ci_low_ms, r.p95_ci_high_ms, r.peak_rss_mb,
                                 r.energy_per_inference_mj, r.record_path, r.log_path, rec))
        return out

    def sample_count(self) -> int:
        with self.session() as s:
            return int(s.scalar(select(func.count()).select_from(Samples)) or 0)

    # -- retention --------------------------------------------------------------

    def prune_samples(self, older_than_days: float) -> int:
        """Drop raw samples of runs older than this; summaries, metrics and
        failures stay. Returns how many runs lost their samples."""
        cutoff = now() - timedelta(days=older_than_days)
        with self.transaction() as s:
            old = select(Run.id).where(Run.created_utc < cutoff).scalar_subquery()
            res = s.execute(delete(Samples).where(Samples.run_pk.in_(old)))
            return int(res.rowcount or 0)

    # -- devices ------------------------------------------------------------------

    def devices(self) -> list[Device]:
        with self.session() as s:
            return list(s.scalars(select(Device).order_by(Device.name)))

    def device(self, name: str) -> Device | None:
        with self.session() as s:
            return s.get(Device, name)

    def ensure_devices(self, names: Sequence[str]) -> None:
        for name in names:
            with contextlib.suppress(IntegrityError), self.transaction() as s:
                if s.get(Device, name) is None:
                    s.add(Device(name=name, health="unknown", health_failures=0))


def _insert_ignore(s: Session, table: Any, **values: Any) -> Any:
    """INSERT ... ON CONFLICT DO NOTHING in the session's dialect (SQLite, PostgreSQL)."""
    if s.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(table).values(**values).on_conflict_do_nothing()


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    # WAL + NORMAL: a killed process never corrupts the file or loses a committed
    # record; only a power cut can drop the newest commits (FULL's fsync per record
    # was ~50 ms here)
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_S * 1000)}")
    cur.close()


def open_store(url: str, migrate: bool = True) -> HistoryStore:
    """Connect (creating a SQLite file's folder) and bring the schema up to date."""
    full = normalize_url(url)
    if full.startswith("sqlite:///"):
        path = Path(full[len("sqlite:///"):])
        path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(full, connect_args={"timeout": SQLITE_BUSY_S})
        event.listen(engine, "connect", _sqlite_pragmas)
    else:
        engine = create_engine(full, pool_pre_ping=True)
    store = HistoryStore(full, engine)
    if migrate:
        try:
            store.migrate()
        except Exception as exc:
            store.close()
            raise ConfigError(f"history store {redact(url)}: cannot open or upgrade: "
                              f"{exc}") from exc
    return store
