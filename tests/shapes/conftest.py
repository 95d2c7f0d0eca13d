"""Running the shapes harness (tests/shapes/harness.py) as real Locust processes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
HARNESS = "tests/shapes/harness.py"


@dataclass
class LocustRun:
    returncode: int
    stderr: str
    results: dict[str, Any] = field(default_factory=dict)

    def histogram(self, key: str, kind: str = "latency") -> dict[str, float]:
        return self.results["histograms"][key][kind]


class LocustRunner:
    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.count = 0

    def scenario(self, text: str) -> Path:
        self.count += 1
        path = self.tmp_path / f"scenario-{self.count}.yaml"
        path.write_text(textwrap.dedent(text))
        return path

    def _command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "locust", "-f", HARNESS, *args]

    def run(
        self,
        scenario_text: str,
        host: str,
        *extra: str,
        timeout: float = 90,
        cpu: int | None = None,
    ) -> LocustRun:
        scenario = self.scenario(scenario_text)
        results = self.tmp_path / f"results-{self.count}.json"
        proc = subprocess.run(
            pinned(cpu) + self._command(
                "--headless", "--only-summary", "--scenario-file", str(scenario),
                "--results", str(results), "-H", host, *extra),
            cwd=ROOT, capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
        return self._finish(proc.returncode, proc.stderr, results)

    def run_distributed(
        self, scenario_text: str, host: str, workers: int = 2, timeout: float = 120
    ) -> LocustRun:
        scenario = self.scenario(scenario_text)
        results = self.tmp_path / f"results-{self.count}.json"
        port = _free_port()
        master = subprocess.Popen(
            self._command("--master", "--headless", "--only-summary", "--expect-workers",
                          str(workers), "--master-bind-host", "127.0.0.1",
                          "--master-bind-port", str(port), "--scenario-file", str(scenario),
                          "--results", str(results), "-H", host),
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        time.sleep(1.0)
        worker_command = self._command(
            "--worker", "--master-host", "127.0.0.1", "--master-port", str(port),
            "--scenario-file", str(scenario),
        )  # fmt: skip
        procs = [
            subprocess.Popen(
                worker_command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            for _ in range(workers)
        ]
        try:
            _, stderr = master.communicate(timeout=timeout)
        finally:
            for proc in [master, *procs]:
                if proc.poll() is None:
                    proc.kill()
            for proc in procs:
                proc.wait(10)
        return self._finish(master.returncode, stderr, results)

    @staticmethod
    def _finish(returncode: int, stderr: str, results: Path) -> LocustRun:
        data = json.loads(results.read_text()) if results.exists() else {}
        return LocustRun(returncode, stderr, data)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pinned(cpu: int | None) -> list[str]:
    """`taskset -c CPU` when asked and possible: keeps client and server off each other's core."""
    if cpu is None or (os.cpu_count() or 1) < 2 or not shutil.which("taskset"):
        return []
    return ["taskset", "-c", str(cpu)]


@pytest.fixture
def locust_runner(tmp_path: Path) -> LocustRunner:
    return LocustRunner(tmp_path)


class LatencyServer:
    """bench/delay_server.py (log-normal, median 100 ms) in a process of its own, pinned to
    CPU 0 when possible."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [*pinned(0), sys.executable, "-m", "bench.delay_server", "--median-ms", "100"],
            cwd=ROOT, stdout=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip().rsplit(" ", 1)[-1]

    def record(self) -> list[float]:
        return sorted(httpx.get(self.url + "/record", timeout=5).json())

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture
def latency_server():
    """Start latency servers (a fresh one per call); all are stopped after the test."""
    servers: list[LatencyServer] = []

    def start() -> LatencyServer:
        servers.append(LatencyServer())
        return servers[-1]

    yield start
    for server in servers:
        server.stop()
