"""The history's database: record runs, read them back for the page and the trend test.

`HistoryStore(url)` opens SQLite (`sqlite:///PATH`; by default `reports/history.sqlite` under
the current directory) or PostgreSQL (`postgresql+psycopg://USER:PASSWORD@HOST/DB`; a plain
`postgresql://` URL is taken as psycopg 3), and upgrades its schema to this code's head: an
older history is migrated in place, one at a revision newer than this code is refused as it
is. `HISTORY_DB` names the database when no URL is given (`default_url()`); its value `off`
(the runs then record nothing) opens none.

Every error is a `HistoryError`, one line, with the URL as `url_shown` shows it: password
hidden, never in a message or a log.
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic.migration import MigrationContext
from alembic.util import CommandError
from sqlalchemy import (
    URL,
    ColumnElement,
    Connection,
    Engine,
    Row,
    Table,
    create_engine,
    delete,
    event,
    func,
    insert,
    make_url,
    select,
    text,
    update,
)
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError, SQLAlchemyError

from history import migrations
from history.entry import CRITERION_KEYS, STAGE_KEYS, EntryError, RunEntry, entry_from_folder
from history.schema import criteria, figures, runs, stages

ENV = "HISTORY_DB"
OFF = "off"  # the runs' way to record nothing (suite/options.py); no database to open
DEFAULT_PATH = Path("reports") / "history.sqlite"
URL_FORMS = "sqlite:///PATH or postgresql+psycopg://USER:PASSWORD@HOST:PORT/DB"
CONNECT_TIMEOUT_S = 10  # an unreachable server is an error within this, not a hang
# Openers of one PostgreSQL history take turns to migrate it (any constant of their own).
MIGRATION_LOCK = 0x6869_7374  # "hist"
RUN_FIELDS = (
    "scenario", "target", "profile", "label", "started_at", "duration_s", "time_scale",
    "workers", "verdict", "partial", "breaking_point_per_s", "memory_per_session_mb",
    "leak_mb_per_hour",
)  # fmt: skip
IN_CHUNK = 500  # ids per IN (...): both databases bound the parameters of one statement


class HistoryError(ValueError):
    """The history cannot do what was asked; the message is one line, for users."""


def default_url() -> str | None:
    """The database named by `HISTORY_DB`, else None (SQLite at `reports/history.sqlite`)."""
    return os.environ.get(ENV) or None


def _first_line(exc: BaseException, password: str | None) -> str:
    """The reason of `exc` on one line, the driver's own words (passwords taken out)."""
    cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
    reason = lines[0] if lines else type(cause).__name__
    # SQLAlchemy appends "(Background on this error at: ...)" and the statement: not for users.
    reason = reason.split(" [SQL: ")[0].split("(Background on this error")[0].strip()
    return reason.replace(password, "***") if password else reason


def _parse(url: str | None) -> URL:
    """The URL to open: the SQLite default for None, psycopg 3 for any PostgreSQL URL."""
    if url is None:
        path = Path.cwd() / DEFAULT_PATH
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise HistoryError(f"history: cannot create {path.parent}: {exc.strerror}") from None
        return URL.create("sqlite", database=str(path))
    if url == OFF:
        raise HistoryError(f"history: turned off (the history's database is '{OFF}')")
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        # Not echoed: a URL that does not parse may still hold a password.
        raise HistoryError(f"history: not a database URL (expected {URL_FORMS})") from None
    if parsed.drivername in ("sqlite", "sqlite+pysqlite"):
        return parsed
    if parsed.drivername in ("postgresql", "postgres", "postgresql+psycopg"):
        return parsed.set(drivername="postgresql+psycopg")
    shown = parsed.render_as_string(hide_password=True)
    raise HistoryError(f"history: {shown}: unsupported database (expected {URL_FORMS})")


def _engine(url: URL) -> Engine:
    if url.get_backend_name() == "postgresql":
        args = {} if "connect_timeout" in url.query else {"connect_timeout": CONNECT_TIMEOUT_S}
        return create_engine(url, connect_args=args)
    engine = create_engine(url)

    # pysqlite begins transactions only before INSERT/UPDATE/DELETE, so DDL (a migration) would
    # run outside one: take BEGIN over (SQLAlchemy's documented recipe), IMMEDIATE for writes
    # so that two writers wait for each other instead of failing. Foreign keys are off by
    # default in SQLite, on in PostgreSQL: the same rules for both.
    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        dbapi_connection.execute("PRAGMA foreign_keys = ON")

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        write = connection.get_execution_options().get("history_write")
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


class HistoryStore:
    """The runs of one history database (see the module's docstring); close() when done."""

    def __init__(self, url: str | None = None) -> None:
        parsed = _parse(url)
        self._password = parsed.password if isinstance(parsed.password, str) else None
        self.url_shown: str = parsed.render_as_string(hide_password=True)
        self._engine = _engine(parsed)
        try:
            self._open()
        except BaseException:
            self._engine.dispose()
            raise

    def _open(self) -> None:
        head = migrations.head()
        try:
            with self._write() as conn:
                if conn.dialect.name == "postgresql":
                    conn.execute(
                        text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK}
                    )
                current = MigrationContext.configure(conn).get_current_heads()
                newer = [revision for revision in current if not migrations.known(revision)]
                if newer:
                    raise HistoryError(
                        f"history: {self.url_shown} is at revision {', '.join(newer)}, newer than"
                        f" this suite's {head}: left untouched; read it with a newer suite"
                    )
                migrations.upgrade(conn)
        except (SQLAlchemyError, CommandError) as exc:
            raise self._error("cannot open", exc) from None

    def _error(self, doing: str, exc: BaseException) -> HistoryError:
        return HistoryError(
            f"history: {doing} {self.url_shown}: {_first_line(exc, self._password)}"
        )

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """One write transaction (committed at the end, rolled back on an error)."""
        with self._engine.connect() as conn:
            conn.execution_options(history_write=True)
            with conn.begin():
                yield conn

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        try:
            with self._engine.connect() as conn, conn.begin():
                yield conn
        except SQLAlchemyError as exc:
            raise self._error("cannot read", exc) from None

    def __enter__(self) -> HistoryStore:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the database's connections."""
        self._engine.dispose()

    def record(self, entry: RunEntry) -> int:
        """Record `entry` in one transaction and return its run's id. A folder recorded before
        is replaced (same id): recording a run again keeps one row. The folder is kept as an
        absolute path, which is how `runs()` gives it back."""
        folder = str(Path(entry.folder).resolve())
        row = {name: getattr(entry, name) for name in RUN_FIELDS}
        row.update(folder=folder, partial=bool(entry.partial), recorded_at=time.time())
        # Two recorders of one new folder at once: one of them fails the unique folder and, on
        # a second try, finds the other's row and replaces it.
        for attempt in range(2):
            try:
                with self._write() as conn:
                    return self._record(conn, entry, row)
            except IntegrityError as exc:
                if attempt:
                    raise self._error(f"cannot record {folder} in", exc) from None
            except SQLAlchemyError as exc:
                raise self._error(f"cannot record {folder} in", exc) from None
        raise AssertionError("unreachable")

    @staticmethod
    def _record(conn: Connection, entry: RunEntry, row: dict[str, Any]) -> int:
        found = conn.execute(select(runs.c.id).where(runs.c.folder == row["folder"])).scalar()
        if found is None:
            run_id = conn.execute(insert(runs).values(row)).inserted_primary_key[0]
        else:
            run_id = found
            conn.execute(update(runs).where(runs.c.id == run_id).values(row))
            for table in (criteria, stages, figures):
                conn.execute(delete(table).where(table.c.run_id == run_id))
        crit = [
            {"run_id": run_id, "position": i, **_criterion_row(c)}
            for i, c in enumerate(entry.criteria)
        ]
        stage = [
            {"run_id": run_id, "position": i, **{k: s.get(k) for k in STAGE_KEYS}}
            for i, s in enumerate(entry.stages)
        ]
        figure = [{"run_id": run_id, "name": n, "value": v} for n, v in entry.figures.items()]
        for table, rows in ((criteria, crit), (stages, stage), (figures, figure)):
            if rows:
                conn.execute(insert(table), rows)
        return int(run_id)

    def runs(
        self,
        scenario: str | None = None,
        target: str | None = None,
        profile: str | None = None,
        last: int | None = 30,
        complete_only: bool = False,
    ) -> list[RunEntry]:
        """The last `last` runs by start (all of them for None) that match the filters given
        (None: any), OLDEST FIRST, with their criteria, stages and figures. `complete_only`
        leaves out partial runs (stopped before their end)."""
        where: list[ColumnElement[bool]] = []
        for column, value in (
            (runs.c.scenario, scenario),
            (runs.c.target, target),
            (runs.c.profile, profile),
        ):
            if value is not None:
                where.append(column == value)
        if complete_only:
            where.append(runs.c.partial.is_(False))
        return self._select(where, last)

    def comparable(self, entry: RunEntry, last: int) -> list[RunEntry]:
        """The last `last` complete runs started before `entry` with its scenario, profile,
        target and time scale (None matches None), OLDEST FIRST: its baseline."""
        where: list[ColumnElement[bool]] = [
            runs.c.started_at < entry.started_at,
            runs.c.partial.is_(False),
            runs.c.folder != str(Path(entry.folder).resolve()),
        ]
        for column, value in (
            (runs.c.scenario, entry.scenario),
            (runs.c.profile, entry.profile),
            (runs.c.target, entry.target),
            (runs.c.time_scale, entry.time_scale),
        ):
            where.append(column.is_(None) if value is None else column == value)
        return self._select(where, last)

    def count(self) -> int:
        """How many runs the history holds."""
        with self._read() as conn:
            return int(conn.execute(select(func.count()).select_from(runs)).scalar_one())

    def _select(self, where: Sequence[ColumnElement[bool]], last: int | None) -> list[RunEntry]:
        if last is not None and last < 1:
            raise HistoryError(f"history: last must be 1 or more, not {last}")
        query = select(runs).where(*where).order_by(runs.c.started_at.desc(), runs.c.id.desc())
        with self._read() as conn:
            rows = list(conn.execute(query.limit(last)))[::-1]
            ids = [row.id for row in rows]
            crit = _children(conn, criteria, ids, criteria.c.position)
            stage = _children(conn, stages, ids, stages.c.position)
            figure = _children(conn, figures, ids, figures.c.name)
        return [_entry(row, crit[row.id], stage[row.id], figure[row.id]) for row in rows]


def _criterion_row(criterion: dict[str, Any]) -> dict[str, Any]:
    row = {k: criterion.get(k) for k in CRITERION_KEYS if k != "limit"}
    return {**row, "limit_value": criterion.get("limit")}


def _children(conn: Connection, table: Table, ids: list[int], order: Any) -> dict[int, list[Row]]:
    """The rows of `table` for the runs `ids`, by run, in `order`."""
    found: dict[int, list[Row]] = defaultdict(list)
    for i in range(0, len(ids), IN_CHUNK):
        chunk = ids[i : i + IN_CHUNK]
        query = select(table).where(table.c.run_id.in_(chunk)).order_by(table.c.run_id, order)
        for row in conn.execute(query):
            found[row.run_id].append(row)
    return found


def _entry(row: Row, crit: Iterable[Row], stage: Iterable[Row], figure: Iterable[Row]) -> RunEntry:
    m = row._mapping
    return RunEntry(
        folder=m["folder"],
        **{name: m[name] for name in RUN_FIELDS},
        criteria=[
            {k: c._mapping["limit_value" if k == "limit" else k] for k in CRITERION_KEYS}
            for c in crit
        ],
        stages=[{k: s._mapping[k] for k in STAGE_KEYS} for s in stage],
        figures={f.name: f.value for f in figure},
    )


def import_folders(root: Path, store: HistoryStore) -> tuple[int, list[str]]:
    """Record every run folder directly under `root` (in name order); folders that hold no
    judged run are skipped, one line each saying why. Returns (runs recorded, reasons)."""
    root = Path(root)
    if not root.is_dir():
        raise HistoryError(f"history: {root}: not a folder")
    recorded, skipped = 0, []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        try:
            entry = entry_from_folder(folder)
        except EntryError as exc:
            skipped.append(str(exc))
            continue
        store.record(entry)
        recorded += 1
    return recorded, skipped
