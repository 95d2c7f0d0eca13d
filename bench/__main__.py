"""`make bench`: every benchmark in turn, within a time budget, each writing its section.

    python -m bench [--budget-min 17] [--no-write] [--only throughput,latency]

Each benchmark is its own module (`python -m bench.<name> --help`) and prints its table; this
runs them in order, says how long each took, and skips the rest with a note when the next one
would not fit in the budget (its usual time, `EXPECTED_S`, is what it took here). Traffic stays
on loopback: every target is started here on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

# name -> (arguments, expected seconds on a 2-core machine)
BENCHMARKS: dict[str, tuple[list[str], float]] = {
    "throughput": (["--window", "4", "--runs", "3"], 260.0),
    "latency": (["--seconds", "6", "--runs", "3"], 220.0),
    "cost": (["--window", "4", "--runs", "3"], 160.0),
    "gateway": (["--duration", "5", "--runs", "3"], 150.0),
    "monitors": (["--duration", "10"], 70.0),
    "report": (["--runs", "3"], 20.0),
    "inspector": (["--window", "4", "--rounds", "5"], 110.0),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--budget-min", type=float, default=17.0)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--only", default="", help="some of: " + ",".join(BENCHMARKS))
    args = parser.parse_args(argv)
    names = [n for n in args.only.split(",") if n] or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)} (known: {', '.join(BENCHMARKS)})")
    deadline = time.monotonic() + args.budget_min * 60
    took: list[tuple[str, str]] = []
    failed = False
    for name in names:
        extra, expected_s = BENCHMARKS[name]
        if time.monotonic() + expected_s > deadline:
            took.append((name, f"skipped: {expected_s:.0f} s would pass the budget"))
            continue
        print(f"\n== bench.{name}", flush=True)
        started = time.monotonic()
        command = [sys.executable, "-m", f"bench.{name}", *extra]
        done = subprocess.run(command + (["--no-write"] if args.no_write else []))
        seconds = time.monotonic() - started
        failed |= done.returncode != 0
        took.append((name, f"{seconds:.0f} s" + ("" if done.returncode == 0 else ", failed")))
    print("\n" + "\n".join(f"bench.{name}: {what}" for name, what in took))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
