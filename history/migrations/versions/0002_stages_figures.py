"""Each run's stages and key figures, so that trends need not re-read the run folders.

Runs recorded at 0001 keep their rows; they have no stages or figures until recorded again.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _run_id() -> sa.Column:
    return sa.Column(
        "run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True
    )


def upgrade() -> None:
    op.create_table(
        "stages",
        _run_id(),
        sa.Column("position", sa.Integer, primary_key=True),
        sa.Column("index", sa.Integer),
        sa.Column("name", sa.String),
        sa.Column("unit", sa.String),
        sa.Column("start", sa.Float),
        sa.Column("end", sa.Float),
        sa.Column("duration_s", sa.Float),
        sa.Column("requests", sa.Integer),
        sa.Column("error_rate_pct", sa.Float),
        sa.Column("requests_per_s", sa.Float),
        sa.Column("p50_ms", sa.Float),
        sa.Column("p95_ms", sa.Float),
        sa.Column("p99_ms", sa.Float),
        sa.Column("cpu_pct", sa.Float),
    )
    op.create_table(
        "figures",
        _run_id(),
        sa.Column("name", sa.String, primary_key=True),
        sa.Column("value", sa.Float),
    )
    op.create_index("ix_figures_name", "figures", ["name"])


def downgrade() -> None:
    op.drop_index("ix_figures_name", "figures")
    op.drop_table("figures")
    op.drop_table("stages")
