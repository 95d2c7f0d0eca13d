"""What the generator costs: CPU per 1,000 requests at 10, 100 and 1,000 users, memory per user.

    python -m bench.cost [--window 5] [--runs 3] [--no-write]

nginx (CPU 0) answers `POST /api/webhook`; the suite's closed model (`WebhookSender`, a
constant 1 s think time, so each user sends about one request a second) runs on CPU 1 with
10, 100 and 1,000 users, and plain Locust `FastHttpUser` with the same wait beside it as the
reference. Over a steady window after all users are up (`bench.generators.measure`): the
generator's CPU seconds per 1,000 requests served, and its RSS; memory per user is the RSS
difference between 1,000 and 10 users over the 990 users between. Results replace the "cost"
section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
from pathlib import Path

from bench import generators as g
from bench.machine import describe_machine, replace_section, spread
from bench.nginx import Nginx

USERS = (10, 100, 1000)
THINK_S = 1.0
SETTLE_S = 2.0  # after traffic starts: 1,000 users spawn in a second, then stagger over one


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cost", description=__doc__)
    parser.add_argument("--window", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    if not (shutil.which("nginx") or Path("/usr/sbin/nginx").exists()):
        print("bench.cost: nginx is not installed; skipped", file=sys.stderr)
        return 0
    seconds = args.window + SETTLE_S + 4
    nginx = Nginx(cpu=0)
    results: dict[tuple[str, int], list[g.Measured]] = {}
    try:
        with g.scratch() as tmp:
            folder = Path(tmp)
            plain_file = folder / "plain_locustfile.py"
            plain_file.write_text(
                (g.ROOT / "bench" / "plain_locustfile.py")
                .read_text()
                .replace("constant(0)", f"constant({THINK_S})")
            )
            for run in range(args.runs):
                for users in USERS:
                    scenario = g.closed_scenario(folder, users, seconds, THINK_S)
                    commands = {
                        "suite": g.suite(nginx.url, scenario, folder / "run"),
                        "plain": [
                            arg if arg != "bench/plain_locustfile.py" else str(plain_file)
                            for arg in g.plain_locust(
                                nginx.url, seconds, users, "PlainFastHttpUser", folder / "p"
                            )
                        ],
                    }
                    for name, command in commands.items():
                        m = g.measure(command, nginx.served, args.window, settle_s=SETTLE_S)
                        results.setdefault((name, users), []).append(m)
                        print(f"  run {run + 1}: {name} {users} users: {m.rate:,.0f} requests/s, "
                              f"CPU {m.cpu:.3f}, RSS {m.rss_mb:.0f} MB", flush=True)  # fmt: skip
    finally:
        nginx.stop()
    body = render(results, args)
    print("\n" + body)
    if not args.no_write:
        replace_section(g.ROOT / "docs" / "benchmarks.md", "cost", body)
    return 0


def cpu_per_1000(m: g.Measured) -> float:
    return m.cpu / m.rate * 1000 if m.rate else 0.0


def per_user_kib(results: dict, name: str) -> list[float]:
    low, high = results[(name, USERS[0])], results[(name, USERS[-1])]
    between = USERS[-1] - USERS[0]
    return [(b.rss_mb - a.rss_mb) * 1024 / between for a, b in zip(low, high, strict=True)]


def render(results: dict[tuple[str, int], list[g.Measured]], args: argparse.Namespace) -> str:
    lines = [
        describe_machine(),
        "",
        f"Command: `python -m bench.cost --window {args.window:g} --runs {args.runs}` (part of "
        f"`make bench`). nginx on CPU 0, the generator on CPU 1; each user sends a request, "
        f"then waits {THINK_S:g} s. Median of {args.runs} runs (min-max).",
        "",
        "| users | suite: requests/s | suite: CPU s per 1,000 requests | plain FastHttpUser: "
        "CPU s per 1,000 requests | suite / plain | suite RSS, MB | plain RSS, MB |",
        "|---|---|---|---|---|---|---|",
    ]
    for users in USERS:
        suite, plain = results[("suite", users)], results[("plain", users)]
        ratio = statistics.median(cpu_per_1000(m) for m in suite) / statistics.median(
            cpu_per_1000(m) for m in plain
        )
        lines.append(
            f"| {users:,} | {spread([m.rate for m in suite], ',.0f')} | "
            f"{spread([cpu_per_1000(m) for m in suite], '.3f')} | "
            f"{spread([cpu_per_1000(m) for m in plain], '.3f')} | {ratio:.2f} | "
            f"{spread([m.rss_mb for m in suite], '.0f')} | "
            f"{spread([m.rss_mb for m in plain], '.0f')} |"
        )
    lines += [
        "",
        f"Memory per user ({USERS[0]:,} → {USERS[-1]:,} users): suite "
        f"{spread(per_user_kib(results, 'suite'), '.1f')} KiB, plain FastHttpUser "
        f"{spread(per_user_kib(results, 'plain'), '.1f')} KiB.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
