"""What this machine charges a process for sleeping: the same Python work, back to back or not.

    taskset -c 1 python -m bench.part_load [--reps 5]

A generator paced below its full speed sleeps between requests; a saturated one never does.
On a virtual machine a sleeping vCPU is handed back to the host, and the code that runs when
it wakes finds its caches cold. This times one fixed unit of the generator's kind of work
(build an event, JSON out and in, headers formatted), by the thread's own CPU clock, so that
the sleep itself is not counted: back to back, and with the process asleep 0.2, 1 and 5 ms
between units. If the unit costs more after a sleep, part load costs more per request than
flat out, whatever the generator's code (`bench.throughput` prints this beside its ladder).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time

PAUSES_S = (0.0, 0.0002, 0.001, 0.005)
MEASURE_S = 0.4  # per pause and repetition
EVENT = {
    "type": "message_create",
    "timestamp": 1700000000000,
    "message": {"id": "x", "from": "5511900000000", "to": "5511912345678", "text": "Hi"},
}


def unit() -> None:
    """About a request's worth of the generator's Python work (150-250 µs here)."""
    for i in range(12):
        event = {**EVENT, "message": {**EVENT["message"], "id": f"msg-{i}-{random.random()}"}}
        json.loads(json.dumps(event))
        headers = {"Content-Type": "application/json", "X-Api-Key": "k" * 16, "n": str(i)}
        "".join(f"{k}: {v}\r\n" for k, v in headers.items())


def cost_per_unit_us(pause_s: float, units: int) -> float:
    """Mean CPU time of one unit, with the process asleep `pause_s` between units."""
    clock = time.thread_time
    spent = 0.0
    for _ in range(units):
        start = clock()
        unit()
        spent += clock() - start
        if pause_s:
            time.sleep(pause_s)
    return spent / units * 1e6


def measure(reps: int = 5) -> dict[float, float]:
    """Pause (s) -> median CPU µs per unit, the pauses interleaved rep by rep."""
    cost_per_unit_us(0.0, 200)  # warm up
    found: dict[float, list[float]] = {pause: [] for pause in PAUSES_S}
    for _ in range(reps):
        for pause in PAUSES_S:
            units = max(20, min(1500, int(MEASURE_S / (pause + 200e-6))))
            found[pause].append(cost_per_unit_us(pause, units))
    return {pause: statistics.median(values) for pause, values in found.items()}


def describe(costs: dict[float, float]) -> str:
    flat = costs[0.0]
    asleep = ", ".join(
        f"{costs[p]:.0f} µs ({costs[p] / flat:.2f}x) asleep {p * 1000:g} ms between"
        for p in PAUSES_S
        if p
    )
    return f"the same unit of Python work costs {flat:.0f} µs of CPU back to back, {asleep}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.part_load", description=__doc__)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print {pause_s: µs} as JSON")
    args = parser.parse_args(argv)
    costs = measure(args.reps)
    print(json.dumps({str(k): v for k, v in costs.items()}) if args.json else describe(costs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
