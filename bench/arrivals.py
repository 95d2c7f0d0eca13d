"""The highest arrival rate one worker process sustains, beside wrk and plain FastHttpUser.

    python -m bench.arrivals [--duration 10] [--runs 3]

Target: nginx on CPU 0 answering 200 to `POST /api/webhook` (bench.nginx). Generators on CPU 1:
`wrk` (64 connections), plain Locust `FastHttpUser` (64 users, no wait), and the suite's
arrival engine with its `WebhookSender`, on a ladder of offered rates. A rate is sustained when
the requests counted at nginx over the phase are within 2 % of the offered number and no
arrival was dropped. Results replace the "arrivals" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.gateway import WEBHOOK_LUA, run_wrk
from bench.machine import describe_machine, replace_section
from bench.nginx import Nginx

ROOT = Path(__file__).resolve().parent.parent
LADDER = (500, 1000, 1500, 2000, 2500, 3000, 4000, 5000, 6000)
CLIENT_CPU = "1"


def plain_locust(url: str, duration: int) -> float:
    out = subprocess.run(
        ["taskset", "-c", CLIENT_CPU, sys.executable, "-m", "locust", "-f",
         "bench/plain_locustfile.py", "--headless", "-u", "64", "-r", "64", "-t", f"{duration}s",
         "-H", url, "--json", "--only-summary"],
        cwd=ROOT, capture_output=True, text=True, timeout=duration + 60,
    ).stdout  # fmt: skip
    entries = json.loads(out[out.index("[") :])
    entry = entries[0]
    return entry["num_requests"] / (entry["last_request_timestamp"] - entry["start_time"])


def suite_arrivals(nginx: Nginx, rate: int, duration: int) -> tuple[float, dict]:
    with tempfile.TemporaryDirectory() as tmp:
        scenario = Path(tmp) / "bench.yaml"
        scenario.write_text(
            "name: bench-arrivals\nload:\n  model: arrivals\n  phases:\n"
            f"    - {{duration: {duration}s, arrival_rate: {rate}}}\n"
            "users:\n  WebhookSender: {}\n"
        )
        before = nginx.served()
        subprocess.run(
            ["taskset", "-c", CLIENT_CPU, sys.executable, "-m", "locust", "-f", "locustfile.py",
             "--headless", "--only-summary", "--scenario", str(scenario), "-H", nginx.url,
             "--report-dir", str(Path(tmp) / "run")],
            cwd=ROOT, capture_output=True, text=True, timeout=duration + 120,
        )  # fmt: skip
        served = nginx.served() - before - 1  # the status request itself
        summary = json.loads((Path(tmp) / "run" / "summary.json").read_text())
    return served / (rate * duration), summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.arrivals", description=__doc__)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    if not shutil.which("nginx") and not Path("/usr/sbin/nginx").exists():
        print("bench.arrivals: nginx is not installed; skipped", file=sys.stderr)
        return 0
    nginx = Nginx(cpu=0)
    try:
        wrk_rates = (
            [run_wrk(nginx.url, WEBHOOK_LUA, args.duration, 64).rate for _ in range(args.runs)]
            if shutil.which("wrk")
            else []
        )
        plain = [plain_locust(nginx.url, args.duration) for _ in range(args.runs)]
        print(f"  wrk {wrk_rates}\n  plain FastHttpUser {plain}", flush=True)
        ladder = []
        for rate in LADDER:
            ratio, summary = suite_arrivals(nginx, rate, args.duration)
            dropped = (summary.get("arrivals") or {}).get("dropped", 0)
            lateness = (summary.get("arrivals") or {}).get("max_lateness_ms", 0)
            p99 = summary["totals"]["latency"].get("p99_ms")
            ok = abs(ratio - 1) <= 0.02 and dropped == 0
            ladder.append((rate, ratio, dropped, lateness, p99, ok))
            print(f"  arrivals {rate}/s: {ratio:.1%} served, dropped {dropped}, p99 {p99} ms",
                  flush=True)  # fmt: skip
            if not ok:
                break
    finally:
        nginx.stop()
    sustained = max((r for r, *_, ok in ladder if ok), default=0)
    plain_median = statistics.median(plain)
    lines = [
        "| generator (one core) | requests/s | vs plain FastHttpUser |",
        "|---|---|---|",
    ]
    if wrk_rates:
        w = statistics.median(wrk_rates)
        spread = f"{min(wrk_rates):,.0f}-{max(wrk_rates):,.0f}"
        lines.append(f"| wrk, 64 connections | {w:,.0f} ({spread}) | {w / plain_median:.1f} |")
    lines.append(f"| plain Locust FastHttpUser, 64 users | {plain_median:,.0f} "
                 f"({min(plain):,.0f}-{max(plain):,.0f}) | 1.00 |")  # fmt: skip
    lines.append(f"| suite arrival engine, highest rate sustained within 2 % | {sustained:,} "
                 f"| {sustained / plain_median:.2f} |")  # fmt: skip
    lines += ["", "| offered arrivals/s | served at nginx | dropped | max lateness ms | p99 ms |",
              "|---|---|---|---|---|"]  # fmt: skip
    for rate, ratio, dropped, lateness, p99, _ in ladder:
        lines.append(f"| {rate:,} | {ratio:.1%} | {dropped} | {lateness:.1f} | {p99} |")
    body = "\n".join(lines)
    print("\n" + body)
    if not args.no_write:
        command = f"python -m bench.arrivals --duration {args.duration} --runs {args.runs}"
        replace_section(
            ROOT / "docs" / "benchmarks.md",
            "arrivals",
            f"{describe_machine()}\n\nCommand: `{command}` (part of `make bench`)\n\n{body}\n",
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
