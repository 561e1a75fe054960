"""The first schema: campaigns, runs, samples, metrics, failures, devices.

Revision ID: 0001
Revises:
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "campaigns",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("started_utc", TZ, nullable=False),
        sa.Column("finished_utc", TZ, nullable=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("inventory", sa.Text, nullable=True),
        sa.Column("host", sa.String(200), nullable=True),
    )
    op.create_index("ix_campaigns_started_utc", "campaigns", ["started_utc"])
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("record_id", sa.String(64), nullable=False, unique=True),
        sa.Column("campaign_id", sa.String(64),
                  sa.ForeignKey("campaigns.id", ondelete="SET NULL"), nullable=True),
        sa.Column("run_id", sa.String(64), nullable=True),
        sa.Column("device", sa.String(200), nullable=False),
        sa.Column("model", sa.String(100), nullable=False),
        sa.Column("variant", sa.String(50), nullable=False),
        sa.Column("benchmark", sa.String(100), nullable=False),
        sa.Column("created_utc", TZ, nullable=False),
        sa.Column("overall_verdict", sa.String(20), nullable=False),
        sa.Column("valid", sa.Boolean, nullable=True),
        sa.Column("emulated", sa.Boolean, nullable=False),
        sa.Column("error_kind", sa.String(100), nullable=True),
        sa.Column("p50_ms", sa.Float, nullable=True),
        sa.Column("p95_ms", sa.Float, nullable=True),
        sa.Column("p95_ci_low_ms", sa.Float, nullable=True),
        sa.Column("p95_ci_high_ms", sa.Float, nullable=True),
        sa.Column("peak_rss_mb", sa.Float, nullable=True),
        sa.Column("energy_per_inference_mj", sa.Float, nullable=True),
        sa.Column("record_path", sa.Text, nullable=True),
        sa.Column("log_path", sa.Text, nullable=True),
        sa.Column("record_json", sa.Text, nullable=False),
    )
    op.create_index("ix_runs_campaign_id", "runs", ["campaign_id"])
    op.create_index("ix_runs_device_variant_time", "runs",
                    ["device", "model", "variant", "benchmark", "created_utc"])
    op.create_table(
        "samples",
        sa.Column("run_pk", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("codec", sa.String(40), nullable=False),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("samples", sa.LargeBinary, nullable=False),
        sa.Column("warmup_count", sa.Integer, nullable=False),
        sa.Column("warmup", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "metrics",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_pk", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("device", sa.String(200), nullable=False),
        sa.Column("variant", sa.String(50), nullable=False),
        sa.Column("metric", sa.String(100), nullable=False),
        sa.Column("created_utc", TZ, nullable=False),
        sa.Column("value", sa.Float, nullable=True),
        sa.Column("ci_low", sa.Float, nullable=True),
        sa.Column("ci_high", sa.Float, nullable=True),
        sa.Column("limit", sa.Float, nullable=True),
        sa.Column("unit", sa.String(20), nullable=True),
        sa.Column("verdict", sa.String(20), nullable=True),
    )
    op.create_index("ix_metrics_run_pk", "metrics", ["run_pk"])
    op.create_index("ix_metrics_device_variant_metric_time", "metrics",
                    ["device", "variant", "metric", "created_utc"])
    op.create_table(
        "failures",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("campaign_id", sa.String(64),
                  sa.ForeignKey("campaigns.id", ondelete="SET NULL"), nullable=True),
        sa.Column("run_pk", sa.Integer, sa.ForeignKey("runs.id", ondelete="SET NULL"),
                  nullable=True),
        sa.Column("device", sa.String(200), nullable=False),
        sa.Column("variant", sa.String(50), nullable=True),
        sa.Column("stage", sa.String(50), nullable=False),
        sa.Column("kind", sa.String(100), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("created_utc", TZ, nullable=False),
        sa.Column("log_path", sa.Text, nullable=True),
    )
    op.create_index("ix_failures_campaign_id", "failures", ["campaign_id"])
    op.create_index("ix_failures_device", "failures", ["device"])
    op.create_table(
        "devices",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("health", sa.String(20), nullable=False),
        sa.Column("health_failures", sa.Integer, nullable=False),
        sa.Column("health_note", sa.Text, nullable=True),
        sa.Column("health_checked_utc", TZ, nullable=True),
        sa.Column("lease_holder", sa.String(200), nullable=True),
        sa.Column("lease_heartbeat_utc", TZ, nullable=True),
        sa.Column("lease_expires_utc", TZ, nullable=True),
        sa.Column("last_run_utc", TZ, nullable=True),
        sa.Column("last_verdict", sa.String(20), nullable=True),
        sa.Column("last_campaign_id", sa.String(64), nullable=True),
    )


def downgrade() -> None:
    for table in ("devices", "failures", "metrics", "samples", "runs", "campaigns"):
        op.drop_table(table)
