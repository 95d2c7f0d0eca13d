"""A compact progress line for headless runs, in place of Locust's full table every 2 s.

    [stress] phase 3/6 | 71s/180s | 50 arrivals/s | 49.7 req/s | p95 3 ms | errors 0.00% (0)

Figures are Locust's current ones (req/s and p95 over its last seconds): a live indication;
the summary's figures come from every sample.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TextIO

import gevent

if TYPE_CHECKING:
    from locust.env import Environment

INTERVAL_S = 2.0


def progress_line(environment: Environment, describe_load: Callable[[], str], name: str) -> str:
    runner = environment.runner
    assert runner is not None
    total = runner.stats.total
    p95 = total.get_current_response_time_percentile(0.95) or 0
    errors = total.num_failures
    error_pct = 100.0 * errors / total.num_requests if total.num_requests else 0.0
    return (
        f"[{name}] {describe_load()} | {total.current_rps:.1f} req/s | p95 {p95:.0f} ms"
        f" | errors {error_pct:.2f}% ({errors}) | users {runner.user_count}"
    )


def print_progress(
    environment: Environment,
    describe_load: Callable[[], str],
    name: Callable[[], str],
    out: TextIO = sys.stderr,
) -> gevent.Greenlet:
    """Print the line every `INTERVAL_S` while a run is going (master or local runner)."""

    def loop() -> None:
        while True:
            gevent.sleep(INTERVAL_S)
            runner = environment.runner
            if runner is not None and runner.state in ("spawning", "running"):
                stamp = time.strftime("%H:%M:%S")
                out.write(f"{stamp} {progress_line(environment, describe_load, name())}\n")
                out.flush()

    return gevent.spawn(loop)
