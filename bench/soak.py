"""Does the suite itself leak? A compressed endurance run, and the generator's memory over it.

    python -m bench.soak [--minutes 10] [--no-write] [--keep DIR]     (make soak)

The endurance scenario (40 users, messages with delivery tracking, webhooks) compressed to
`--minutes` runs headless against the embedded gateway. The generator process (a local
runner: users, histograms, windows, monitors and the live judge all in it) samples its own RSS
into samples.csv once a second (`source` = `generator:local`). After the first tenth (warm-up),
the Theil-Sen slope of that RSS with its 95 % interval, in MB per hour: flat means the interval
holds zero or the slope is under `FLAT_MB_PER_HOUR`. The gateway's own slope is shown beside it.
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


def slope_mb_per_hour(rows: list[dict], key: str) -> tuple[float, float, float, int]:
    points = [(float(r["t"]), float(r[key])) for r in rows if isinstance(r.get(key), float)]
    if len(points) < 20:
        return 0.0, 0.0, 0.0, len(points)
    points = points[len(points) // 10 :]
    slope, low, high = theil_sen(thinned(points, 200))
    return slope * 3600, low * 3600, high * 3600, len(points)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--keep", type=Path, help="keep the run's folder (samples, report) here")
    args = parser.parse_args(argv)
    seconds = args.minutes * 60
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp) / "soak"
        command = [
            sys.executable, "-m", "locust", "-f", "locustfile.py", "--headless",
            "--only-summary", "--scenario", "endurance", "--time-scale", repr(seconds / 86_400),
            "--report-dir", str(folder),
        ]  # fmt: skip
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        if done.returncode not in (0, 1, 3) or not (folder / "samples.csv").exists():
            print(done.stderr[-3000:], file=sys.stderr)
            return 1
        rows = read_samples(folder / "samples.csv")
    generator = [r for r in rows if r["source"] == "generator:local"]
    gateway = [r for r in rows if r["source"] == "gateway"]
    g_slope, g_low, g_high, g_n = slope_mb_per_hour(generator, "rss_mb")
    t_slope, t_low, t_high, t_n = slope_mb_per_hour(gateway, "rss_mb")
    flat = g_low <= 0 <= g_high or abs(g_slope) < FLAT_MB_PER_HOUR
    first = generator[len(generator) // 10]["rss_mb"] if generator else 0.0
    last = generator[-1]["rss_mb"] if generator else 0.0
    body = "\n\n".join([
        describe_machine(),
        f"Command: `python -m bench.soak --minutes {args.minutes:g}` (`make soak`): the "
        f"endurance scenario compressed to {args.minutes:g} min against the embedded gateway; "
        "RSS of the generator process (users, histograms, windows, monitors) and of the "
        "gateway, sampled at 1 Hz, after a tenth of warm-up; Theil-Sen slope, 95 % interval.",
        f"Target: the suite's own memory flat (the interval holds zero, or under "
        f"{FLAT_MB_PER_HOUR:g} MB/h): **{'met' if flat else 'not met'}**.",
        "| process | samples | RSS after warm-up → end, MB | slope, MB/h | 95 % interval |\n"
        "|---|---|---|---|---|\n"
        f"| generator (suite) | {g_n} | {first:.1f} → {last:.1f} | {g_slope:+.2f} | "
        f"{g_low:+.2f} to {g_high:+.2f} |\n"
        f"| gateway | {t_n} | | {t_slope:+.2f} | {t_low:+.2f} to {t_high:+.2f} |",
    ])  # fmt: skip
    print(body)
    if not args.no_write:
        replace_section(ROOT / "docs" / "benchmarks.md", "soak", body)
    return 0 if flat else 1


if __name__ == "__main__":
    raise SystemExit(main())
