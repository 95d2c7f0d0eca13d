"""How much load one core generates: the suite beside wrk, hey, ab and plain Locust.

    python -m bench.throughput [--window 5] [--runs 3] [--no-write]

nginx (one worker, CPU 0, `bench.nginx`) answers 200 to `POST /api/webhook`; each generator
runs on CPU 1 with 64 connections or users and no pause, one after the other, `--runs`
times in rotation; rates are counted at nginx over a steady window (`bench.generators`).
The suite's closed model is `WebhookSender` with all its hooks, histograms and monitors on.

The arrival engine is an open model: its rate is what it is offered, so its figure is the
highest offered rate it sustains: nginx served at least 98 % of the offered rate over the
window and no arrival was dropped. Rates on a ladder of fractions of plain `FastHttpUser`'s median
are tried in turn up to the first that fails (down from 0.5, if 0.6 fails); the highest
that held is run twice more, and counts only if held in most of its runs.
Each ladder run ramps up to its rate over 2 s (from a tenth), then holds it; its pool
(`max_in_flight`) is 256 users: at loopback latencies a few dozen are in flight.

Beside it, in each rotation, the engine's capacity: offered twice the rate plain FastHttpUser
reached just before, with a pool of 64 (the closed model's concurrency), it serves what one
core can and drops the rest; its requests per CPU-second compare with the closed model's.
The two differ in kind: capacity is an average, while holding a rate means no arrival is
dropped in any moment of the window, so every slow moment of the machine must fit within
the headroom left.

Targets (issue #9): the closed model at least 90 % of plain FastHttpUser's requests per
CPU-second, the arrival engine at least 75 %. The results replace the "throughput" section of
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

from bench import generators as g
from bench.machine import describe_machine, replace_section, spread
from bench.nginx import Nginx

CONNECTIONS = 64
LADDER = (0.6, 0.75, 0.9, 1.0)  # 0.75: the target itself
BELOW_LADDER = (0.5, 0.4, 0.3, 0.2)
POOL = 256
RAMP_S = 2.0  # the arrival rate ramps up from a tenth over this, then the window is measured
SLACK_S = 4.0  # a generator runs this much longer than its window (start, warm-up, margin)
CLOSED_TARGET, ARRIVALS_TARGET = 0.90, 0.75
CLOSED = "suite, closed model (WebhookSender)"
PLAIN = "plain Locust FastHttpUser"
OVERLOADED = "suite, arrival engine, overloaded (pool 64): served"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.throughput", description=__doc__)
    parser.add_argument("--window", type=float, default=5.0, help="steady window, s")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    if not (shutil.which("nginx") or Path("/usr/sbin/nginx").exists()):
        print("bench.throughput: nginx is not installed; skipped", file=sys.stderr)
        return 0
    seconds = args.window + SLACK_S
    nginx = Nginx(cpu=0)
    skipped: list[str] = []
    with g.scratch() as tmp:
        folder = Path(tmp)
        body, lua = g.body_file(folder), g.wrk_script(folder)
        closed = g.closed_scenario(folder, CONNECTIONS, seconds)
        commands: dict[str, Callable[[], list[str]]] = {
            "wrk, 1 thread": lambda: g.wrk(nginx.url, seconds, CONNECTIONS, lua),
            "hey, GOMAXPROCS=1": lambda: g.hey(nginx.url, seconds, CONNECTIONS, body),
            "ab, keep-alive": lambda: g.ab(nginx.url, seconds, CONNECTIONS, body),
            "plain Locust HttpUser": lambda: g.plain_locust(
                nginx.url, seconds, CONNECTIONS, "PlainHttpUser", folder / "plain"
            ),
            PLAIN: lambda: g.plain_locust(
                nginx.url, seconds, CONNECTIONS, "PlainFastHttpUser", folder / "plain"
            ),
            CLOSED: lambda: g.suite(nginx.url, closed, folder / "closed"),
            OVERLOADED: lambda: g.suite(
                nginx.url,
                g.arrivals_scenario(folder, 2 * results[PLAIN][-1].rate, seconds, CONNECTIONS),
                folder / "overloaded",
            ),
        }
        for name, tool in (("wrk", "wrk"), ("hey", "hey"), ("ab", "ab")):
            if not shutil.which(tool):
                skipped.append(f"{tool} is not installed")
                commands = {k: v for k, v in commands.items() if not k.startswith(name)}
        results: dict[str, list[g.Measured]] = {name: [] for name in commands}
        try:
            for run in range(args.runs):
                for name, command in commands.items():
                    env = {"GOMAXPROCS": "1"} if name.startswith("hey") else None
                    measured = g.measure(command(), nginx.served, args.window, env=env)
                    results[name].append(measured)
                    print(f"  run {run + 1}: {name}: {measured.rate:,.0f} requests/s, "
                          f"CPU {measured.cpu:.2f}", flush=True)  # fmt: skip
            plain = statistics.median(m.per_cpu_second for m in results[PLAIN])
            ladder = arrival_ladder(nginx, folder, plain, args.window, args.runs)
        finally:
            nginx.stop()
    body_text = render(results, ladder, plain, skipped, args)
    print("\n" + body_text)
    if not args.no_write:
        replace_section(Path(g.ROOT) / "docs" / "benchmarks.md", "throughput", body_text)
    return 0


def arrival_ladder(
    nginx: Nginx, folder: Path, plain: float, window_s: float, runs: int
) -> list[tuple[float, float, bool, dict]]:
    """(offered rate, served rate, sustained, arrival counters) for each rung tried."""
    tried: list[tuple[float, float, bool, dict]] = []

    def attempt(rate: float) -> bool:
        scenario = g.arrivals_scenario(folder, rate, window_s + SLACK_S, POOL, RAMP_S)
        report = folder / f"arrivals-{rate:.0f}"
        command = g.suite(nginx.url, scenario, report)
        measured = g.measure(command, nginx.served, window_s, settle_s=RAMP_S + g.WARM_UP_S)
        counters = g.suite_summary(report).get("arrivals") or {}
        # More than offered is a backlog from the ramp caught up: spare capacity, not a miss.
        held = measured.rate >= 0.98 * rate and counters.get("dropped", 1) == 0
        counters = {**counters, "cpu": measured.cpu}
        tried.append((rate, measured.rate, held, counters))
        print(f"  arrivals offered {rate:,.0f}/s: served {measured.rate:,.0f}/s, dropped "
              f"{counters.get('dropped')}, CPU {measured.cpu:.2f}: "
              f"{'held' if held else 'not held'}", flush=True)  # fmt: skip
        return held

    def rung(fraction: float) -> float:
        return round(plain * fraction / 50) * 50

    best = None
    for fraction in LADDER:
        if not attempt(rung(fraction)):
            break
        best = rung(fraction)
    if best is None:  # not even the first rung: down until one holds
        best = next((rung(f) for f in BELOW_LADDER if attempt(rung(f))), None)
    if best is not None:
        for _ in range(runs - 1):
            attempt(best)
    return tried


def paired(runs: list[g.Measured], reference: list[g.Measured]) -> list[float]:
    return [m.per_cpu_second / r.per_cpu_second for m, r in zip(runs, reference, strict=True)]


def render(
    results: dict[str, list[g.Measured]],
    ladder: list[tuple[float, float, bool, dict]],
    plain: float,
    skipped: list[str],
    args: argparse.Namespace,
) -> str:
    wrk = results.get("wrk, 1 thread")
    wrk_rate = statistics.median(m.per_cpu_second for m in wrk) if wrk else None
    lines = [
        describe_machine(),
        "",
        f"Command: `python -m bench.throughput --window {args.window:g} --runs {args.runs}` "
        f"(part of `make bench`). nginx on CPU 0, each generator on CPU 1, {CONNECTIONS} "
        "connections or users, no pause; counted at nginx over the steady window. Median of "
        f"{args.runs} runs (min-max).",
        "",
        "| generator (one core) | requests/s | CPU, cores | requests per CPU-second "
        "| vs wrk | vs plain FastHttpUser |",
        "|---|---|---|---|---|---|",
    ]
    plain_runs = results[PLAIN]
    for name, runs in results.items():
        per_cpu = [m.per_cpu_second for m in runs]
        # Paired with the reference run of the same rotation, a few seconds apart: the
        # machine's speed drifts between rotations more than the generators differ.
        vs_plain = paired(runs, plain_runs)
        vs_wrk = f"{statistics.median(paired(runs, wrk)):.3f}" if wrk else "-"
        lines.append(
            f"| {name} | {spread([m.rate for m in runs], ',.0f')} | "
            f"{statistics.median(m.cpu for m in runs):.2f} | {spread(per_cpu, ',.0f')} | "
            f"{vs_wrk} | {spread(vs_plain, ',.2f')} |"
        )
    closed_ratio = statistics.median(paired(results[CLOSED], plain_runs))
    capacity_ratio = statistics.median(paired(results[OVERLOADED], plain_runs))
    held = [rate for rate, _, ok, _ in ladder if ok]
    best = max(held, default=0.0)
    confirmations = [ok for rate, _, ok, _ in ladder if rate == best]
    arrivals_ratio = best / plain
    # A rate held once and then not again is the machine's good moment, not the engine's rate.
    confirmed = 2 * sum(confirmations) > len(confirmations)
    arrivals_verdict = (
        "not met"
        if arrivals_ratio < ARRIVALS_TARGET
        else "met"
        if confirmed
        else f"not shown: held in {sum(confirmations)} of its {len(confirmations)} runs"
    )
    name = "suite, arrival engine: highest offered rate held"
    if not held:
        lowest = min((rate for rate, *_ in ladder), default=0.0)
        lines.append(
            f"| {name} | none (down to {lowest:,.0f}/s) | | | - | below {lowest / plain:.2f} |"
        )
    else:
        vs_wrk = f"{best / wrk_rate:.3f}" if wrk_rate else "-"
        lines.append(
            f"| {name} | {best:,.0f} (held {sum(confirmations)} of {len(confirmations)}) "
            f"| | | {vs_wrk} | {arrivals_ratio:.2f} |"
        )
    lines += [
        "",
        f"Targets: closed model ≥ {CLOSED_TARGET:.0%} of plain FastHttpUser: "
        f"**{'met' if closed_ratio >= CLOSED_TARGET else 'not met'}** ({closed_ratio:.2f}); "
        f"arrival engine ≥ {ARRIVALS_TARGET:.0%}: "
        f"**{arrivals_verdict}** "
        f"({arrivals_ratio:.2f}, the highest rate held over the median of plain "
        "FastHttpUser's runs); the engine's capacity, overloaded, "
        f"{capacity_ratio:.2f} of plain FastHttpUser (paired run by run), against the closed "
        f"model's {closed_ratio:.2f}.",
        "",
        "| arrivals offered/s | served/s at nginx | dropped | max lateness, ms | CPU, cores "
        "| held |",
        "|---|---|---|---|---|---|",
    ]
    for rate, served, ok, counters in ladder:
        lines.append(
            f"| {rate:,.0f} | {served:,.0f} | {counters.get('dropped', '-')} | "
            f"{counters.get('max_lateness_ms', 0):.1f} | {counters['cpu']:.2f} | "
            f"{'yes' if ok else 'no'} |"
        )
    if skipped:
        lines += ["", "Skipped: " + "; ".join(skipped) + "."]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
