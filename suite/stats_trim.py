"""Locust's per-second request counters, trimmed to the minutes Locust reads.

Each of Locust's stats entries counts requests and failures per second of the run in a dict
keyed by the second (`num_reqs_per_sec`, `num_fail_per_sec`), and reads only the last dozen
seconds of it (the current rate). On a local runner and on the master nothing is ever taken out:
a key per second per request name, about 3 MB an hour for a handful of names, 70 MB over the
plan's 24 hours. Every minute, the seconds older than `KEEP_S` are dropped. (Workers reset their
entries at each report to the master and need none of this.)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import gevent

if TYPE_CHECKING:
    from locust.stats import RequestStats

KEEP_S = 120
EVERY_S = 60.0


def trim(stats: RequestStats, now: float | None = None) -> int:
    """Drop per-second counts older than `KEEP_S`; how many were dropped."""
    oldest = int(now if now is not None else time.time()) - KEEP_S
    dropped = 0
    for entry in [*stats.entries.values(), stats.total]:
        for per_second in (entry.num_reqs_per_sec, entry.num_fail_per_sec):
            old = [second for second in per_second if second < oldest]
            for second in old:
                del per_second[second]
            dropped += len(old)
    return dropped


def keep_trimmed(stats: Callable[[], RequestStats]) -> gevent.Greenlet:
    """Trim the runner's stats (asked for each time: a new run may have new ones) every minute."""

    def loop() -> None:
        while True:
            gevent.sleep(EVERY_S)
            trim(stats())

    return gevent.spawn(loop)
