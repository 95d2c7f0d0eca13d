"""The load generators a benchmark runs side by side, and how one is measured.

Every generator runs pinned to `CLIENT_CPU` (`taskset`), against a target pinned to the other
core, over loopback. A generator is measured from outside, the same way for all: once the
target sees traffic and a second of warm-up has passed, the requests the target served and
the CPU time the generator's processes used (its children too: the suite's judging process)
are read at the start and the end of a steady
window. Requests per CPU-second is then what one core of that generator can do, whether or
not it saturated its core. The generator is then stopped as Ctrl-C would (SIGINT: the suite
and Locust still write their reports): the rest of its planned run would only cost time.

The generators:

- `wrk` (one thread), `hey` (`GOMAXPROCS=1`), `ab` (keep-alive): the native references;
- plain Locust `HttpUser` and `FastHttpUser` (`bench/plain_locustfile.py`), no wait time;
  and `FastHttpUser` paced by Locust's own `constant_throughput` (`plain_paced`);
- the suite: a scenario file run by `locustfile.py` with everything on (recorder, time
  windows, checkpoints, monitors, live judge): closed model (`closed_scenario`) or arrival
  phases (`arrivals_scenario`), its `WebhookSender`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from bench.gateway import WEBHOOK_LUA

ROOT = Path(__file__).resolve().parent.parent
CLIENT_CPU = 1
WARM_UP_S = 1.0
START_TIMEOUT_S = 30.0
WEBHOOK_BODY = (
    '{"type":"message_create","timestamp":1700000000000,"message":{"id":"bench",'
    '"from":"5511900000000","to":"5511912345678","text":"Test message"}}'
)
WRK_LUA = (
    WEBHOOK_LUA
    + """
done = function(summary, latency, requests)
  io.write(string.format("PERCENTILES %d %d %d %d\\n", latency:percentile(50),
      latency:percentile(95), latency:percentile(99), summary.requests))
end
"""
)


@dataclass
class Measured:
    """One generator run: its rate at the target over the steady window, and its cost."""

    rate: float  # requests/s served by the target
    cpu: float  # the generator's CPU time over the window, in cores (1.0 = one full core)
    rss_mb: float
    output: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def per_cpu_second(self) -> float:
        return self.rate / self.cpu if self.cpu > 0 else 0.0


def measure(
    command: list[str],
    served: Callable[[], int],
    window_s: float,
    env: dict[str, str] | None = None,
    timeout_s: float = 120.0,
    settle_s: float = WARM_UP_S,
) -> Measured:
    """Run `command` pinned to the client core; measure it over a steady window that starts
    `settle_s` after the target saw its first requests; stop it once the window is read."""
    process = subprocess.Popen(
        ["taskset", "-c", str(CLIENT_CPU), *command],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **(env or {})},
    )
    try:
        begin = served()
        deadline = time.monotonic() + START_TIMEOUT_S
        while served() - begin < 50:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{command[0]}: no traffic ({process.stdout.read()[-500:]})")
            time.sleep(0.05)
        time.sleep(settle_s)
        watched = psutil.Process(process.pid)
        cpu0, count0, t0 = _tree_cpu(watched), served(), time.monotonic()
        time.sleep(window_s)
        cpu1, count1, t1 = _tree_cpu(watched), served(), time.monotonic()
        rss_mb = watched.memory_info().rss / 2**20
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=timeout_s)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return Measured((count1 - count0) / (t1 - t0), _spent(cpu0, cpu1) / (t1 - t0), rss_mb, output)


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def _tree_cpu(process: psutil.Process) -> dict[int, float]:
    """The CPU time of the process and of each of its descendants, by pid."""
    times = {process.pid: _cpu(process)}
    for child in process.children(recursive=True):
        with contextlib.suppress(psutil.Error):  # ended meanwhile
            times[child.pid] = _cpu(child)
    return times


def _spent(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds spent between two readings of a process tree: a process new in the second
    began within the window (all of its time counts); one gone from it ended there (what it
    spent in the window is lost, a few ms of a child that lived seconds)."""
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


# --- the generators' commands ---------------------------------------------------------------


def wrk(url: str, seconds: float, connections: int, script: Path) -> list[str]:
    return ["wrk", "-t1", f"-c{connections}", f"-d{seconds:.0f}s", "-s", str(script), url]


def wrk_script(folder: Path) -> Path:
    path = folder / "webhook.lua"
    path.write_text(WRK_LUA)
    return path


def wrk_percentiles(output: str) -> dict[str, float]:
    line = next(line for line in output.splitlines() if line.startswith("PERCENTILES"))
    p50, p95, p99, _ = (int(x) for x in line.split()[1:])
    return {"p50_ms": p50 / 1000, "p95_ms": p95 / 1000, "p99_ms": p99 / 1000}


def hey(url: str, seconds: float, connections: int, body_file: Path) -> list[str]:
    return ["hey", "-z", f"{seconds:.0f}s", "-c", str(connections), "-m", "POST",
            "-T", "application/json", "-D", str(body_file), f"{url}/api/webhook"]  # fmt: skip


def hey_percentiles(output: str) -> dict[str, float]:
    found = dict(re.findall(r"\s(\d+)%+ in ([\d.]+) secs", output))
    return {f"p{p}_ms": float(found[p]) * 1000 for p in ("50", "95", "99")}


def ab(url: str, seconds: float, connections: int, body_file: Path) -> list[str]:
    return ["ab", "-q", "-k", "-c", str(connections), "-t", f"{seconds:.0f}", "-n", "100000000",
            "-p", str(body_file), "-T", "application/json", f"{url}/api/webhook"]  # fmt: skip


def body_file(folder: Path) -> Path:
    path = folder / "webhook.json"
    path.write_text(WEBHOOK_BODY)
    return path


def plain_locust(url: str, seconds: float, users: int, user_class: str, csv: Path) -> list[str]:
    return [sys.executable, "-m", "locust", "-f", "bench/plain_locustfile.py", user_class,
            "--headless", "-u", str(users), "-r", str(users), "-t", f"{seconds:.0f}s",
            "-H", url, "--only-summary", "--csv", str(csv)]  # fmt: skip


def plain_locust_percentiles(csv: Path) -> dict[str, float]:
    import csv as csv_module

    with open(f"{csv}_stats.csv", newline="") as handle:
        row = next(r for r in csv_module.DictReader(handle) if r["Name"] == "Aggregated")
    return {f"p{p}_ms": float(row[f"{p}%"]) for p in ("50", "95", "99")}


def plain_paced(
    url: str, seconds: float, users: int, rate: float, csv: Path
) -> tuple[list[str], dict[str, str]]:
    """Plain FastHttpUser offered `rate` requests/s the way Locust paces users: each of the
    `users` runs `constant_throughput(rate / users)`. The command and its environment."""
    command = plain_locust(url, seconds, users, "PacedFastHttpUser", csv)
    return command, {"BENCH_USER_RATE": f"{rate / users:.6g}"}


def suite(url: str, scenario: Path, report_dir: Path) -> list[str]:
    # nginx answers the events: no phone behind it, so made-up numbers are allowed.
    return [sys.executable, "-m", "locust", "-f", "locustfile.py", "--headless",
            "--only-summary", "--scenario", str(scenario), "-H", url,
            "--report-dir", str(report_dir), "--synthetic-numbers"]  # fmt: skip


def closed_scenario(folder: Path, users: int, seconds: float, think_s: float = 0.0) -> Path:
    path = folder / f"closed-{users}.yaml"
    path.write_text(
        f"name: bench-closed\nload:\n  model: stages\n  stages:\n"
        f"    - {{duration: 0s, target: {users}}}\n"
        f"    - {{duration: {seconds:.0f}s, target: {users}}}\n"
        f"think_time: {{min: {think_s}, max: {think_s}}}\n"
        "users:\n  WebhookSender: {}\n"
    )
    return path


def arrivals_scenario(
    folder: Path, rate: float, seconds: float, pool: int | None, warm_up_s: float = 0.0
) -> Path:
    """Arrivals at `rate` for `seconds`, after `warm_up_s` ramping up to it from a tenth (the
    pool's users open their connections gradually, as a real ramp would)."""
    path = folder / f"arrivals-{rate:.0f}.yaml"
    in_flight = f"  max_in_flight: {pool}\n" if pool else ""
    warm_up = (
        f"    - {{duration: {warm_up_s:g}s, arrival_rate: {rate / 10:.0f}, ramp_to: {rate:.0f}}}\n"
        if warm_up_s
        else ""
    )
    path.write_text(
        f"name: bench-arrivals\nload:\n  model: arrivals\n{in_flight}  phases:\n{warm_up}"
        f"    - {{duration: {seconds:.0f}s, arrival_rate: {rate:.0f}}}\n"
        "users:\n  WebhookSender: {}\n"
    )
    return path


def suite_summary(report_dir: Path) -> dict[str, Any]:
    return json.loads((report_dir / "summary.json").read_text())


def suite_percentiles(report_dir: Path) -> dict[str, float]:
    latency = suite_summary(report_dir)["totals"]["latency"]
    return {k: latency[k] for k in ("p50_ms", "p95_ms", "p99_ms")}


def scratch() -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix="bench-")
