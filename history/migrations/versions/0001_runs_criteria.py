"""The first history: runs and their criteria.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("folder", sa.String, nullable=False, unique=True),
        sa.Column("scenario", sa.String, nullable=False),
        sa.Column("target", sa.String),
        sa.Column("profile", sa.String),
        sa.Column("label", sa.String),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("duration_s", sa.Float),
        sa.Column("time_scale", sa.Float),
        sa.Column("workers", sa.Integer),
        sa.Column("verdict", sa.String, nullable=False),
        sa.Column("partial", sa.Boolean, nullable=False),
        sa.Column("breaking_point_per_s", sa.Float),
        sa.Column("memory_per_session_mb", sa.Float),
        sa.Column("leak_mb_per_hour", sa.Float),
        sa.Column("recorded_at", sa.Float, nullable=False),
    )
    op.create_index("ix_runs_scenario_started_at", "runs", ["scenario", "started_at"])
    op.create_index("ix_runs_started_at", "runs", ["started_at"])
    op.create_table(
        "criteria",
        sa.Column(
            "run_id",
            sa.Integer,
            sa.ForeignKey("runs.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("position", sa.Integer, primary_key=True),
        sa.Column("name", sa.String),
        sa.Column("metric", sa.String),
        sa.Column("scope", sa.String),
        sa.Column("value", sa.Float),
        sa.Column("unit", sa.String),
        sa.Column("op", sa.String),
        sa.Column("limit_value", sa.Float),
        sa.Column("status", sa.String),
    )


def downgrade() -> None:
    op.drop_table("criteria")
    op.drop_index("ix_runs_started_at", "runs")
    op.drop_index("ix_runs_scenario_started_at", "runs")
    op.drop_table("runs")
