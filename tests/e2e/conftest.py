"""End-to-end runs of the suite: `locust -f locustfile.py` as a subprocess against a real gateway.

Every run goes to loopback and is bounded by a timeout; on timeout the whole process group
(Locust and an embedded gateway it may have started) is killed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[2]
# Scrapes and health checks of the gateway itself (the fixture's, the test's): not the load.
NOT_LOAD_ROUTES = frozenset({"/metrics", "/health"})


@dataclass
class Run:
    """One finished subprocess: its exit code, output, wall time and `summary.json` if any."""

    returncode: int
    stdout: str
    stderr: str
    elapsed_s: float
    report_dir: Path
    summary: dict[str, Any] = field(default_factory=dict)
    report: dict[str, Any] = field(default_factory=dict)  # report.json: verdict and analyses

    @property
    def verdict(self) -> str | None:
        return self.report.get("verdict", {}).get("status")

    def reasons(self) -> list[str]:
        return [r["name"] for r in self.report.get("verdict", {}).get("reasons", [])]

    def explain(self) -> str:
        return f"exit {self.returncode} after {self.elapsed_s:.1f} s; stderr tail:\n" + "\n".join(
            self.stderr.splitlines()[-15:]
        )


def run_command(command: list[str], report_dir: Path, timeout: float) -> Run:
    """Run `command` from the repository root in its own process group, bounded by `timeout`."""
    started = time.monotonic()
    proc = subprocess.Popen(
        command,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        pytest.fail(f"{' '.join(command)} did not end within {timeout} s:\n{stderr[-3000:]}")
    summary_path = report_dir / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    report_path = report_dir / "report.json"
    report = json.loads(report_path.read_text()) if report_path.is_file() else {}
    elapsed = time.monotonic() - started
    return Run(proc.returncode, stdout, stderr, elapsed, report_dir, summary, report)


def locust_command(
    scenario: str,
    report_dir: Path,
    *extra: str,
    time_scale: float | None = None,
    host: str | None = None,
) -> list[str]:
    """`locust -f locustfile.py --headless --only-summary --scenario ...` (run from the root)."""
    command = [sys.executable, "-m", "locust", "-f", "locustfile.py", "--headless"]
    command += ["--only-summary", "--scenario", scenario, "--report-dir", str(report_dir)]
    if time_scale is not None:
        command += ["--time-scale", str(time_scale)]
    if host is not None:
        command += ["-H", host]
    return [*command, *extra]


def run_locust(
    scenario: str,
    report_dir: Path,
    *extra: str,
    time_scale: float | None = None,
    host: str | None = None,
    timeout: float = 90,
) -> Run:
    command = locust_command(scenario, report_dir, *extra, time_scale=time_scale, host=host)
    return run_command(command, report_dir, timeout)


def scrape(url: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """The gateway's /metrics as {sample name: [(labels, value), ...]}."""
    with urllib.request.urlopen(url.rstrip("/") + "/metrics", timeout=10) as response:
        text = response.read().decode()
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return samples


_PLACEHOLDER = re.compile(r"\{[^}]*\}")


def route_key(method: str, path: str) -> str:
    """A route with its placeholders' names dropped ("POST /api/sessions/{}/messages"), so that
    the gateway's `{id}` and the target profile's `{session_id}` meet."""
    return f"{method} {_PLACEHOLDER.sub('{}', path)}"


@dataclass
class GatewayCounts:
    """The counters of a gateway that a run's summary must agree with (one scrape)."""

    http: list[tuple[str, str, str, float]]  # (method, route, status, count)
    sessions_created: float
    sessions_deleted: float
    messages: dict[str, float]
    webhook_events: dict[str, float]
    faults: dict[str, float]

    @classmethod
    def of(cls, url: str) -> GatewayCounts:
        samples = scrape(url)
        return cls(
            http=[
                (labels["method"], labels["route"], labels["status"], value)
                for labels, value in samples.get("gateway_http_requests_total", [])
            ],
            sessions_created=sum(v for _, v in samples.get("gateway_sessions_created_total", [])),
            sessions_deleted=_by_label(samples, "gateway_sessions_closed_total", "reason").get(
                "deleted", 0.0
            ),
            messages=_by_label(samples, "gateway_messages_total", "status"),
            webhook_events=_by_label(samples, "gateway_webhook_events_total", "result"),
            faults=_by_label(samples, "gateway_faults_injected_total", "kind"),
        )

    def http_requests(self, *, status: str | None = None, route: str | None = None) -> float:
        """HTTP requests the gateway answered, scrapes and health checks left out."""
        return sum(
            count
            for method, path, code, count in self.http
            if path not in NOT_LOAD_ROUTES
            and (status is None or code == status)
            and (route is None or route_key(method, path) == route)
        )

    def by_route(self) -> dict[str, float]:
        routes: dict[str, float] = {}
        for method, path, _, count in self.http:
            if path not in NOT_LOAD_ROUTES:
                key = route_key(method, path)
                routes[key] = routes.get(key, 0) + count
        return routes

    def not_load(self) -> dict[str, float]:
        """Requests to /metrics and /health (the fixture's health checks, any scrape)."""
        routes: dict[str, float] = {}
        for _, path, _, count in self.http:
            if path in NOT_LOAD_ROUTES:
                routes[path] = routes.get(path, 0) + count
        return routes


def _by_label(samples: dict, name: str, label: str) -> dict[str, float]:
    return {labels[label]: value for labels, value in samples.get(name, [])}


def summary_by_route(summary: dict[str, Any]) -> dict[str, float]:
    """The summary's HTTP requests by route: `... (throttled)` entries join their route."""
    routes: dict[str, float] = {}
    for entry in summary["requests"].values():
        if entry["method"] == "WS":
            continue
        name = entry["name"].removesuffix(" (throttled)")
        key = route_key(entry["method"], name)
        routes[key] = routes.get(key, 0) + entry["requests"]
    return routes


def agrees(measured: float, reference: float, tolerance: float = 0.01) -> bool:
    """Within `tolerance` (relative) of `reference`; two zeros agree."""
    return abs(measured - reference) <= tolerance * max(abs(reference), 1e-9)


def free_port() -> int:
    """A loopback port with nothing listening on it (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def refuses(url_host: str, port: int) -> bool:
    try:
        socket.create_connection((url_host, port), timeout=2).close()
    except OSError:
        return True
    return False


def strace_works() -> bool:
    """strace is installed and may trace here (containers often forbid ptrace)."""
    if not shutil.which("strace"):
        return False
    probe = ["strace", "-f", "-qq", "-e", "trace=connect", "-o", os.devnull, "true"]
    try:
        return subprocess.run(probe, capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def run_distributed(
    scenario: str,
    time_scale: float | None,
    host: str,
    report_dir: Path,
    workers: int = 2,
    timeout: float = 90,
    kill_one_after_s: float | None = None,
) -> Run:
    """`locust --master` and `workers` workers (`--worker`, no options: they take the
    scenario from the master) on loopback, bounded. `kill_one_after_s`: SIGKILL one worker
    that long after the workers started (a generator machine that dies mid-run)."""
    port = free_port()
    locust = [sys.executable, "-m", "locust", "-f", "locustfile.py"]
    master = [
        *locust, "--master", "--headless", "--only-summary", "--expect-workers", str(workers),
        "--master-bind-host", "127.0.0.1", "--master-bind-port", str(port),
        "--report-dir", str(report_dir), "-H", host, "--scenario", scenario,
        *(["--time-scale", str(time_scale)] if time_scale is not None else []),
    ]  # fmt: skip
    result: list[Run] = []
    thread = threading.Thread(
        target=lambda: result.append(run_command(master, report_dir, timeout))
    )
    thread.start()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        worker = [*locust, "--worker", "--master-host", "127.0.0.1", "--master-port", str(port)]
        for _ in range(workers):
            procs.append(
                subprocess.Popen(
                    worker,
                    cwd=ROOT,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                )
            )
        if kill_one_after_s is not None:
            time.sleep(kill_one_after_s)
            os.killpg(procs[0].pid, signal.SIGKILL)
        thread.join(timeout + 10)
    finally:
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
    assert result, "the master did not finish"
    return result[0]
