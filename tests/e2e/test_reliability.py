"""Faults survived, with nothing lost: real processes on loopback, every run bounded.

- the target dies mid-run (its crash switch): the run goes on to its end counting connection
  errors, Failed with "target unreachable from <t>", the samples up to the crash kept;
- the target hangs longer than the request timeout: the timeouts are failures with a clear
  name, and the run ends on schedule;
- SIGTERM, and Ctrl-C (SIGINT to the whole process group, as a terminal sends it): the run
  stops within 10 s, writes its report marked partial, stops its embedded gateway, exit 130;
- kill -9 of the generator: what was streamed (samples, Locust's history, the checkpointed
  summary) is intact, `python -m analysis.report` renders a partial report from it, and the
  embedded gateway does not outlive it;
- the master dies: its worker stops loading the target and exits within its --master-timeout;
- API keys appear nowhere: not in the output, the CSVs, the samples or the reports.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

from shapes.scenario import CONF_DIR
from tests.e2e.conftest import (
    ROOT,
    GatewayCounts,
    free_port,
    locust_command,
    run_command,
    run_locust,
)

INTERRUPTED = 130


def steady(tmp_path: Path, rate: float, seconds: float, **options) -> str:
    """One phase of `rate` arrivals/s on POST /api/sessions."""
    scenario = yaml.safe_load((CONF_DIR / "scenarios" / "sessions.yaml").read_text())
    scenario["criteria"] = str(CONF_DIR / "criteria.yaml")
    scenario["load"]["phases"] = [{"duration": f"{seconds}s", "arrival_rate": rate}]
    if options:
        scenario["users"]["SessionCreator"] = {"options": options}
    path = tmp_path / "steady.yaml"
    path.write_text(yaml.safe_dump(scenario))
    return str(path)


@pytest.mark.slow  # ~15 s
def test_target_that_dies_mid_run_fails_the_run_as_unreachable(start_gateway, tmp_path):
    gateway = start_gateway("--crash-after-requests", "300")  # about 3 s into 100/s
    run = run_locust(steady(tmp_path, 100, 8), tmp_path / "run", host=gateway.url, timeout=60)
    assert run.returncode == 1, run.explain()
    assert "Traceback" not in run.stderr, run.explain()
    assert run.summary["duration_s"] < 8 + 10  # on schedule, not hanging on the dead target
    assert "target_unreachable" in run.report["verdict"]["failures"]
    at = run.report["run"]["target_unreachable_from_s"]
    assert 1 <= at <= 6, at
    assert f"target unreachable from {at:g} s" in run.stderr
    assert any("no answer" in e["error"] for e in run.summary["errors"])
    # Its samples up to the crash are kept; the monitor noted the process gone.
    rows = [json.loads(json.dumps(r)) for r in _gateway_rows(run.report_dir)]
    assert len(rows) >= 2
    notes = " ".join(run.summary["resources"]["notes"])
    assert "gone" in notes or "unreachable" in notes, notes
    assert "parou de responder" not in (run.report_dir / "report.md").read_text()


def _gateway_rows(folder: Path) -> list[dict]:
    from monitors.storage import read_samples

    return [r for r in read_samples(folder / "samples.csv") if r["source"] == "gateway"]


@pytest.mark.slow  # ~15 s
def test_target_that_hangs_gives_named_timeouts_and_ends_on_schedule(start_gateway, tmp_path):
    # The event loop blocked 3 s of every 4: requests outlast the 1 s request timeout.
    gateway = start_gateway("--stall-ms", "3000", "--stall-every-s", "4")
    scenario = steady(tmp_path, 20, 8)
    run = run_locust(
        scenario, tmp_path / "run", "--request-timeout", "1", host=gateway.url, timeout=60
    )
    assert "Traceback" not in run.stderr, run.explain()
    assert run.summary["duration_s"] < 8 + 10, run.summary["duration_s"]
    errors = {e["error"]: e["occurrences"] for e in run.summary["errors"]}
    assert errors.get("no answer: timed out after 1 s", 0) > 0, errors
    assert run.verdict == "failed", run.report["verdict"]


def start_run(tmp_path: Path, *extra: str) -> tuple[subprocess.Popen, Path]:
    """A headless webhooks run of 3 min (embedded gateway), started in its own group."""
    folder = tmp_path / "run"
    command = locust_command("webhooks", folder, *extra, time_scale=0.5)
    proc = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    return proc, folder


def embedded_gateway(proc: subprocess.Popen, wait_s: float = 15) -> psutil.Process:
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        children = [
            c for c in psutil.Process(proc.pid).children() if "gateway" in " ".join(c.cmdline())
        ]
        if children:
            return children[0]
        time.sleep(0.2)
    raise AssertionError("no embedded gateway")


@pytest.mark.slow  # ~15 s each
@pytest.mark.parametrize("how", ["SIGTERM", "Ctrl-C"])
def test_an_interrupted_run_writes_its_partial_report_within_10_s(tmp_path, how):
    proc, folder = start_run(tmp_path)
    try:
        gateway = embedded_gateway(proc)
        time.sleep(6)  # under load
        sent = time.monotonic()
        if how == "SIGTERM":
            proc.send_signal(signal.SIGTERM)
        else:
            os.killpg(proc.pid, signal.SIGINT)  # the terminal's Ctrl-C: the whole group
        _, stderr = proc.communicate(timeout=30)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert took < 10, took
    assert proc.returncode == INTERRUPTED, stderr[-2000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    summary = json.loads((folder / "summary.json").read_text())
    report = json.loads((folder / "report.json").read_text())
    assert summary["partial"] is True and report["run"]["partial"] is True
    assert summary["totals"]["requests"] > 0
    assert "(partial: interrupted)" in stderr
    assert "Partial run" in (folder / "report.md").read_text()
    gateway.wait(5)  # stopped with the run
    assert not gateway.is_running()


@pytest.mark.slow  # ~15 s
def test_kill_9_keeps_what_was_streamed_and_make_report_renders_it(tmp_path):
    proc, folder = start_run(tmp_path)
    try:
        gateway = embedded_gateway(proc)
        time.sleep(9)  # a checkpoint every 5 s
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    gateway.wait(5)  # the embedded gateway does not outlive its generator
    rows = _gateway_rows(folder)
    assert len(rows) >= 5, len(rows)
    history = (folder / "locust_stats_history.csv").read_text().splitlines()
    assert len(history) >= 3
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["partial"] is True and summary["totals"]["requests"] > 0
    result = subprocess.run(
        [sys.executable, "-m", "analysis.report", str(folder)],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode in (0, 1, 3), result.stderr
    report = json.loads((folder / "report.json").read_text())
    assert report["run"]["partial"] is True
    assert "Partial run" in (folder / "report.md").read_text()


@pytest.mark.slow  # ~15 s
def test_workers_of_a_dead_master_stop_by_themselves(start_gateway, tmp_path):
    gateway = start_gateway()
    port = free_port()
    locust = [sys.executable, "-m", "locust", "-f", "locustfile.py"]
    master = subprocess.Popen(
        [*locust, "--master", "--headless", "--only-summary", "--expect-workers", "1",
         "--master-bind-host", "127.0.0.1", "--master-bind-port", str(port), "-H", gateway.url,
         "--scenario", "webhooks", "--report-dir", str(tmp_path / "run")],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    worker = subprocess.Popen(
        [*locust, "--worker", "--master-host", "127.0.0.1", "--master-port", str(port),
         "--master-timeout", "3"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while GatewayCounts.of(gateway.url).http_requests() < 50:
            assert time.monotonic() < deadline, "no load reached the gateway"
            time.sleep(0.5)
        os.killpg(master.pid, signal.SIGKILL)
        killed = time.monotonic()
        _, stderr = worker.communicate(timeout=20)
        took = time.monotonic() - killed
    finally:
        for proc in (master, worker):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    assert took < 3 + 5, took  # the timeout, and a second or two to stop its users
    assert "heartbeat from master" in stderr, stderr[-2000:]
    settled = GatewayCounts.of(gateway.url).http_requests()
    time.sleep(1.5)
    assert GatewayCounts.of(gateway.url).http_requests() == settled  # no more load


@pytest.mark.slow  # ~10 s
def test_api_keys_appear_nowhere(start_gateway, tmp_path):
    canary = "canary-5ec2e7"
    scenario = steady(tmp_path, 50, 3, api_key=f"{canary}-{{random}}")
    gateway = start_gateway()
    run = run_locust(scenario, tmp_path / "run", host=gateway.url, timeout=60)
    assert run.returncode == 0, run.explain()
    assert run.summary["sessions"]["created"] > 100  # the keys were used
    assert canary not in run.stdout + run.stderr
    for path in run.report_dir.rglob("*"):
        if path.is_file():
            assert canary.encode() not in path.read_bytes(), path


def test_a_port_in_use_is_a_usage_error(tmp_path):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        command = [
            sys.executable, "-m", "locust", "-f", "locustfile.py", "--web-host", "127.0.0.1",
            "--web-port", str(port), "--scenario", "sessions",
        ]  # fmt: skip
        run = run_command(command, tmp_path / "run", timeout=30)
    assert run.returncode == 2, run.explain()
    errors = [line for line in run.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and str(port) in errors[0], run.stderr
    assert "Traceback" not in run.stderr
