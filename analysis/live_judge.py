"""Criteria judged while the run goes, to stop it early (k6's `abortOnFail`).

Only criteria with `abort_on_fail: true` are watched, every `interval_s`, once the run is
`abort_after` seconds old; a violation stops the run through the shape (so that Locust ends it
as it ends any run: headless quits, the web UI stops) and is recorded, so that the report says
which criterion stopped the run and when. What can be judged live: error rate, latency
percentiles (overall or one request) and session failures; other metrics wait for the end.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import gevent

from analysis.counters import RunCounters
from analysis.criteria import Criterion
from analysis.latency import AGGREGATED, LatencyBook, percentile

log = logging.getLogger("criteria")
LIVE_METRICS = frozenset(
    {"error_rate_pct", "p50_ms", "p90_ms", "p95_ms", "p99_ms", "max_ms", "session_failure_pct"}
)
MIN_REQUESTS = 20  # a rate over fewer requests is noise, not a reason to stop a run


class LiveJudge:
    def __init__(
        self,
        stats: Callable[[], Any],
        book: LatencyBook,
        counters: RunCounters,
        stop_run: Callable[[], None],
        interval_s: float = 2.0,
    ) -> None:
        self.stats = stats
        self.book = book
        self.counters = counters
        self.stop_run = stop_run
        self.interval_s = interval_s
        self.criteria: list[Criterion] = []
        self.aborted: dict[str, Any] | None = None
        self._greenlet: gevent.Greenlet | None = None

    def start(self, criteria: list[Criterion]) -> None:
        self.stop()
        self.aborted = None
        self.criteria = [c for c in criteria if c.abort_on_fail and c.metric in LIVE_METRICS]
        if self.criteria:
            self._greenlet = gevent.spawn(self._watch, time.time())

    def stop(self) -> None:
        if self._greenlet is not None:
            self._greenlet.kill(block=False)
            self._greenlet = None

    def _watch(self, started: float) -> None:
        while True:
            gevent.sleep(self.interval_s)
            if self.check(time.time() - started):
                return

    def value(self, criterion: Criterion) -> float | None:
        if criterion.metric == "session_failure_pct":
            attempted = self.counters.get("sessions_attempted")
            if attempted < MIN_REQUESTS:
                return None
            return 100.0 * (1 - self.counters.get("sessions_created") / attempted)
        stats = self.stats()
        if criterion.scope == "overall":
            entry = stats.total
            key = AGGREGATED
        else:
            method, _, name = criterion.scope.partition(" ")
            entry = stats.entries.get((name, method))
            key = criterion.scope
        if entry is None or entry.num_requests < MIN_REQUESTS:
            return None
        if criterion.metric == "error_rate_pct":
            return 100.0 * entry.num_failures / entry.num_requests
        histogram = self.book.get(key, "latency")
        if histogram.get_total_count() == 0:
            return None
        if criterion.metric == "max_ms":
            return histogram.get_max_value() / 1000
        return percentile(histogram, float(criterion.metric[1:3])) / 1000

    def check(self, elapsed_s: float) -> bool:
        """Judge once; True (and the run stopped) when a criterion was violated."""
        for criterion in self.criteria:
            if elapsed_s < criterion.abort_after:
                continue
            value = self.value(criterion)
            if value is not None and criterion.violated_by(value):
                self.aborted = {
                    "criterion": criterion.name,
                    "metric": criterion.metric,
                    "scope": criterion.scope,
                    "value": round(value, 3),
                    "limit": criterion.limit,
                    "at_s": round(elapsed_s, 1),
                }
                log.warning(
                    "aborting the run: %s is %.3g (limit %s %g)",
                    criterion.name,
                    value,
                    criterion.op,
                    criterion.limit,
                )
                self.stop_run()
                return True
        return False
