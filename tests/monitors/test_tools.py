"""The monitoring tools as their users run them: subprocesses against a real gateway.

- `python -m monitors.agent`: samples of a gateway's process over HTTP, and its bad input;
- `python -m monitors`: the sampler without load (samples.csv, one line per sample, the SSE
  stream), stopped by `--duration` or by Ctrl-C;
- `python -m monitors.profile` and `--profile-gateway`: a py-spy flame graph of the gateway
  (skipped where ptrace is not permitted).

Everything listens and connects on loopback only; every wait is bounded.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path

import httpx
import psutil
import pytest

from gateway.process import GatewayProcess
from monitors.storage import read_samples
from tests.e2e.conftest import free_port, run_locust

ROOT = Path(__file__).resolve().parents[2]
USAGE_ERROR = 2
LISTENING = re.compile(r"(http://127\.0\.0\.1:\d+)")


class Child:
    """A `python -m ...` subprocess whose output lines are read as they come."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self.lines: queue.Queue[tuple[str, str]] = queue.Queue()
        for name, stream in (("stdout", self.proc.stdout), ("stderr", self.proc.stderr)):
            threading.Thread(target=self._read, args=(name, stream), daemon=True).start()

    def _read(self, name: str, stream) -> None:
        for line in stream:
            getattr(self, name).append(line.rstrip("\n"))
            self.lines.put((name, line))

    def wait_for(self, pattern: re.Pattern[str], timeout: float = 15) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                _, line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            if match := pattern.search(line):
                return match
        self.stop()
        pytest.fail(f"no {pattern.pattern!r} within {timeout} s; stderr: {self.stderr[-10:]}")

    def wait(self, timeout: float = 15) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            pytest.fail(f"did not exit within {timeout} s; stderr: {self.stderr[-10:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def spawn() -> Iterator[Callable[..., Child]]:
    children: list[Child] = []

    def start(*args: str) -> Child:
        child = Child(*args)
        children.append(child)
        return child

    yield start
    for child in children:
        child.stop()


def run_module(*args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def no_such_pid() -> int:
    pid = 4_000_000
    while psutil.pid_exists(pid):
        pid += 1
    return pid


def assert_one_line_error(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode == USAGE_ERROR, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in lines[0]


# --- the remote agent ------------------------------------------------------------------------


@pytest.mark.parametrize("by", ["pid", "port"])
def test_agent_serves_samples_of_a_gateway(start_gateway, spawn, by: str) -> None:
    gw = start_gateway()
    which = ["--pid", str(gw.pid)] if by == "pid" else ["--port", gw.url.rsplit(":", 1)[1]]
    agent = spawn("monitors.agent", *which, "--listen-port", "0")
    url = agent.wait_for(LISTENING).group(1)
    with httpx.Client(base_url=url, timeout=5) as http:
        assert http.get("/health").json() == {"status": "ok", "pid": gw.pid}
        first = http.get("/sample")
        httpx.get(gw.url + "/health", timeout=5)
        time.sleep(0.3)
        second = http.get("/sample").json()
        assert http.get("/nope").status_code == 404
    assert first.status_code == 200
    assert first.headers["content-type"] == "application/json"
    assert first.json()["rss_mb"] > 10  # a Python process with uvicorn loaded
    assert second["rss_mb"] > 10
    assert second["threads"] >= 1
    assert second["cpu_pct"] >= 0  # CPU % from the second sample on (a delta)
    assert second["connections"] >= 1  # its listening socket


def test_agent_feeds_the_suites_remote_sampler(start_gateway, spawn) -> None:
    from monitors.resources import RemoteAgent
    from monitors.sources import SampleFailed

    gw = start_gateway()
    agent = spawn("monitors.agent", "--pid", str(gw.pid), "--listen-port", "0")
    remote = RemoteAgent(agent.wait_for(LISTENING).group(1))
    assert remote.sample()["rss_mb"] > 10
    gw.stop()
    with pytest.raises(SampleFailed, match=r"503: process .* is gone"):
        remote.sample()  # a note for the run's report, no figures


def test_agent_bad_input_is_one_line_and_exit_2() -> None:
    assert_one_line_error(
        run_module("monitors.agent", "--pid", str(no_such_pid())), "error:", "no process"
    )
    port = free_port()
    assert_one_line_error(
        run_module("monitors.agent", "--port", str(port)), "error:", f"port {port}"
    )
    result = run_module("monitors.agent")
    assert result.returncode == USAGE_ERROR
    assert "--pid" in result.stderr and "Traceback" not in result.stderr


def test_agent_listen_port_in_use(start_gateway) -> None:
    gw = start_gateway()
    port = gw.url.rsplit(":", 1)[1]
    result = run_module("monitors.agent", "--pid", str(gw.pid), "--listen-port", port)
    assert_one_line_error(result, "error:", "cannot listen")


# --- python -m monitors ----------------------------------------------------------------------


def read_events(url: str, count: int, timeout: float = 10) -> list[dict]:
    events: list[dict] = []
    with (
        httpx.Client(timeout=httpx.Timeout(timeout)) as http,
        http.stream("GET", url) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line.removeprefix("data: ")))
                if len(events) == count:
                    break
    return events


def test_monitor_samples_prints_and_streams(start_gateway, spawn, tmp_path: Path) -> None:
    gw = start_gateway("--pairing-delay-s", "0.1")
    out = tmp_path / "watch"
    monitor = spawn(
        "monitors", "--url", gw.url, "--duration", "4", "--out", str(out), "--listen-port", "0"
    )
    url = monitor.wait_for(re.compile(r"live at (http://127\.0\.0\.1:\d+)/stream")).group(1)
    httpx.post(gw.url + "/api/sessions", json={"apiKey": "k"}, timeout=5)
    events = read_events(url + "/stream", 2)
    one = httpx.get(url + "/sample", timeout=5).json()
    assert monitor.wait(15) == 0, monitor.stderr

    assert [e["pid"] for e in events] == [gw.pid, gw.pid]
    assert events[1]["sample"]["t"] > events[0]["sample"]["t"]  # one event per new sample
    for payload in [*events, one]:
        assert payload["target"] == gw.url
        assert payload["sample"]["rss_mb"] > 10
        assert "queue_depth" in payload["sample"]
        assert payload["alerts"] == []
    rows = read_samples(out / "samples.csv")
    assert len(rows) >= 3
    for row in rows:
        assert row["source"] == "gateway"
        assert row["rss_mb"] > 10
        assert row["queue_depth"] == 0
    assert max(row["sessions_active"] for row in rows) >= 1
    lines = [line for line in monitor.stdout if " | rss " in line]
    assert len(lines) == len(rows)
    assert re.search(r"rss [\d.]+ MB \| cpu .* \| queue 0 \| sessions \d+", lines[-1])
    assert "| ws 0 | alerts -" in lines[-1]
    resources = json.loads((out / "resources.json").read_text())
    assert resources["figures"]["rss_mb"]["samples"] == len(rows)


def test_monitor_stops_cleanly_on_ctrl_c(start_gateway, spawn, tmp_path: Path) -> None:
    gw = start_gateway()
    monitor = spawn(
        "monitors", "--url", gw.url, "--out", str(tmp_path), "--listen-port", "0",
        "--interval", "0.5",
    )  # fmt: skip
    monitor.wait_for(re.compile(r"\| rss "))
    monitor.proc.send_signal(signal.SIGINT)
    assert monitor.wait(10) == 0, monitor.stderr
    assert "Traceback" not in "\n".join(monitor.stderr)
    text = (tmp_path / "samples.csv").read_text()
    assert text.endswith("\n")  # the last row complete: the file was closed, not cut
    assert len(read_samples(tmp_path / "samples.csv")) >= 1
    assert (tmp_path / "resources.json").is_file()


def test_monitor_bad_input(tmp_path: Path) -> None:
    result = run_module("monitors", "--pid", str(no_such_pid()), "--out", str(tmp_path))
    assert_one_line_error(result, "error:", "no process")
    result = run_module("monitors", "--url", "localhost:3000", "--out", str(tmp_path))
    assert_one_line_error(result, "error:", "--url")


# --- the CPU profile -------------------------------------------------------------------------


@cache
def ptrace_problem() -> str:
    """Why py-spy cannot attach here ('' when it can): a quick dump of a sleeping child."""
    py_spy = Path(sys.executable).parent / "py-spy"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        time.sleep(0.3)
        result = subprocess.run(
            [str(py_spy), "dump", "--pid", str(sleeper.pid)],
            capture_output=True,
            text=True,
            timeout=20,
            env={**os.environ, "RUST_BACKTRACE": "0"},
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"py-spy unusable here: {exc}"
    finally:
        sleeper.kill()
        sleeper.wait()
    if result.returncode != 0:
        return "py-spy cannot attach (ptrace not permitted?): " + result.stderr.strip()[:200]
    return ""


def needs_ptrace() -> None:
    if problem := ptrace_problem():
        pytest.skip(problem)


def test_profile_errors_are_one_line(tmp_path: Path) -> None:
    out = tmp_path / "x.svg"
    result = run_module("monitors.profile", "--pid", str(no_such_pid()), "--duration", "1",
                        "--out", str(out))  # fmt: skip
    assert_one_line_error(result, "no process")
    sleeper = subprocess.Popen(["sleep", "20"])
    try:
        result = run_module(
            "monitors.profile", "--pid", str(sleeper.pid), "--duration", "1", "--out", str(out)
        )
    finally:
        sleeper.kill()
        sleeper.wait()
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    # Not Python, or not permitted: either way one line naming the cause.
    assert re.search(r"not a Python process|ptrace not permitted", result.stderr)
    assert not out.exists()


@pytest.mark.slow  # ~10 s
def test_profile_gateway_run_writes_a_flame_graph(tmp_path: Path) -> None:
    needs_ptrace()
    report = tmp_path / "run"
    run = run_locust("sessions", report, "--profile-gateway", time_scale=0.03, timeout=60)
    assert run.returncode == 0, run.explain()
    assert "Traceback" not in run.stderr, run.explain()
    svg = report / "gateway-profile.svg"
    assert svg.is_file(), run.explain() + "\n" + run.stdout[-2000:]
    head = svg.read_text(encoding="utf-8")[:200].lstrip()
    assert head.startswith(("<?xml", "<svg")), head
    assert "</svg>" in svg.read_text(encoding="utf-8")[-200:]
    assert "profile: CPU flame graph of pid" in run.stdout + run.stderr
    assert run.summary["embedded_target"] is True


def test_profile_records_a_busy_gateway(start_gateway, tmp_path: Path) -> None:
    needs_ptrace()
    gw: GatewayProcess = start_gateway()
    out = tmp_path / "gw.svg"
    profiler = subprocess.Popen(
        [sys.executable, "-m", "monitors.profile", "--pid", str(gw.pid), "--duration", "30",
         "--out", str(out)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 2.0
        with httpx.Client(base_url=gw.url, timeout=5) as http:
            while time.monotonic() < deadline:
                http.post("/api/sessions", json={"apiKey": "k"})
        profiler.send_signal(signal.SIGINT)  # stops early, still writes the graph
        stdout, stderr = profiler.communicate(timeout=20)
    finally:
        if profiler.poll() is None:
            profiler.kill()
            profiler.wait()
    assert profiler.returncode == 0, stderr
    assert re.search(r"\((\d+) samples\)", stdout), stdout
    assert out.read_text(encoding="utf-8").lstrip().startswith(("<?xml", "<svg"))
