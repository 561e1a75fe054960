"""The store's tables (SQLAlchemy 2 declarative).

What is a column and what stays in the record JSON: anything a dashboard or
the gate filters or sorts on is a column with an index (device, variant,
metric, time); the full record (minus its raw samples) is kept as JSON so
nothing the record says is lost. Raw samples live in their own table,
compressed, so retention can drop them without touching a summary.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Campaign(Base):
    """One farm campaign (a night): many devices, one id."""

    __tablename__ = "campaigns"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    started_utc: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    finished_utc: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(String(20))  # running finished interrupted
    inventory: Mapped[str | None] = mapped_column(Text)
    host: Mapped[str | None] = mapped_column(String(200))


class Run(Base):
    """One result record: the summary columns plus the record itself."""

    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    record_id: Mapped[str] = mapped_column(String(64), unique=True)
    campaign_id: Mapped[str | None] = mapped_column(
        String(64), ForeignKey("campaigns.id", ondelete="SET NULL"), index=True)
    run_id: Mapped[str | None] = mapped_column(String(64))
    device: Mapped[str] = mapped_column(String(200))
    model: Mapped[str] = mapped_column(String(100))
    variant: Mapped[str] = mapped_column(String(50))
    benchmark: Mapped[str] = mapped_column(String(100))
    created_utc: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    overall_verdict: Mapped[str] = mapped_column(String(20))
    valid: Mapped[bool | None] = mapped_column(Boolean)
    emulated: Mapped[bool] = mapped_column(Boolean, default=False)
    error_kind: Mapped[str | None] = mapped_column(String(100))
    p50_ms: Mapped[float | None] = mapped_column(Float)
    p95_ms: Mapped[float | None] = mapped_column(Float)
    p95_ci_low_ms: Mapped[float | None] = mapped_column(Float)
    p95_ci_high_ms: Mapped[float | None] = mapped_column(Float)
    peak_rss_mb: Mapped[float | None] = mapped_column(Float)
    energy_per_inference_mj: Mapped[float | None] = mapped_column(Float)
    record_path: Mapped[str | None] = mapped_column(Text)
    log_path: Mapped[str | None] = mapped_column(Text)
    #: the record with latency_ms.samples_ms / warmup_samples_ms moved to `samples`
    record_json: Mapped[str] = mapped_column(Text)

    __table_args__ = (
        # "last N runs of device x variant": the gate's baseline and the trend plots
        Index("ix_runs_device_variant_time", "device", "model", "variant", "benchmark",
              "created_utc"),
    )


class Samples(Base):
    """A run's raw latency samples (float64, zlib): statistics can be recomputed."""

    __tablename__ = "samples"

    run_pk: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"),
                                        primary_key=True)
    codec: Mapped[str] = mapped_column(String(40))  # "zlib+float64le"
    count: Mapped[int] = mapped_column(Integer)
    samples: Mapped[bytes] = mapped_column(LargeBinary)
    warmup_count: Mapped[int] = mapped_column(Integer)
    warmup: Mapped[bytes] = mapped_column(LargeBinary)


class Metric(Base):
    """One measured metric of a run and its budget verdict; the gate's regression
    check against the history is a metric too (regression_latency_median, value =
    change in percent, verdict regressed / pass / inconclusive)."""

    __tablename__ = "metrics"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_pk: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    device: Mapped[str] = mapped_column(String(200))
    variant: Mapped[str] = mapped_column(String(50))
    metric: Mapped[str] = mapped_column(String(100))
    created_utc: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    value: Mapped[float | None] = mapped_column(Float)
    ci_low: Mapped[float | None] = mapped_column(Float)
    ci_high: Mapped[float | None] = mapped_column(Float)
    limit: Mapped[float | None] = mapped_column(Float)
    unit: Mapped[str | None] = mapped_column(String(20))
    verdict: Mapped[str | None] = mapped_column(String(20))

    __table_args__ = (
        Index("ix_metrics_device_variant_metric_time", "device", "variant", "metric",
              "created_utc"),
    )


class Failure(Base):
    """Something that did not produce numbers: a failed run, a failed health check,
    a lost lease. A row of its own so the dashboard shows it as a point."""

    __tablename__ = "failures"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    campaign_id: Mapped[str | None] = mapped_column(
        String(64), ForeignKey("campaigns.id", ondelete="SET NULL"), index=True)
    run_pk: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"))
    device: Mapped[str] = mapped_column(String(200), index=True)
    variant: Mapped[str | None] = mapped_column(String(50))
    stage: Mapped[str] = mapped_column(String(50))  # health run lease transport build
    kind: Mapped[str] = mapped_column(String(100))
    reason: Mapped[str] = mapped_column(Text)
    created_utc: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    log_path: Mapped[str | None] = mapped_column(Text)


class Device(Base):
    """A farm device's state: health (LAVA's good/unknown/bad/maintenance) and lease."""

    __tablename__ = "devices"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    health: Mapped[str] = mapped_column(String(20), default="unknown")
    health_failures: Mapped[int] = mapped_column(Integer, default=0)
    health_note: Mapped[str | None] = mapped_column(Text)
    health_checked_utc: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    lease_holder: Mapped[str | None] = mapped_column(String(200))
    lease_heartbeat_utc: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    lease_expires_utc: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_run_utc: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_verdict: Mapped[str | None] = mapped_column(String(20))
    last_campaign_id: Mapped[str | None] = mapped_column(String(64))
