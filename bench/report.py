"""What the report costs: judging and rendering a 1 h and a 24 h run from their files.

    python -m bench.report [--runs 3] [--no-write]

A synthetic run folder is written as the suite writes one (summary.json, timeline.json with
the request windows and stages, samples.csv with one gateway sample a second: 3,600 or 86,400
rows, and generator samples), for the endurance scenario at 40 users: diurnal stages, a slow
leak, a few thousand requests a minute. Then `python -m analysis.report <folder>` runs in a
fresh process, `--runs` times; its wall time and its peak resident memory (the child's
`ru_maxrss`) are the cost. Targets from the report issue: 24 h under 30 s and under 1 GB.
Results replace the "report" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from analysis.summary import SCHEMA_VERSION
from analysis.timeline import Windows, window_width_for
from bench.machine import describe_machine, replace_section
from monitors.resources import COLUMNS
from monitors.storage import SampleWriter

ROOT = Path(__file__).resolve().parent.parent
TARGET_S, TARGET_MB = 30.0, 1024.0
REQUESTS_PER_S = 40  # 40 users, a request a second or so


def write_run(folder: Path, hours: float, seed: int = 7) -> None:
    """A run of `hours` as the suite leaves it on disk."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    duration = hours * 3600
    start = 1_780_000_000.0
    width = window_width_for(duration)
    windows = Windows(width)
    # Every request would be 3.5 M for a day: each window gets a few hundred samples instead,
    # its count set to the true number (the histogram's size, not its count, is the cost).
    for index in range(int(duration / width)):
        due = start + index * width
        for _ in range(200):
            windows.record(due + 0.001, rng.lognormvariate(1.5, 0.5), rng.random() < 0.001)
        window = windows.windows[int(due // width)]
        window.requests = int(REQUESTS_PER_S * width)
    stages = []
    for hour in range(int(hours) or 1):
        stages.append({
            "index": hour, "name": f"hour {hour + 1}", "unit": "users", "start": 40, "end": 40,
            "label": f"hour {hour + 1}: 40 users", "started": start + hour * 3600,
            "ended": start + min(duration, (hour + 1) * 3600),
        })  # fmt: skip
    (folder / "timeline.json").write_text(
        json.dumps({"windows": windows.encode(), "stages": stages})
    )
    writer = SampleWriter(folder / "samples.csv", COLUMNS)
    stamp = dt.datetime.fromtimestamp(start, dt.UTC)
    accepted = 0.0
    for second in range(int(duration)):
        accepted += 20 * rng.random()
        sample = {
            "rss_mb": 150 + 0.002 * second + rng.gauss(0, 1.5),
            "cpu_pct": max(0.0, rng.gauss(20, 5)),
            "cpu_pct_total": 10.0, "threads": 4, "open_files": 40, "connections": 42,
            "disk_read_bytes_per_s": 0.0, "disk_write_bytes_per_s": 4096.0,
            "host_net_sent_bytes_per_s": 1e5, "host_net_recv_bytes_per_s": 1e5,
            "queue_depth": rng.randint(0, 5), "sessions_active": 20, "sessions_ready": 20,
            "websocket_connections": 20, "messages_accepted": accepted, "users": 40,
        }  # fmt: skip
        writer.write(float(second), "gateway", sample)
        # The writer stamps rows with the current time: the file says when, for the analysis.
        if second % 5 == 0:
            writer.write(float(second), "generator:local", {"cpu_pct": 30.0, "rss_mb": 90.0})
    writer.close()
    _restamp(folder / "samples.csv", stamp)
    requests = int(REQUESTS_PER_S * duration)
    latency = {
        "count": requests, "min_ms": 0.4, "mean_ms": 5.0, "max_ms": 90.0, "p50_ms": 4.5,
        "p90_ms": 8.0, "p95_ms": 9.8, "p99_ms": 14.0, "p99_9_ms": 30.0,
    }  # fmt: skip
    summary = {
        "schema_version": SCHEMA_VERSION, "scenario": "endurance", "description": "synthetic",
        "model": "endurance", "time_scale": 1.0, "target": "http://127.0.0.1:3000",
        "embedded_target": True, "started_at": stamp.isoformat(timespec="seconds"),
        "ended_at": (stamp + dt.timedelta(seconds=duration)).isoformat(timespec="seconds"),
        "duration_s": duration, "partial": False, "workers": 1,
        "percentiles": "HdrHistogram, 3 significant digits, every sample",
        "totals": {"requests": requests, "failures": requests // 1000, "error_rate_pct": 0.1,
                   "requests_per_s": REQUESTS_PER_S, "latency": latency, "service": latency},
        "requests": {}, "peak_users": 40, "arrivals": None,
        "sessions": {"attempted": 20, "created": 20, "success_rate_pct": 100.0},
        "messages": {"accepted": int(accepted), "throttled": 0, "delivered": int(accepted)},
        "websocket": {"connected": 20, "failed": 0, "peak_open": 20},
        "errors": [], "resources": {"alerts": [], "notes": []},
    }  # fmt: skip
    (folder / "summary.json").write_text(json.dumps(summary))


def _restamp(path: Path, start: dt.datetime) -> None:
    """Rows' wall-clock `time` from their `t` (the writer stamps the moment it wrote them)."""
    lines = path.read_text().splitlines()
    out = [lines[0]]
    for line in lines[1:]:
        t, _, rest = line.split(",", 2)
        when = start + dt.timedelta(seconds=float(t))
        out.append(f"{t},{when.isoformat(timespec='milliseconds')},{rest}")
    path.write_text("\n".join(out) + "\n")


def render_once(folder: Path) -> tuple[float, float, int]:
    """(wall seconds, peak RSS in MB, exit code) of `python -m analysis.report folder`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "analysis.report", str(folder)], cwd=ROOT, capture_output=True
    )
    wall = time.perf_counter() - started
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if done.returncode == 2:
        raise SystemExit(f"bench.report: the report failed: {done.stderr.decode()[-500:]}")
    # ru_maxrss of children is the largest of any child so far: runs go from small to large.
    return wall, max(peak_kib, before) / 1024, done.returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for hours in (1, 24):
            folder = Path(tmp) / f"run-{hours}h"
            write_run(folder, hours)
            results = [render_once(folder) for _ in range(args.runs)]
            walls = [w for w, _, _ in results]
            peak = max(p for _, p, _ in results)
            samples = int(hours * 3600)
            rows.append((hours, samples, walls, peak))
            median = statistics.median(walls)
            print(
                f"{hours:>2} h ({samples:,} samples): {median:.2f} s "
                f"(min {min(walls):.2f}, max {max(walls):.2f}), peak RSS {peak:.0f} MB"
            )
    day = rows[-1]
    met = statistics.median(day[2]) < TARGET_S and day[3] < TARGET_MB
    table = [
        "| run | gateway samples | render, median s (min-max) | peak RSS, MB |",
        "|---|---|---|---|",
    ]
    for hours, samples, walls, peak in rows:
        table.append(
            f"| {hours} h | {samples:,} | {statistics.median(walls):.2f} "
            f"({min(walls):.2f}-{max(walls):.2f}) | {peak:.0f} |"
        )
    body = "\n\n".join([
        describe_machine(),
        f"Command: `python -m bench.report --runs {args.runs}` (part of `make bench`). A fresh "
        "`python -m analysis.report` process judges and renders the synthetic run (report.json, "
        "report.md, report.html); the process's peak RSS includes Python, pandas and numpy.",
        f"Target: 24 h of samples under {TARGET_S:.0f} s and {TARGET_MB:.0f} MB: "
        f"**{'met' if met else 'not met'}**.",
        "\n".join(table),
    ])  # fmt: skip
    print("\n" + body)
    if not args.no_write:
        replace_section(ROOT / "docs" / "benchmarks.md", "report", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
