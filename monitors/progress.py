"""A compact progress line for headless runs, in place of Locust's full table every 2 s.

    [stress] phase 3/6 | 71s/180s | 50 arrivals/s | dropped 0 | 49.7 req/s | p95 3.1 ms
      | errors 0.00% (0) | in flight 2 | verdict pass

(one line). The figures are the live view's (`monitors.live.LiveView`, `suite.live_run`): p95
is latency from the due time over the last seconds, from the suite's own histograms, as the
report judges it; "verdict" is the worst state of the criteria the report's judgement of the
run so far measured (pass, degrade, fail), or "not yet". An open-model run counts requests in
flight; a closed-model one its users (the arrival engine's idle pool is not a load).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO

import gevent

if TYPE_CHECKING:
    from locust.env import Environment

    from monitors.live import LiveView

INTERVAL_S = 2.0
SPAWN_RATE_WARNING = "Your selected spawn rate is very high"


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f} ms" if value < 10 else f"{value:.0f} ms"


def progress_line(payload: dict[str, Any], describe_load: str, name: str) -> str:
    throughput = payload.get("throughput") or {}
    last = (payload.get("latency") or {}).get("last") or {}
    load = payload.get("load") or {}
    verdict = payload.get("verdict") or {}
    errors = throughput.get("failures", 0)
    if load.get("open_model"):
        count = f"in flight {load.get('in_flight') or 0}"
    else:
        count = f"users {load.get('users', 0)}"
    return (
        f"[{name}] {describe_load} | {throughput.get('requests_per_s', 0.0):.1f} req/s"
        f" | p95 {_ms(last.get('p95_ms'))} | errors {throughput.get('error_rate_pct', 0.0):.2f}%"
        f" ({errors}) | {count} | verdict {verdict.get('worst') or 'not yet'}"
    )


def print_progress(
    environment: Environment,
    describe_load: Callable[[], str],
    view: LiveView,
    out: TextIO = sys.stderr,
) -> gevent.Greenlet:
    """Print the line every `INTERVAL_S` while a run is going (master or local runner)."""

    def loop() -> None:
        while True:
            gevent.sleep(INTERVAL_S)
            runner = environment.runner
            payload = view.feed.payload
            if payload is None or runner is None or runner.state not in ("spawning", "running"):
                continue
            name = (payload.get("run") or {}).get("scenario", "?")
            stamp = time.strftime("%H:%M:%S")
            out.write(f"{stamp} {progress_line(payload, describe_load(), name)}\n")
            out.flush()

    return gevent.spawn(loop)


class _NotForSuitePools(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(SPAWN_RATE_WARNING)


def quiet_spawn_rate_warning() -> None:
    """Locust warns of a spawn rate over 100/s, a user's choice in plain Locust; here the
    scenario's shape chooses it (the arrival engine's idle pool, a burst's users, all at
    once), and the warning reads like a mistake of the user's."""
    logger = logging.getLogger("locust.runners")
    if not any(isinstance(f, _NotForSuitePools) for f in logger.filters):
        logger.addFilter(_NotForSuitePools())
