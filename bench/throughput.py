"""How much load one core generates: the suite beside wrk, hey, ab and plain Locust.

    python -m bench.throughput [--window 5] [--runs 3] [--no-write]

nginx (one worker, CPU 0, `bench.nginx`) answers 200 to `POST /api/webhook`; each generator
runs on CPU 1 with 64 connections or users and no pause, one after the other, `--runs`
times in rotation; rates are counted at nginx over a steady window (`bench.generators`).
The suite's closed model is `WebhookSender` with all its hooks, histograms and monitors on.

The arrival engine is an open model: its rate is what it is offered, so its figure is the
highest offered rate it holds: nginx served at least 98 % of the offered rate over the window
and no arrival was dropped. Beside it, on the same rungs, seconds apart, its peer: plain
`FastHttpUser` offered the rate the way Locust paces users, `constant_throughput` split over
64 users (held: nginx served 98 % of the offer). Rates on a ladder of fractions of plain
`FastHttpUser`'s median are tried in turn, each generator climbing until its first miss (down
from 0.5, if 0.6 fails); each one's highest held rate is run twice more, and counts only if
held in most of its runs (if not, the rung below it is run as often). An engine ladder run
ramps up to its rate over 2 s (from a tenth), then holds it; its pool (`max_in_flight`) is
256 users: at loopback latencies a few dozen are in flight.

Beside it, in each rotation, the engine's capacity: offered twice the rate plain FastHttpUser
reached just before, with a pool of 64 (the closed model's concurrency), it serves what one
core can and drops the rest; its requests per CPU-second compare with the closed model's.
The two differ in kind: capacity is an average, while holding a rate means no arrival is
dropped in any moment of the window, so every slow moment of the machine must fit within
the headroom left; and a generator paced below its full speed spends more CPU per request
than flat out (docs/benchmarks.md), Locust's own pacing as much as the engine.

Targets (issue #21; #9's were 90 % and 75 %): the closed model at least 95 % of plain
FastHttpUser's requests per CPU-second, the arrival engine's highest held rate at least plain
FastHttpUser's saturated rate. A generator's CPU counts its child processes (the suite's
judging process). The results replace the "throughput" section of
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import generators as g
from bench import part_load
from bench.machine import describe_machine, replace_section, spread
from bench.nginx import Nginx

CONNECTIONS = 64
LADDER = (0.6, 0.75, 0.9, 1.0)  # 1.0: the target itself
BELOW_LADDER = (0.5, 0.4, 0.3, 0.2)
POOL = 256
RAMP_S = 2.0  # the arrival rate ramps up from a tenth over this, then the window is measured
SLACK_S = 4.0  # a generator runs this much longer than its window (start, warm-up, margin)
CLOSED_TARGET, ARRIVALS_TARGET = 0.95, 1.0  # issue #21
CLOSED = "suite, closed model (WebhookSender)"
PLAIN = "plain Locust FastHttpUser"
OVERLOADED = "suite, arrival engine, overloaded (pool 64): served"
ENGINE = "suite, arrival engine"
PACED = "plain FastHttpUser, constant_throughput"
Outcome = tuple[str, float, bool]  # a ladder run: generator, offered rate, held


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
            idle_cost = part_load_penalty()
        finally:
            nginx.stop()
    body_text = render(results, ladder, plain, skipped, args, idle_cost)
    print("\n" + body_text)
    if not args.no_write:
        replace_section(Path(g.ROOT) / "docs" / "benchmarks.md", "throughput", body_text)
    return 0


@dataclass
class Rung:
    """One run of a generator at an offered rate on the ladder."""

    generator: str  # ENGINE or PACED
    offered: float  # requests (arrivals) per second
    served: float  # at nginx, over the window
    held: bool
    counters: dict[str, Any]  # the engine's arrival counters, and "cpu" (cores) for both


def arrival_ladder(
    nginx: Nginx, folder: Path, plain: float, window_s: float, runs: int
) -> list[Rung]:
    """The engine and Locust's own pacing, each up its ladder, paired rung by rung."""
    tried: list[Rung] = []

    def attempt(generator: str, rate: float) -> Rung:
        settle_s = RAMP_S + g.WARM_UP_S
        if generator == ENGINE:
            scenario = g.arrivals_scenario(folder, rate, window_s + SLACK_S, POOL, RAMP_S)
            report = folder / f"arrivals-{rate:.0f}"
            command, env = g.suite(nginx.url, scenario, report), None
        else:
            seconds = window_s + SLACK_S + RAMP_S
            command, env = g.plain_paced(nginx.url, seconds, CONNECTIONS, rate, folder / "paced")
        measured = g.measure(command, nginx.served, window_s, env=env, settle_s=settle_s)
        counters: dict[str, Any] = {}
        if generator == ENGINE:
            counters = g.suite_summary(report).get("arrivals") or {}
        # No counters: nothing shows that no arrival was dropped. More than offered is a
        # backlog from the ramp caught up: spare capacity, not a miss.
        none_dropped = generator == PACED or counters.get("dropped", 1) == 0
        held = measured.rate >= 0.98 * rate and none_dropped
        tried.append(Rung(generator, rate, measured.rate, held, {**counters, "cpu": measured.cpu}))
        print(f"  {generator} offered {rate:,.0f}/s: served {measured.rate:,.0f}/s, dropped "
              f"{counters.get('dropped', '-')}, CPU {measured.cpu:.2f}: "
              f"{'held' if held else 'not held'}", flush=True)  # fmt: skip
        return tried[-1]

    climb(lambda generator, rate: attempt(generator, rate).held, plain, runs)
    return tried


def climb(attempt: Callable[[str, float], bool], plain: float, runs: int) -> None:
    """Run the ladder: `attempt(generator, rate)` runs one and says whether it held."""
    tried: list[Outcome] = []

    def run(generator: str, rate: float) -> bool:
        tried.append((generator, rate, attempt(generator, rate)))
        return tried[-1][2]

    def rung(fraction: float) -> float:
        return round(plain * fraction / 50) * 50

    best: dict[str, float] = {}
    climbing = [ENGINE, PACED]
    for fraction in LADDER:
        for generator in list(climbing):  # paired: the same rung, seconds apart
            if run(generator, rung(fraction)):
                best[generator] = rung(fraction)
            else:
                climbing.remove(generator)
        if not climbing:
            break
    for generator in (ENGINE, PACED):
        if generator not in best:  # not even the first rung: down until one holds
            low = next((rung(f) for f in BELOW_LADDER if run(generator, rung(f))), None)
            if low is not None:
                best[generator] = low
    for _ in range(runs - 1):
        for generator, rate in best.items():
            run(generator, rate)
    # A rate held once and not again was the machine's good moment: the rung below it, held
    # on the way up, is then run as many times, so that one rate is shown in most of its runs.
    for generator, rate in best.items():
        below = [r for name, r, held in tried if name == generator and held and r < rate]
        if below and not shown(runs_at(tried, generator, rate)):
            for _ in range(runs - 1):
                run(generator, max(below))


def outcomes(ladder: list[Rung]) -> list[Outcome]:
    return [(r.generator, r.offered, r.held) for r in ladder]


def runs_at(tried: list[Outcome], generator: str, rate: float) -> list[bool]:
    """Whether `generator` held `rate`, run by run."""
    return [held for name, offered, held in tried if (name, offered) == (generator, rate)]


def shown(runs: list[bool]) -> bool:
    return 2 * sum(runs) > len(runs)


def part_load_penalty() -> dict[float, float]:
    """`bench.part_load` on the generators' core: CPU per unit of work by pause between."""
    command = ["taskset", "-c", str(g.CLIENT_CPU), sys.executable, "-m", "bench.part_load"]
    done = subprocess.run([*command, "--json"], cwd=g.ROOT, capture_output=True, text=True)
    return {float(k): v for k, v in json.loads(done.stdout).items()} if done.returncode == 0 else {}


def highest_held(ladder: list[Rung], generator: str) -> tuple[float, list[bool]]:
    """The highest rate `generator` held in most of its runs (else the highest it held at
    all, 0 if none), and whether it held it, run by run."""
    tried = outcomes(ladder)
    held = sorted({rate for name, rate, ok in tried if name == generator and ok})
    best = next((rate for rate in reversed(held) if shown(runs_at(tried, generator, rate))), None)
    if best is None:
        best = held[-1] if held else 0.0
    return best, runs_at(tried, generator, best)


def paired(runs: list[g.Measured], reference: list[g.Measured]) -> list[float]:
    return [m.per_cpu_second / r.per_cpu_second for m, r in zip(runs, reference, strict=True)]


def render(
    results: dict[str, list[g.Measured]],
    ladder: list[Rung],
    plain: float,
    skipped: list[str],
    args: argparse.Namespace,
    idle_cost: dict[float, float] | None = None,
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
    held_rates = {generator: highest_held(ladder, generator) for generator in (ENGINE, PACED)}
    for generator, (best, runs) in held_rates.items():
        name = f"{generator}: highest offered rate held"
        if not best:
            tried = [r.offered for r in ladder if r.generator == generator]
            lowest = min(tried, default=0.0)
            below = f"below {lowest / plain:.2f}" if tried else "-"
            lines.append(f"| {name} | none (down to {lowest:,.0f}/s) | | | - | {below} |")
        else:
            vs_wrk = f"{best / wrk_rate:.3f}" if wrk_rate else "-"
            lines.append(
                f"| {name} | {best:,.0f} (held {sum(runs)} of {len(runs)}) "
                f"| | | {vs_wrk} | {best / plain:.2f} |"
            )
    engine, engine_runs = held_rates[ENGINE]
    paced, paced_runs = held_rates[PACED]
    lines += [
        "",
        f"Targets: closed model ≥ {CLOSED_TARGET:.0%} of plain FastHttpUser: "
        f"**{'met' if closed_ratio >= CLOSED_TARGET else 'not met'}** ({closed_ratio:.2f}); "
        f"arrival engine ≥ {ARRIVALS_TARGET:.0%}: "
        f"**{held_verdict(engine / plain, engine_runs)}** "
        f"({engine / plain:.2f}, the highest rate held over the median of plain "
        "FastHttpUser's runs); Locust's own pacing, on the same rungs: "
        f"{paced / plain:.2f} (held in {sum(paced_runs)} of its {len(paced_runs)} runs); "
        "the engine's "
        f"capacity, overloaded, {capacity_ratio:.2f} of plain FastHttpUser (paired run by "
        f"run), against the closed model's {closed_ratio:.2f}.",
        "",
        "| generator | offered/s | served/s at nginx | dropped | max lateness, ms "
        "| CPU, cores | held |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in ladder:
        lateness = r.counters.get("max_lateness_ms")
        lines.append(
            f"| {r.generator} | {r.offered:,.0f} | {r.served:,.0f} "
            f"| {r.counters.get('dropped', '-')} "
            f"| {'-' if lateness is None else f'{lateness:.1f}'} | {r.counters['cpu']:.2f} "
            f"| {'yes' if r.held else 'no'} |"
        )
    if idle_cost:
        lines += ["", f"Part load on this machine (`python -m bench.part_load`, CPU "
                  f"{g.CLIENT_CPU}): {part_load.describe(idle_cost)}."]  # fmt: skip
    if skipped:
        lines += ["", "Skipped: " + "; ".join(skipped) + "."]
    return "\n".join(lines)


def held_verdict(ratio: float, runs: list[bool]) -> str:
    """Against the target; a rate held once and then not again is the machine's good moment,
    not the generator's rate, so it counts only if held in most of its runs."""
    if ratio < ARRIVALS_TARGET:
        return "not met"
    if shown(runs):
        return "met"
    return f"not shown: held in {sum(runs)} of its {len(runs)} runs"


if __name__ == "__main__":
    sys.exit(main())
