"""Every run is recorded in the history at its end, an interrupted one too, and a history that
cannot be written costs the run nothing but a line; `make history` and `make history-import`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from history.store import HistoryStore
from tests.e2e.conftest import ROOT, locust_command, run_locust
from tests.e2e.test_web_ui import WebUI

pytestmark = pytest.mark.slow


def test_runs_are_recorded_at_their_end_interrupted_ones_too(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'history.sqlite'}"
    done = run_locust(
        "sessions", tmp_path / "done", "--history-db", url, "--label", "v2.3.1", time_scale=0.03
    )
    assert done.returncode in (0, 3), done.explain()
    command = locust_command("sessions", tmp_path / "cut", "--history-db", url, time_scale=1)
    proc = subprocess.Popen(
        command, cwd=ROOT, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    time.sleep(6)  # under way: the embedded gateway up, the first phase going
    os.killpg(proc.pid, signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr[-2000:]
    assert "history:" not in stderr and "Traceback" not in stderr, stderr[-2000:]

    store = HistoryStore(url)
    try:
        first, second = store.runs(scenario="sessions")
        assert store.runs(scenario="sessions", complete_only=True) == [first]
    finally:
        store.close()
    assert Path(first.folder).resolve() == (tmp_path / "done").resolve()
    assert (first.label, first.partial, first.target) == ("v2.3.1", False, "embedded")
    assert first.verdict == done.verdict and first.figures["requests_per_s"] > 0
    assert [c["name"] for c in first.criteria] == [c["name"] for c in done.report["criteria"]]
    assert len(first.stages) == 3 and first.stages[0]["requests"] > 0
    assert second.partial is True and second.label is None


def test_a_history_that_cannot_be_written_costs_the_run_one_line(tmp_path: Path) -> None:
    url = "postgresql+psycopg://suite:s3cret@127.0.0.1:1/nowhere"
    run = run_locust("sessions", tmp_path / "run", "--history-db", url, time_scale=0.03)
    assert run.returncode in (0, 3), run.explain()  # the verdict's code, as without a history
    lines = [line for line in run.stderr.splitlines() if line.startswith("history:")]
    assert len(lines) == 1 and "not recorded" in lines[0], run.stderr[-2000:]
    assert "s3cret" not in run.stderr and "Traceback" not in run.stderr
    assert (tmp_path / "run" / "report.html").is_file()


def test_a_run_the_web_ui_reports_twice_says_its_unwritable_history_once(
    start_gateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The web UI's process outlives its run: the report of the ended run is written a second
    after it stops and again when the process quits (as a headless run's is when its stopping
    takes longer than that), and each write records the run."""
    monkeypatch.setenv("HISTORY_DB", "postgresql+psycopg://suite:s3cret@127.0.0.1:1/nowhere")
    gateway = start_gateway("--pairing-delay-s", "0.2")
    ui = WebUI(gateway.url, tmp_path / "run", tmp_path / "locust.log")
    try:
        ui.wait(lambda: ui.http.get("/").status_code == 200, 60, "GET / answers")
        started = ui.http.post("/swarm", data={"scenario": "sessions", "time_scale": "0.01"})
        assert started.json()["success"], started.text
        ui.wait(lambda: "history:" in ui.output.read_text(), 60, "the ended run recorded")
        time.sleep(1.5)
        ui.proc.send_signal(signal.SIGINT)
        ui.proc.wait(60)
    finally:
        ui.close()
    output = ui.output.read_text()
    lines = [line for line in output.splitlines() if "history:" in line]
    assert len(lines) == 1 and "not recorded" in lines[0], output[-2000:]
    assert "s3cret" not in output and "Traceback" not in output


def test_make_history_import_and_page(tmp_path: Path) -> None:
    runs = tmp_path / "reports"
    run = run_locust("sessions", runs / "a", time_scale=0.03)
    assert run.returncode in (0, 3), run.explain()
    (runs / "not-a-run").mkdir()
    env = {**os.environ, "HISTORY_DB": f"sqlite:///{tmp_path / 'history.sqlite'}"}
    imported = subprocess.run(
        ["make", "--no-print-directory", "history-import", f"DIR={runs}"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert imported.returncode == 0, imported.stderr
    assert "recorded 1 run" in imported.stdout and "not-a-run" in imported.stderr
    page = tmp_path / "history.html"
    shown = subprocess.run(
        [sys.executable, "-m", "history", "--scenario", "sessions", "--out", str(page)],
        cwd=ROOT, capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert page.is_file() and "sessions" in page.read_text(encoding="utf-8")
    assert "approved" in shown.stdout.lower() or "degraded" in shown.stdout.lower(), shown.stdout
