"""The history's store on real databases: runs made by the suite, recorded and read back.

SQLite in a temporary folder for most tests; the ones marked `postgres` also run on the
PostgreSQL of `SUITE_TEST_POSTGRES_URL` (`export SUITE_TEST_POSTGRES_URL=$(.ci/postgres)`),
each in a schema of its own that is dropped at its end, and skip, saying why, without one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, make_url, text
from sqlalchemy.exc import OperationalError

from history import migrations
from history.entry import STAGE_KEYS, RunEntry, entry_from_folder
from history.schema import metadata
from history.store import HistoryError, HistoryStore, default_url, import_folders

ROOT = Path(__file__).resolve().parents[2]
VERDICTS = (0, 1, 3)  # approved, failed, degraded: a judged run
INTERRUPTED = 130
POSTGRES_ENV = "SUITE_TEST_POSTGRES_URL"


def _locust(folder: Path, time_scale: float) -> subprocess.Popen:
    command = [sys.executable, "-m", "locust", "-f", "locustfile.py", "--headless"]
    command += ["--only-summary", "--scenario", "sessions", "--time-scale", str(time_scale)]
    return subprocess.Popen(
        [*command, "--report-dir", str(folder)], cwd=ROOT, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip


def _finish(proc: subprocess.Popen, expected: tuple[int, ...]) -> None:
    try:
        _, stderr = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode in expected, stderr[-3000:]


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """Two short runs and one interrupted by Ctrl-C, made at once (~15 s), in this order."""
    root = tmp_path_factory.mktemp("runs")
    folders = SimpleNamespace(root=root, interrupted=root / "sessions-1", a=root / "sessions-2")
    folders.b = root / "sessions-3"
    interrupted = _locust(folders.interrupted, time_scale=1)
    time.sleep(1.1)
    a = _locust(folders.a, time_scale=0.05)
    time.sleep(1.1)
    b = _locust(folders.b, time_scale=0.05)
    deadline = time.monotonic() + 30  # under way (its samples streaming), however busy we are
    while not (folders.interrupted / "samples.csv").is_file() and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.5)
    os.killpg(interrupted.pid, signal.SIGINT)  # a terminal's Ctrl-C: the whole group
    _finish(interrupted, (INTERRUPTED,))
    _finish(a, VERDICTS)
    _finish(b, VERDICTS)
    return folders


def _entry(folder: Path, **changes) -> RunEntry:
    """The folder's entry as the store gives it back (its folder absolute)."""
    entry = entry_from_folder(folder)
    return dataclasses.replace(entry, folder=str(Path(entry.folder).resolve()), **changes)


def _sqlite(tmp_path: Path, name: str = "history.sqlite") -> str:
    return f"sqlite:///{tmp_path / name}"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[HistoryStore]:
    with HistoryStore(_sqlite(tmp_path)) as opened:
        yield opened


def _postgres_schema() -> Iterator[str]:
    """The URL of a schema of its own on the test's PostgreSQL, dropped at the end."""
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        pytest.skip(f"{POSTGRES_ENV} is not set (export {POSTGRES_ENV}=$(.ci/postgres))")
    parsed = make_url(url).set(drivername="postgresql+psycopg")
    shown = parsed.render_as_string(hide_password=True)
    schema = f"history_test_{secrets.token_hex(6)}"
    engine = create_engine(parsed, connect_args={"connect_timeout": 5})
    try:
        with engine.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except OperationalError as exc:
        engine.dispose()
        reason = str(exc.orig).strip().splitlines()[0]
        pytest.skip(f"PostgreSQL at {shown} is unreachable: {reason}")
    try:
        # Unqualified names (the tables, alembic_version) then live in the test's schema.
        options = {"options": f"-csearch_path={schema}"}
        yield parsed.update_query_dict(options).render_as_string(hide_password=False)
    finally:
        with engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database: SQLite, and PostgreSQL where there is one."""
    if request.param == "sqlite":
        yield _sqlite(tmp_path)
    else:
        yield from _postgres_schema()


# The schema


def test_migrations_are_two_revisions_in_a_line():
    assert migrations.head() == "0002"
    assert migrations.known("0001") and not migrations.known("0003")


def test_a_migrated_database_equals_schema_py(empty_url):
    HistoryStore(empty_url).close()
    engine = create_engine(make_url(empty_url).set(drivername=_driver(empty_url)))
    try:
        with engine.connect() as conn:
            found = inspect(conn)
            names = set(found.get_table_names()) - {"alembic_version"}
            assert names == set(metadata.tables)
            for table in metadata.tables.values():
                columns = [c["name"] for c in found.get_columns(table.name)]
                assert columns == [c.name for c in table.columns], table.name
            # Alembic's own comparison: types, nullability, indexes, keys; nothing differs.
            assert compare_metadata(MigrationContext.configure(conn), metadata) == []
            assert MigrationContext.configure(conn).get_current_heads() == ("0002",)
    finally:
        engine.dispose()


def _driver(url: str) -> str:
    return "sqlite" if url.startswith("sqlite") else "postgresql+psycopg"


def test_stages_hold_the_entrys_stage_keys():
    assert [c.name for c in metadata.tables["stages"].columns][2:] == list(STAGE_KEYS)


# Recording and reading back


def test_real_runs_read_back_as_they_were_recorded(store, made):
    recorded = [_entry(made.b), _entry(made.a), _entry(made.interrupted)]
    for entry in recorded:
        store.record(entry)
    # Oldest first (starts are whole seconds: a tie goes by the order of recording), every
    # field, criteria, stages and figures as they were.
    expected = sorted(recorded, key=lambda e: (e.started_at, recorded.index(e)))
    assert store.runs() == expected
    assert all(e.stages and e.criteria and e.figures for e in recorded)


def test_recording_a_folder_again_replaces_it(store, made, monkeypatch):
    first = store.record(_entry(made.a, label="first"))
    again = store.record(_entry(made.a, label="again", verdict="failed"))
    assert again == first and store.count() == 1
    (run,) = store.runs()
    assert (run.label, run.verdict) == ("again", "failed")
    assert run.criteria == _entry(made.a).criteria  # not twice
    # A relative folder is the same folder.
    monkeypatch.chdir(made.a.parent)
    assert store.record(entry_from_folder(Path(made.a.name))) == first
    assert store.count() == 1


def test_an_interrupted_run_is_partial_and_complete_only_leaves_it_out(store, made):
    store.record(_entry(made.interrupted))
    store.record(_entry(made.a))
    assert {r.folder: r.partial for r in store.runs()} == {
        str(made.interrupted): True, str(made.a): False,
    }  # fmt: skip
    assert [r.folder for r in store.runs(complete_only=True)] == [str(made.a)]


def _variants(base: RunEntry, root: Path, *changes: dict) -> list[RunEntry]:
    return [
        dataclasses.replace(base, folder=str(root / f"run-{i}"), **change)
        for i, change in enumerate(changes)
    ]


def test_runs_filters_and_order(store, made, tmp_path):
    base = _entry(made.a, started_at=1000.0, target="http://a", profile="plan")
    entries = _variants(
        base, tmp_path,
        {"started_at": 1300.0}, {"started_at": 1100.0}, {"started_at": 1200.0},
        {"started_at": 1250.0, "scenario": "stress"}, {"started_at": 1150.0, "target": "http://b"},
        {"started_at": 1050.0, "profile": "smoke"}, {"started_at": 1400.0, "partial": True},
    )  # fmt: skip
    for entry in entries:
        store.record(entry)

    def starts(**filters) -> list[float]:
        return [r.started_at for r in store.runs(**filters)]

    assert starts() == [1050, 1100, 1150, 1200, 1250, 1300, 1400]
    assert starts(last=3) == [1250, 1300, 1400]  # the last ones, still oldest first
    assert starts(scenario="sessions") == [1050, 1100, 1150, 1200, 1300, 1400]
    assert starts(scenario="sessions", target="http://a", profile="plan") == [
        1100,
        1200,
        1300,
        1400,
    ]
    assert starts(scenario="sessions", complete_only=True, last=2) == [1200, 1300]
    assert starts(scenario="messages") == []
    with pytest.raises(HistoryError, match="last must be 1 or more"):
        store.runs(last=0)


def test_comparable_runs_are_the_complete_ones_before_it_with_its_settings(store, made, tmp_path):
    base = _entry(made.a, started_at=1000.0, target=None, profile="plan", time_scale=0.05)
    entries = _variants(
        base, tmp_path,
        {"started_at": 1100.0}, {"started_at": 1200.0}, {"started_at": 1300.0},
        {"started_at": 1250.0, "partial": True}, {"started_at": 1260.0, "target": "http://b"},
        {"started_at": 1270.0, "time_scale": 1.0}, {"started_at": 1280.0, "profile": "smoke"},
        {"started_at": 1290.0, "scenario": "stress"}, {"started_at": 1500.0},
    )  # fmt: skip
    for entry in entries:
        store.record(entry)
    latest = entries[2]  # 1300, recorded itself: not its own baseline
    assert [r.started_at for r in store.comparable(latest, last=10)] == [1100, 1200]
    assert [r.started_at for r in store.comparable(latest, last=1)] == [1200]
    assert store.comparable(entries[0], last=10) == []
    # A run not recorded yet is compared the same way.
    new = dataclasses.replace(latest, folder=str(tmp_path / "new"), started_at=1600.0)
    assert [r.started_at for r in store.comparable(new, last=3)] == [1200, 1300, 1500]


def test_real_runs_of_one_scenario_on_the_embedded_gateway_are_comparable(store, made):
    interrupted, a, b = _entry(made.interrupted), _entry(made.a), _entry(made.b)
    assert a.target == b.target == "embedded"
    for entry in (interrupted, a, b):
        store.record(entry)
    # Started a second apart, but starts are whole seconds: a tie is not "before".
    assert store.comparable(b, last=5) == ([a] if a.started_at < b.started_at else [])


# Evolution


def _insert_at_0001(conn, folder: str) -> None:
    """A run as version 0001 of the history recorded it: runs and criteria, nothing else."""
    conn.execute(
        text(
            "INSERT INTO runs (folder, scenario, target, profile, label, started_at, duration_s,"
            " time_scale, workers, verdict, partial, breaking_point_per_s, memory_per_session_mb,"
            " leak_mb_per_hour, recorded_at) VALUES (:folder, 'sessions', 'http://old', 'plan',"
            " 'v0.9', 500.0, 60.0, 1.0, 1, 'approved', :partial, 100.0, 0.25, NULL, 501.0)"
        ),
        {"folder": folder, "partial": False},
    )
    run_id = conn.execute(text("SELECT id FROM runs WHERE folder = :f"), {"f": folder}).scalar()
    conn.execute(
        text(
            "INSERT INTO criteria (run_id, position, name, metric, scope, value, unit, op,"
            " limit_value, status) VALUES (:id, 0, 'error rate', 'error_rate_pct', 'overall',"
            " 0.5, '%', 'max', 5.0, 'pass')"
        ),
        {"id": run_id},
    )


def test_a_database_of_the_first_schema_is_upgraded_and_keeps_its_runs(empty_url, made):
    engine = create_engine(make_url(empty_url).set(drivername=_driver(empty_url)))
    try:
        with engine.begin() as conn:
            migrations.upgrade(conn, "0001")
            assert set(inspect(conn).get_table_names()) == {"alembic_version", "runs", "criteria"}
            _insert_at_0001(conn, "/old/sessions-20260101T000000Z")
    finally:
        engine.dispose()
    with HistoryStore(empty_url) as store:
        (old,) = store.runs()
        assert (old.folder, old.label, old.verdict, old.started_at) == (
            "/old/sessions-20260101T000000Z", "v0.9", "approved", 500.0,
        )  # fmt: skip
        assert old.criteria == [
            {"name": "error rate", "metric": "error_rate_pct", "scope": "overall", "value": 0.5,
             "unit": "%", "op": "max", "limit": 5.0, "status": "pass"},
        ]  # fmt: skip
        assert (old.stages, old.figures) == ([], {})
        # The new tables work: a run recorded now has its stages and figures.
        store.record(_entry(made.a))
        assert store.runs()[-1] == _entry(made.a)
        assert store.count() == 2
    with HistoryStore(empty_url) as store:  # at head already: opened as it is
        assert store.count() == 2


def test_a_database_newer_than_this_code_is_refused_untouched(empty_url, made, tmp_path):
    with HistoryStore(empty_url) as store:
        store.record(_entry(made.a))
    engine = create_engine(make_url(empty_url).set(drivername=_driver(empty_url)))
    try:
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = '0099'"))
        database = tmp_path / "history.sqlite"
        before = hashlib.sha256(database.read_bytes()).digest() if database.exists() else None
        with pytest.raises(HistoryError) as refused:
            HistoryStore(empty_url)
        message = str(refused.value)
        assert "\n" not in message and "0099" in message and "newer" in message, message
        if before is not None:
            assert hashlib.sha256(database.read_bytes()).digest() == before
        with engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0099"
            assert conn.execute(text("SELECT count(*) FROM runs")).scalar() == 1
    finally:
        engine.dispose()


# URLs and errors


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql+psycopg://u:secret@127.0.0.1:1/x", "postgresql+psycopg://u:***@127.0.0.1:1/x"),
        ("postgresql://u:secret@127.0.0.1:1/x", "postgresql+psycopg://u:***@127.0.0.1:1/x"),
        ("mysql://u:secret@127.0.0.1/x", "mysql://u:***@127.0.0.1/x"),
        ("postgresql://u:secret@host:port/x", "not a database URL"),
        ("no-url-at-all", "not a database URL"),
        ("sqlite:////nonexistent/folder/h.sqlite", "unable to open database file"),
        ("off", "turned off"),
    ],
)
def test_a_bad_url_is_one_line_without_the_password(url, shown):
    with pytest.raises(HistoryError) as failed:
        HistoryStore(url)
    message = str(failed.value)
    assert "secret" not in message and "\n" not in message and shown in message, message
    assert "Traceback" not in message and "[SQL:" not in message


def test_without_a_url_the_history_is_reports_history_sqlite(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HISTORY_DB", raising=False)
    assert default_url() is None
    with HistoryStore(default_url()) as store:
        assert store.url_shown == f"sqlite:///{tmp_path / 'reports' / 'history.sqlite'}"
        assert store.count() == 0
    assert (tmp_path / "reports" / "history.sqlite").is_file()
    monkeypatch.setenv("HISTORY_DB", "sqlite:///elsewhere.sqlite")
    assert default_url() == "sqlite:///elsewhere.sqlite"


# Import and the command line


def test_import_folders_records_runs_and_says_why_it_skips_the_rest(store, made, tmp_path):
    (made.root / "notes").mkdir(exist_ok=True)
    (made.root / "notes" / "todo.txt").write_text("not a run")
    (made.root / "history.sqlite").write_text("a file: not looked at")
    try:
        recorded, skipped = import_folders(made.root, store)
        assert recorded == 3 and store.count() == 3
        assert len(skipped) == 1 and "notes" in skipped[0] and "\n" not in skipped[0], skipped
        assert import_folders(made.root, store)[0] == 3 and store.count() == 3  # again: the same
    finally:
        subprocess.run(["rm", "-rf", str(made.root / "notes"), str(made.root / "history.sqlite")])
    with pytest.raises(HistoryError, match="not a folder"):
        import_folders(tmp_path / "missing", store)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "history", *args], cwd=ROOT, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip


def test_the_command_line_records_and_imports(made, tmp_path):
    url = _sqlite(tmp_path, "cli.sqlite")
    done = _cli("record", str(made.a), "--label", "v1.2", "--history-db", url)
    assert done.returncode == 0, done.stderr
    assert "recorded" in done.stdout and done.stderr == ""
    with HistoryStore(url) as store:
        assert [(r.folder, r.label) for r in store.runs()] == [(str(made.a), "v1.2")]
    done = _cli("--history-db", url, "import", str(made.root))
    assert done.returncode == 0, done.stderr
    assert f"recorded 3 run(s) from {made.root} in {url}" in done.stdout and done.stderr == ""
    with HistoryStore(url) as store:
        assert store.count() == 3


@pytest.mark.parametrize(
    "args",
    [
        ("record", "/nonexistent/run"),
        ("--history-db", "postgresql://u:secret@127.0.0.1:1/x", "import", "."),
        ("--history-db", "sqlite:///{tmp}/h.sqlite", "import", "/nonexistent"),
        (),  # the page, later
    ],
)
def test_the_command_line_says_what_is_wrong_on_one_line(args, tmp_path):
    done = _cli(*(a.format(tmp=tmp_path) for a in args))
    assert done.returncode == 2
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done.stderr
    assert "secret" not in done.stderr


# PostgreSQL


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A PostgreSQL database of the test's own (a schema, dropped at the end)."""
    yield from _postgres_schema()


@pytest.mark.postgres
def test_postgresql_and_sqlite_give_the_same_history(postgres_url, made, tmp_path):
    entries = [_entry(made.b), _entry(made.interrupted), _entry(made.a), _entry(made.b)]
    histories = []
    for url in (_sqlite(tmp_path), postgres_url):
        with HistoryStore(url) as store:
            for entry in entries:
                store.record(entry)
            histories.append((store.runs(), store.runs(complete_only=True, last=1), store.count()))
    sqlite, postgres = histories
    assert len(sqlite[0]) == 3
    for lite, pg in zip(sqlite[0], postgres[0], strict=True):
        for field in dataclasses.fields(RunEntry):
            assert getattr(pg, field.name) == getattr(lite, field.name), (lite.folder, field.name)
    assert postgres == sqlite
