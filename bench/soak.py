"""Does the suite itself leak? A compressed endurance run, and the generator's memory over it.

    python -m bench.soak [--minutes 30] [--no-write] [--keep DIR]     (make soak)

The endurance scenario (40 users, messages with delivery tracking, webhooks) compressed to
`--minutes` runs headless against the embedded gateway. The generator process (a local
runner: users, histograms, windows, monitors and the live judge all in it) samples its own RSS
into samples.csv once a second (`source` = `generator:local`). Over the second half of the load
(the first is warm-up: a 60-minute soak grew for its first half, by the allocator's and the
libraries' caches filling, then stayed flat), the Theil-Sen slope of that RSS with its 95 %
interval, in MB per hour: flat means the interval holds zero or the slope is under
`FLAT_MB_PER_HOUR`. A leak grows all the way through and shows in either half. Samples after
the load (the report being rendered) are left out. The gateway's own slope is shown beside it.
Results replace the "soak" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.machine import describe_machine, replace_section
from monitors.alerts import theil_sen, thinned
from monitors.storage import read_samples

ROOT = Path(__file__).resolve().parent.parent
FLAT_MB_PER_HOUR = 5.0


WARM_UP_FRACTION = 0.5


def slope_mb_per_hour(
    rows: list[dict], key: str, until_s: float = float("inf")
) -> tuple[float, float, float, int]:
    points = [
        (float(r["t"]), float(r[key]))
        for r in rows
        if isinstance(r.get(key), float) and float(r["t"]) <= until_s
    ]
    if len(points) < 20:
        return 0.0, 0.0, 0.0, len(points)
    points = points[int(len(points) * WARM_UP_FRACTION) :]
    slope, low, high = theil_sen(thinned(points, 200))
    return slope * 3600, low * 3600, high * 3600, len(points)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--keep", type=Path, help="keep the run's folder (samples, report) here")
    parser.add_argument("--judge", type=Path, help="judge a kept run's folder instead of running")
    args = parser.parse_args(argv)
    seconds = args.minutes * 60
    if args.judge is not None:
        rows = read_samples(args.judge / "samples.csv")
    else:
        rows = run(seconds, args.keep)
        if rows is None:
            return 1
    return judge(rows, seconds, args)


def run(seconds: float, keep: Path | None) -> list[dict] | None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = keep or Path(tmp) / "soak"
        command = [
            sys.executable, "-m", "locust", "-f", "locustfile.py", "--headless",
            "--only-summary", "--scenario", "endurance", "--time-scale", repr(seconds / 86_400),
            "--report-dir", str(folder),
        ]  # fmt: skip
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        if done.returncode not in (0, 1, 3) or not (folder / "samples.csv").exists():
            print(f"exit code {done.returncode}:\n{done.stderr[-3000:]}", file=sys.stderr)
            return None
        return read_samples(folder / "samples.csv")


def judge(rows: list[dict], seconds: float, args: argparse.Namespace) -> int:
    generator = [r for r in rows if r["source"] == "generator:local"]
    gateway = [r for r in rows if r["source"] == "gateway"]
    load = [r for r in generator if float(r["t"]) <= seconds]
    g_slope, g_low, g_high, g_n = slope_mb_per_hour(generator, "rss_mb", seconds)
    t_slope, t_low, t_high, t_n = slope_mb_per_hour(gateway, "rss_mb", seconds)
    flat = g_low <= 0 <= g_high or abs(g_slope) < FLAT_MB_PER_HOUR
    start = load[0]["rss_mb"] if load else 0.0
    half = load[int(len(load) * WARM_UP_FRACTION)]["rss_mb"] if load else 0.0
    last = load[-1]["rss_mb"] if load else 0.0
    body = "\n\n".join([
        describe_machine(),
        f"Command: `python -m bench.soak --minutes {args.minutes:g}` (`make soak`): the "
        f"endurance scenario compressed to {args.minutes:g} min against the embedded gateway; "
        "RSS of the generator process (users, histograms, windows, monitors) and of the "
        "gateway, sampled at 1 Hz; Theil-Sen slope over the second half of the load (the "
        "first is warm-up), 95 % interval.",
        f"Target: the suite's own memory flat (the interval holds zero, or under "
        f"{FLAT_MB_PER_HOUR:g} MB/h): **{'met' if flat else 'not met'}**.",
        "| process | samples judged | RSS start → half → end, MB | slope, MB/h | 95 % interval |\n"
        "|---|---|---|---|---|\n"
        f"| generator (suite) | {g_n} | {start:.1f} → {half:.1f} → {last:.1f} | {g_slope:+.2f} | "
        f"{g_low:+.2f} to {g_high:+.2f} |\n"
        f"| gateway | {t_n} | | {t_slope:+.2f} | {t_low:+.2f} to {t_high:+.2f} |",
    ])  # fmt: skip
    print(body)
    if not args.no_write:
        replace_section(ROOT / "docs" / "benchmarks.md", "soak", body)
    return 0 if flat else 1


if __name__ == "__main__":
    raise SystemExit(main())
