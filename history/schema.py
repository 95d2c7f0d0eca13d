"""The history's tables (SQLAlchemy Core), as they are at the migrations' head.

`runs` holds one row per run folder; `criteria`, `stages` and `figures` hold its lists, in
their own rows so that a chart or a trend can read one figure across runs without parsing
anything. Every child row goes with its run (ON DELETE CASCADE). Columns hold SQLite's and
PostgreSQL's common types only, so that one history reads the same from either.

Changing a table here needs a new revision in `history/migrations/versions/` that makes the
same change: a test compares a migrated database with these tables.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
)

metadata = MetaData()

runs = Table(
    "runs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("folder", String, nullable=False, unique=True),
    Column("scenario", String, nullable=False),
    Column("target", String),
    Column("profile", String),
    Column("label", String),
    Column("started_at", Float, nullable=False),  # unix seconds
    Column("duration_s", Float),
    Column("time_scale", Float),
    Column("workers", Integer),
    Column("verdict", String, nullable=False),
    Column("partial", Boolean, nullable=False),
    Column("breaking_point_per_s", Float),
    Column("memory_per_session_mb", Float),
    Column("leak_mb_per_hour", Float),
    Column("recorded_at", Float, nullable=False),  # unix seconds
    # The page and the trend test ask for a scenario's last runs, newest first.
    Index("ix_runs_scenario_started_at", "scenario", "started_at"),
    Index("ix_runs_started_at", "started_at"),
)


def _run_id() -> Column:
    return Column("run_id", Integer, ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)


criteria = Table(
    "criteria",
    metadata,
    _run_id(),
    Column("position", Integer, primary_key=True),  # the order of the run's criteria file
    Column("name", String),
    Column("metric", String),
    Column("scope", String),
    Column("value", Float),
    Column("unit", String),
    Column("op", String),
    Column("limit_value", Float),  # the entry's "limit": a reserved word in SQL
    Column("status", String),
)

stages = Table(
    "stages",
    metadata,
    _run_id(),
    Column("position", Integer, primary_key=True),
    # The entry's STAGE_KEYS, as they are named there ("index", "start", "end" are quoted).
    Column("index", Integer),
    Column("name", String),
    Column("unit", String),
    Column("start", Float),
    Column("end", Float),
    Column("duration_s", Float),
    Column("requests", Integer),
    Column("error_rate_pct", Float),
    Column("requests_per_s", Float),
    Column("p50_ms", Float),
    Column("p95_ms", Float),
    Column("p99_ms", Float),
    Column("cpu_pct", Float),
)

figures = Table(
    "figures",
    metadata,
    _run_id(),
    Column("name", String, primary_key=True),
    Column("value", Float),
    # A chart reads one figure across runs.
    Index("ix_figures_name", "name"),
)
