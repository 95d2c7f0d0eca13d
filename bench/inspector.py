"""What the Node inspector costs the gateway: its requests/s with and without it, in one run.

    python -m bench.inspector [--window 5] [--rounds 9] [--no-write]

The tests' Node.js gateway (`tests/nodegw/server.js` under `node --inspect=127.0.0.1:0`, no
rate limit, the API key required, a queue that never fills) runs on CPU 0, and wrk (one
thread, `CONNECTIONS` connections, no pause) on CPU 1 posts messages to `SESSIONS` sessions
with their keys: each request is read, parsed and checked, its key compared, its message
queued with two ack timers and counted in the metrics, the gateway's own JavaScript. This
process, which samples and profiles the gateway as the suite does, runs on CPU 1 with wrk.

Four conditions, each a `--window` s wrk run, in `--rounds` interleaved rounds (A B C D, A B
C D, ...):

- A: the inspector's port open, nothing attached (the reference);
- B: the suite's 1 Hz sampling: `NodeInspector.sample()` every second on its own greenlet
  (`SourceLoop`, as the resource monitor runs it), its probe installed in the gateway;
- C: B and allocation sampling (`HeapProfiler.startSampling`, the suite's interval), what
  a run with `--node-inspect` records by default;
- D: B and a CPU profile (`Profiler.start` at the suite's 1 ms interval), `--cpu-profile`.

Each condition is attached `SETTLE_S` before its window and let go after it: the profiles are
fetched and written outside the window. A closing A ends the last round. Each condition's
figures are read against A's at the same moment, interpolated between the A before it and the
A after (the machine's speed drifts within a round, and between rounds more than the
conditions differ); the verdicts take a distribution-free interval for the median of these
ratios (order statistics: for 9 rounds the 2nd lowest and 2nd highest, 96 %; for 5 or 7,
the lowest and highest, 94 % and 98 %). The cost is read on requests per CPU-second of the
gateway (all its threads, by the scheduler's count): other processes on a shared machine take
the gateway's core from it for a while and move its requests/s by tens of percent, its work
per request far less. The machine's own drift from one window to the next (a few %) is more
than the 1 Hz sampling can cost, so D's CPU profiles also say how much of the gateway's time
the probe's own JavaScript took. Then one heap snapshot under the same load: what the suite
records of it (seconds the call held, MB written) and how long the gateway's event loop
stopped.

Targets (#18): the 1 Hz sampling under 1 % of the gateway's throughput, allocation sampling
(C, against A) under 5 %. The results replace the "inspector" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gevent
import gevent.event
import numpy as np

from analysis.cpu_profile import load_cpu_profile
from bench.gateway import CLIENT_CPU, SERVER_CPU, Run, pin, run_wrk
from bench.machine import describe_machine, replace_section, spread
from monitors.node_profiling import (
    ALLOCATION_INTERVAL_BYTES,
    CPU_PROFILE_FILE,
    NodeProfiling,
    ProfilingPlan,
)
from monitors.sources import SourceLoop
from tests.nodegw import NodeGateway, unavailable

ROOT = Path(__file__).resolve().parent.parent
CONNECTIONS = 32
SESSIONS = 4
SETTLE_S = 0.5
WARM_UP_S = 5
SNAPSHOT_LOAD_S = 4  # outlasts the snapshot (about 2 s here for a 15 MB heap)
SAMPLING_TARGET, ALLOCATIONS_TARGET = 0.01, 0.05
SHOWN_ROUNDS = 5
GATEWAY_FLAGS = ["--rate-limit", "0", "--require-api-key", "--queue-size", "1000000",
                 "--pairing-delay-ms", "0"]  # fmt: skip
# name -> (what it is, what is attached: None for nothing)
CONDITIONS: dict[str, tuple[str, ProfilingPlan | None]] = {
    "A": ("inspector port open, nothing attached (reference)", None),
    "B": ("1 Hz sampling (NodeInspector)", ProfilingPlan(allocations=False)),
    "C": (
        f"B + allocation sampling ({ALLOCATION_INTERVAL_BYTES // 1024} kB)",
        ProfilingPlan(allocations=True),
    ),
    "D": ("B + CPU profile (1 ms)", ProfilingPlan(allocations=False, cpu_from_s=0.0)),
}

MESSAGES_LUA = """
sessions = {%(sessions)s}
counter = 0
body = '{"to":"5511912345678","body":"Test message"}'
request = function()
  counter = counter + 1
  local session = sessions[counter %% #sessions + 1]
  return wrk.format("POST", "/api/sessions/" .. session[1] .. "/messages",
      {["Content-Type"] = "application/json", ["X-Api-Key"] = session[2]}, body)
end
"""


@dataclass
class Measured:
    """One condition's window: wrk's figures and the gateway's CPU over it."""

    run: Run
    cpu_s: float  # the gateway's CPU time (all its threads) over the run
    samples: int = 0  # inspector samples taken while it ran
    probe_share: float | None = None  # D: the probe's share of the CPU profile's time
    at: float = 0.0  # the middle of its window (monotonic seconds)

    @property
    def rate(self) -> float:
        return self.run.rate

    @property
    def per_cpu_second(self) -> float:
        """Requests per second of the gateway's CPU: its capacity on a core of its own, which
        a busy machine's other processes do not move as they move its requests/s."""
        return self.run.requests / self.cpu_s if self.cpu_s > 0 else 0.0


def cpu_s(pid: int) -> float:
    """The CPU time of all of a process's threads, in ns steps (the scheduler's own count,
    where psutil's is in 10 ms ticks)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):  # a thread that ended meanwhile
            total += int((task / "schedstat").read_text().split()[0])
    return total / 1e9


class Counted:
    """A source that counts the samples it gave (that the 1 Hz sampling did run)."""

    def __init__(self, source: Any) -> None:
        self.source, self.name, self.samples = source, source.name, 0

    def sample(self) -> dict[str, Any]:
        sample = self.source.sample()
        self.samples += 1
        return sample

    def close(self) -> None:
        pass  # the source is closed with its profiling


def create_sessions(url: str, count: int) -> list[tuple[str, str]]:
    """`count` ready sessions, each with its own API key: [(session id, key)]."""
    sessions = []
    for index in range(count):
        key = f"bench-inspector-{index}"
        request = urllib.request.Request(
            url + "/api/sessions",
            data=json.dumps({"apiKey": key}).encode(),
            headers={"Content-Type": "application/json", "X-Api-Key": key},
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            sessions.append((json.load(response)["sessionId"], key))
    return sessions


def messages_lua(sessions: list[tuple[str, str]]) -> str:
    listed = ", ".join(f'{{"{session}", "{key}"}}' for session, key in sessions)
    return MESSAGES_LUA % {"sessions": listed}


def load(url: str, lua: str, seconds: int) -> gevent.event.AsyncResult:
    """wrk on the client core for `seconds`, in a thread: the greenlets sample meanwhile."""
    return gevent.get_hub().threadpool.spawn(run_wrk, url, lua, seconds, CONNECTIONS)


@contextlib.contextmanager
def attached(address: str, plan: ProfilingPlan | None, folder: Path,
             planned_s: float) -> Iterator[list[Counted]]:  # fmt: skip
    """The condition's recordings running inside the gateway, as a run starts them; on leaving,
    stopped and fetched (written to `folder`) and the inspector let go. Yields the counted
    sampler (none for A). A recording that failed is an error: the figure would be A's."""
    if plan is None:
        yield []
        return
    profiling = NodeProfiling.attach(address, plan, allow_remote=False)
    notes: list[str] = []
    try:
        sampler = Counted(profiling.sampler)
        profiling.start(folder, planned_s, None)
        loop = SourceLoop(sampler, 1.0, notes.append, time.monotonic())
        try:
            yield [sampler]
        finally:
            loop.stop()
        profiling.finish()
        wanted = {"allocations": plan.allocations, "cpu": plan.cpu}
        missing = [name for name, on in wanted.items() if on and name not in profiling.recorded]
        if notes or profiling.notes or missing or not profiling.sampler.probe:
            raise RuntimeError(f"the inspector failed: {notes + profiling.notes}, {missing}")
    finally:
        profiling.close()


def measure(gateway: NodeGateway, lua: str, condition: str, window_s: int,
            folder: Path) -> Measured:  # fmt: skip
    """`condition` attached, then a `window_s` wrk run; D's CPU profile read and removed."""
    plan = CONDITIONS[condition][1]
    with attached(gateway.inspector, plan, folder, window_s) as sampler:
        gevent.sleep(SETTLE_S)  # the start's own burst (a probe, a profiler's code log) passes
        before, taken = cpu_s(gateway.pid), sum(s.samples for s in sampler)
        started = time.monotonic()
        run = load(gateway.url, lua, window_s).get()
        used, taken = cpu_s(gateway.pid) - before, sum(s.samples for s in sampler) - taken
    measured = Measured(run, used, taken, at=(started + time.monotonic()) / 2)
    if plan is not None and plan.cpu:
        profile = folder / CPU_PROFILE_FILE
        measured.probe_share = probe_share(profile)
        profile.unlink()
    return measured


def probe_share(path: Path) -> float:
    """The share of a CPU profile's time in the probe's own JavaScript: the functions of the
    scripts the inspector evaluated (no URL, but a line; the gateway's have their file's URL,
    V8's natives no line), with what they called."""
    profile = load_cpu_profile(path)
    probe = {i for i, f in enumerate(profile.frames) if not f.url and f.line is not None}
    if not probe or profile.duration_us <= 0:
        return 0.0
    inside = [any(n in probe for n in profile.stack(int(node))) for node in profile.samples]
    return float(profile.weights_us[np.array(inside, dtype=bool)].sum()) / profile.duration_us


def snapshot_cost(gateway: NodeGateway, lua: str, folder: Path) -> dict[str, Any]:
    """One heap snapshot taken as a run takes it, the load on: what node-inspector.json
    records of it (seconds held, bytes written, heap used)."""
    running = load(gateway.url, lua, SNAPSHOT_LOAD_S)
    gevent.sleep(SETTLE_S)
    plan = ProfilingPlan(allocations=False, heap_snapshots=True)
    profiling = NodeProfiling.attach(gateway.inspector, plan, allow_remote=False)
    try:
        latest = profiling.sampler.sample()
        profiling.heap_used_mb = lambda: latest.get("heap_used_mb")
        profiling.start(folder, None, None)
        profiling.finish()
        gevent.sleep(0.1)  # the probe's timer runs once after the hold, late by the hold
        after = profiling.sampler.sample()
    finally:
        profiling.close()
    run = running.get()
    snapshot = dict(profiling.recorded.get("snapshots", {}).get("end") or {})
    if not snapshot:
        raise RuntimeError(f"no heap snapshot: {profiling.notes}")
    return {**snapshot, "load_rate": run.rate,
            "loop_held_ms": after.get("eventloop_delay_max_ms")}  # fmt: skip


def paired(results: dict[str, list[Measured]], condition: str,
           figure: Callable[[Measured], float]) -> list[float]:  # fmt: skip
    """The condition's `figure` round by round, over A's at the same moment: interpolated
    between the A that opened its round and the A that opened the next (the machine's speed
    drifts through a round); for A itself, each A over the one before: the drift."""
    a = results["A"]
    if condition == "A":
        return [figure(after) / figure(before) for before, after in itertools.pairwise(a)]
    ratios = []
    for i, m in enumerate(results[condition]):
        before, after = a[i], a[i + 1]
        span = after.at - before.at
        weight = (m.at - before.at) / span if span > 0 else 0.5
        ratios.append(figure(m) / (figure(before) + weight * (figure(after) - figure(before))))
    return ratios


def rate(m: Measured) -> float:
    return m.rate


def capacity(m: Measured) -> float:
    return m.per_cpu_second


def interval(ratios: list[float], level: float = 0.95) -> tuple[float, float, float]:
    """A distribution-free interval for the median of `ratios`: the k-th lowest and k-th
    highest, k the largest whose confidence is at least `level` (1: the lowest and highest,
    whatever their confidence, for a few rounds); and that confidence."""
    ordered, n = sorted(ratios), len(ratios)

    def confidence(k: int) -> float:  # the chance that the median lies between them
        return 1 - 2 * sum(math.comb(n, i) for i in range(k)) / 2**n

    k = 1
    while 2 * (k + 1) <= n and confidence(k + 1) >= level:
        k += 1
    return ordered[k - 1], ordered[n - k], confidence(k)


def verdict(ratios: list[float], target: float) -> str:
    """The cost against its target, at the median, and whether its interval shows it (which
    takes `SHOWN_ROUNDS` rounds at least)."""
    cost = 1 - statistics.median(ratios)
    low_ratio, high_ratio, level = interval(ratios)
    low, high = 1 - high_ratio, 1 - low_ratio
    figures = f"cost {cost:+.1%}, {level:.0%} interval {low:+.1%} to {high:+.1%}"
    enough = len(ratios) >= SHOWN_ROUNDS
    if enough and high < target:
        return f"**met** ({figures})"
    if enough and low >= target:
        return f"**not met** ({figures})"
    at_median = "met" if cost < target else "not met"
    why = "it spans the target" if enough else f"{len(ratios)} rounds, too few to show it"
    return f"**{at_median} at the median**, not shown by this run ({figures}: {why})"


def render(
    results: dict[str, list[Measured]],
    snapshot: dict[str, Any] | None,
    args: argparse.Namespace,
    node_version: str,
) -> str:
    rounds = len(results["B"])
    lines = [
        describe_machine(),
        "",
        f"Command: `python -m bench.inspector --window {args.window} --rounds {args.rounds}` "
        f"(part of `make bench`). The tests' Node.js gateway (node {node_version}, "
        f"`--inspect=127.0.0.1:0 {' '.join(GATEWAY_FLAGS)}`) on CPU {SERVER_CPU}; wrk (one "
        f"thread, {CONNECTIONS} connections) on CPU {CLIENT_CPU} posting messages to "
        f"{SESSIONS} sessions with their API keys (`POST /api/sessions/{{id}}/messages`, 202); "
        f"this process, which samples and profiles, on CPU {CLIENT_CPU} too. {rounds} rounds of "
        f"A B C D and a closing A, each condition a {args.window} s window attached "
        f"{SETTLE_S:g} s before it. Figures: median of the rounds (min-max). vs A: the ratio "
        "to A's figure at the same moment, interpolated between the A before and the A after, "
        "round by round (for A itself, each A over the one before: the machine's drift); the "
        "targets' intervals are distribution-free intervals for the median of those ratios. "
        "Requests per CPU-second: the gateway's requests over "
        "the CPU time of all its threads (the scheduler's count), its capacity on a core of its "
        "own; the cost (1 minus its ratio to A) and the targets are read on it, as the "
        "machine's other processes move requests/s far more than they move it.",
        "",
        "| condition | requests/s | vs A | gateway CPU, cores | requests per CPU-second "
        "| vs A | cost | p50 ms | p99 ms | samples | non-2xx |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, runs in results.items():
        window_s = sum(m.run.duration_s for m in runs)
        samples = f"{sum(m.samples for m in runs) / window_s:.2f}/s" if name != "A" else "-"
        cost = f"{1 - statistics.median(paired(results, name, capacity)):+.1%}"
        errors = sum(m.run.status_errors + m.run.socket_errors for m in runs)
        lines.append(
            f"| {name}: {CONDITIONS[name][0]} | {spread([m.rate for m in runs], ',.0f')} "
            f"| {spread(paired(results, name, rate), '.3f')} "
            f"| {spread([m.cpu_s / m.run.duration_s for m in runs], '.2f')} "
            f"| {spread([m.per_cpu_second for m in runs], ',.0f')} "
            f"| {spread(paired(results, name, capacity), '.3f')} "
            f"| {cost if name != 'A' else '-'} "
            f"| {spread([m.run.p50_ms for m in runs], '.2f')} "
            f"| {spread([m.run.p99_ms for m in runs], '.2f')} | {samples} | {errors} |"
        )
    shares = [m.probe_share for m in results["D"] if m.probe_share is not None]
    lines += [
        "",
        f"Targets: 1 Hz sampling (B) under {SAMPLING_TARGET:.0%} of the gateway's throughput: "
        f"{verdict(paired(results, 'B', capacity), SAMPLING_TARGET)}; allocation sampling "
        f"(C, with the sampling, against A) under {ALLOCATIONS_TARGET:.0%}: "
        f"{verdict(paired(results, 'C', capacity), ALLOCATIONS_TARGET)}.",
    ]
    if shares:
        lines += [
            "",
            "The sampling's own JavaScript in the gateway under this load, read from D's CPU "
            "profiles (the functions of the probe the inspector evaluated: its 10 ms timer, "
            f"its GC observer, its read each second): {spread([100 * x for x in shares], '.3f')} "
            f"% of the gateway's time, {statistics.median(shares) * 1000:.2f} ms a second.",
        ]
    if snapshot:
        held = snapshot.get("loop_held_ms")
        loop = f", its event loop's longest stop {held:,.0f} ms (the probe's timer)" if held else ""
        before = results["A"][-1].rate  # the closing A, just before
        lost = SNAPSHOT_LOAD_S * (1 - snapshot["load_rate"] / before)
        lines += [
            "",
            f"One heap snapshot under the same load (the heap at {snapshot['heap_used_mb']:.1f} "
            f"MB used): {snapshot['bytes'] / 2**20:.1f} MB written; the call held "
            f"{snapshot['held_s']:.2f} s as node-inspector.json records it (to the last chunk "
            f"written){loop}; over the {SNAPSHOT_LOAD_S} s of load around it the gateway served "
            f"{snapshot['load_rate']:,.0f} requests/s against {before:,.0f} in the A just "
            f"before: {lost:.2f} s of its service lost.",
        ]
    return "\n".join(lines)


def node_version() -> str:
    done = subprocess.run(["node", "--version"], capture_output=True, text=True, check=False)
    return done.stdout.strip() or "?"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.inspector", description=__doc__)
    parser.add_argument("--window", type=int, default=5, help="seconds per condition (5)")
    parser.add_argument("--rounds", type=int, default=9, help="rounds of A B C D (9)")
    parser.add_argument("--warm-up", type=int, default=WARM_UP_S, help="seconds of load first")
    parser.add_argument("--no-snapshot", action="store_true", help="skip the heap snapshot")
    parser.add_argument("--no-write", action="store_true", help="do not update docs/")
    args = parser.parse_args(argv)
    missing = unavailable() or (None if shutil.which("wrk") else "wrk is not installed")
    if missing is None and (os.cpu_count() or 1) < 2:
        missing = "it needs two cores (gateway and client pinned apart)"
    if missing:
        print(f"bench.inspector: {missing}; skipped", file=sys.stderr)
        return 0
    # This thread, and every thread and process it starts, on the client core; the gateway
    # is pinned to the server core once started.
    os.sched_setaffinity(0, {CLIENT_CPU})
    results: dict[str, list[Measured]] = {name: [] for name in CONDITIONS}
    snapshot = None
    print(
        f"inspector benchmark: {args.rounds} rounds of {', '.join(CONDITIONS)}, "
        f"{args.window} s each, gateway on CPU {SERVER_CPU}, wrk on CPU {CLIENT_CPU}", flush=True
    )  # fmt: skip
    with (
        NodeGateway(GATEWAY_FLAGS, inspect=True) as gateway,
        tempfile.TemporaryDirectory(prefix="bench-inspector-") as tmp,
    ):
        pin(gateway.pid, SERVER_CPU)
        folder = Path(tmp)
        lua = messages_lua(create_sessions(gateway.url, SESSIONS))
        load(gateway.url, lua, args.warm_up).get()  # the gateway's code compiled and optimised
        plan = [(index, name) for index in range(args.rounds) for name in CONDITIONS]
        for index, name in [*plan, (args.rounds, "A")]:
            measured = measure(gateway, lua, name, args.window, folder)
            results[name].append(measured)
            print(
                f"  round {index + 1}, {name}: {measured.rate:,.0f} req/s, "
                f"p99 {measured.run.p99_ms:.2f} ms, "
                f"{measured.per_cpu_second:,.0f} per gateway CPU-second", flush=True
            )  # fmt: skip
        if not args.no_snapshot:
            snapshot = snapshot_cost(gateway, lua, folder)
            print(f"  heap snapshot: held {snapshot['held_s']:.2f} s, "
                  f"{snapshot['bytes'] / 2**20:.1f} MB", flush=True)  # fmt: skip
    body = render(results, snapshot, args, node_version())
    print("\n" + body)
    if not args.no_write:
        replace_section(ROOT / "docs" / "benchmarks.md", "inspector", body)
        print("\nwritten to docs/benchmarks.md (section 'inspector')")
    return 0


if __name__ == "__main__":
    sys.exit(main())
