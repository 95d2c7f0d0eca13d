"""Capacity of the reference gateway: requests/s and latency per endpoint on one pinned core.

    python -m bench.gateway [--duration 10] [--runs 3] [--connections 16]

The gateway (or a bare reference app) is pinned to CPU 0 and `wrk` to CPU 1, over loopback.
Each figure is the median of `--runs` runs, with min-max. The bare FastAPI and Starlette
endpoints, measured in the same run on the same core, are the reference for the ratios.
The results replace the "gateway" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from bench.machine import describe_machine, replace_section, spread
from gateway.process import GatewayProcess

ROOT = Path(__file__).resolve().parent.parent
SERVER_CPU, CLIENT_CPU = 0, 1
PERCENTILES = ("p50_ms", "p95_ms", "p99_ms")

REPORT_LUA = """
done = function(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
      + summary.errors.timeout
  io.write(string.format("RESULT %d %d %d %d %d %d %d\\n", summary.requests,
      summary.errors.status, errors, summary.duration, latency:percentile(50),
      latency:percentile(95), latency:percentile(99)))
end
"""

WEBHOOK_LUA = """
counter = 0
request = function()
  counter = counter + 1
  local body = '{"type":"message_create","timestamp":1700000000000,"message":{"id":"bench-'
      .. counter .. '-' .. math.random(1, 1000000000)
      .. '","from":"5511900000000","to":"5511912345678","text":"Test message"}}'
  return wrk.format("POST", "/api/webhook", {["Content-Type"] = "application/json"}, body)
end
"""

MESSAGE_LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"to":"5511912345678","body":"Test message"}'
wrk.path = "/api/sessions/%(session)s/messages"
"""

SESSION_LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"apiKey":"bench-key"}'
wrk.path = "/api/sessions"
"""

STATUS_LUA = """
wrk.method = "GET"
wrk.path = "/api/sessions/%(session)s"
"""


@dataclass
class Run:
    requests: int
    status_errors: int
    socket_errors: int
    duration_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float

    @property
    def rate(self) -> float:
        return self.requests / self.duration_s


def pin(pid: int, cpu: int) -> None:
    for tid in os.listdir(f"/proc/{pid}/task"):
        os.sched_setaffinity(int(tid), {cpu})


def run_wrk(url: str, lua: str, duration_s: int, connections: int) -> Run:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(lua + REPORT_LUA)
    try:
        out = subprocess.run(
            ["taskset", "-c", str(CLIENT_CPU), "wrk", "-t1", f"-c{connections}",
             f"-d{duration_s}s", "-s", script.name, url],
            capture_output=True, text=True, check=True, timeout=duration_s + 30,
        ).stdout  # fmt: skip
    finally:
        os.unlink(script.name)
    line = next(line for line in out.splitlines() if line.startswith("RESULT"))
    requests, status_err, sock_err, dur_us, p50, p95, p99 = (int(x) for x in line.split()[1:])
    return Run(requests, status_err, sock_err, dur_us / 1e6, p50 / 1e3, p95 / 1e3, p99 / 1e3)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ReferenceServer:
    """A bare uvicorn app from bench.reference_apps, same server settings as the gateway."""

    def __init__(self, app: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", f"bench.reference_apps:{app}",
             "--port", str(self.port), "--loop", "uvloop", "--http", "httptools",
             "--no-access-log", "--log-level", "warning", "--no-proxy-headers"],
            cwd=ROOT,
        )  # fmt: skip
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.1)
        self.pid = self.proc.pid

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def create_session(url: str) -> str:
    request = urllib.request.Request(
        url + "/api/sessions",
        data=b'{"apiKey":"bench-key"}',
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        session = json.load(response)["sessionId"]
    time.sleep(0.7)  # the pairing delay
    return session


def measure(name, start, lua, args) -> tuple[str, list[Run]]:
    runs = []
    for _ in range(args.runs):
        server = start()
        try:
            pin(server.pid, SERVER_CPU)
            script = lua(server.url) if callable(lua) else lua
            run_wrk(server.url, script, 2, args.connections)  # warm-up
            runs.append(run_wrk(server.url, script, args.duration, args.connections))
        finally:
            server.stop()
        print(f"  {name}: {runs[-1].rate:,.0f} req/s, p95 {runs[-1].p95_ms:.2f} ms", flush=True)
    return name, runs


def table(results: list[tuple[str, list[Run]]], reference: str) -> str:
    ref_rate = statistics.median(r.rate for r in dict(results)[reference])
    lines = [
        "| endpoint | requests/s | vs bare Starlette | p50 ms | p95 ms | p99 ms | non-2xx |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, runs in results:
        rates = [r.rate for r in runs]
        lines.append(
            f"| {name} | {spread(rates, ',.0f')} | {statistics.median(rates) / ref_rate:.2f} | "
            + " | ".join(spread([getattr(r, f) for r in runs], ".2f") for f in PERCENTILES)
            + " | "
            f"{sum(r.status_errors + r.socket_errors for r in runs)} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gateway", description=__doc__)
    parser.add_argument("--duration", type=int, default=10, help="seconds per run (default 10)")
    parser.add_argument("--runs", type=int, default=3, help="runs per figure (default 3)")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections (16)")
    parser.add_argument("--no-write", action="store_true", help="do not update docs/")
    args = parser.parse_args(argv)
    if not shutil.which("wrk"):
        print("bench.gateway: wrk is not installed (apt-get install wrk); skipped", file=sys.stderr)
        return 0
    if (os.cpu_count() or 1) < 2:
        print("bench.gateway: needs two cores (server and client pinned apart)", file=sys.stderr)
        return 0

    def gateway(*flags: str):
        return lambda: _GatewayServer(GatewayProcess(list(flags)).start())

    sessions_flags = ("--max-sessions", "100000000", "--session-memory-kib", "0",
                      "--session-idle-expiry-s", "2")  # fmt: skip
    message_flags = ("--rate-limit", "0", "--senders", "1000", "--queue-size", "1000000")
    plan = [
        ("bare FastAPI, pydantic body (reference)", lambda: ReferenceServer("fastapi_app"),
         WEBHOOK_LUA),
        ("bare Starlette + model_validate_json (reference)",
         lambda: ReferenceServer("starlette_app"), WEBHOOK_LUA),
        ("POST /api/webhook", gateway(), WEBHOOK_LUA),
        ("POST /api/sessions/{id}/messages (accept)", gateway(*message_flags),
         lambda url: MESSAGE_LUA % {"session": create_session(url)}),
        ("POST /api/sessions (no session memory)", gateway(*sessions_flags), SESSION_LUA),
        ("GET /api/sessions/{id}", gateway(),
         lambda url: STATUS_LUA % {"session": create_session(url)}),
    ]  # fmt: skip
    print(
        f"gateway benchmark: {args.runs} x {args.duration} s per figure, {args.connections} "
        f"connections, server on CPU {SERVER_CPU}, wrk on CPU {CLIENT_CPU}"
    )
    results = [measure(name, start, lua, args) for name, start, lua in plan]
    body = table(results, "bare Starlette + model_validate_json (reference)")
    print()
    print(body)
    if not args.no_write:
        command = (
            f"make bench  (python -m bench.gateway --duration {args.duration} --runs {args.runs}"
            f" --connections {args.connections})"
        )
        section = f"{describe_machine()}\n\nCommand: `{command}`\n\n{body}\n"
        replace_section(ROOT / "docs" / "benchmarks.md", "gateway", section)
        print("\nwritten to docs/benchmarks.md (section 'gateway')")
    return 0


class _GatewayServer:
    def __init__(self, process: GatewayProcess) -> None:
        self.process = process
        self.url = process.url
        self.pid = process.pid

    def stop(self) -> None:
        self.process.stop()


if __name__ == "__main__":
    sys.exit(main())
