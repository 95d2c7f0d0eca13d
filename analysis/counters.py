"""Business counters of a run (sessions, messages, WebSocket connections), merged from workers.

Users fire `suite_counter(name, value)`; this collects them. Names in `GAUGES` are levels
(+1 on open, -1 on close) whose peak is kept as well. A worker ships what it counted since its
last report with Locust's stats report, and its running peak; the master adds the counts
exactly. Across workers the peak of a gauge is the sum of the workers' peaks: an upper bound,
exact with one worker, and labelled as such in the summary.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from locust.event import EventHook
from locust.runners import WorkerRunner

from users.base import COUNTER_EVENT

if TYPE_CHECKING:
    from locust.env import Environment

GAUGES = frozenset({"websocket_open"})
REPORT_KEY = "suite_counters"
MSG_FLUSH = "counters:flush"


class RunCounters:
    def __init__(self, environment: Environment) -> None:
        self.environment = environment
        self.totals: Counter[str] = Counter()
        self.peaks: dict[str, float] = {}
        self.worker_peaks: dict[str, dict[str, float]] = {}
        self._unsent: Counter[str] = Counter()
        self._levels: Counter[str] = Counter()
        events = environment.events
        if not hasattr(events, COUNTER_EVENT):
            setattr(events, COUNTER_EVENT, EventHook())
        getattr(events, COUNTER_EVENT).add_listener(self.on_counter)
        events.test_start.add_listener(self.on_test_start)
        runner = environment.runner
        self.is_worker = isinstance(runner, WorkerRunner)
        if self.is_worker:
            events.report_to_master.add_listener(self.on_report_to_master)
            events.test_stop.add_listener(self.on_worker_test_stop)
        elif runner is not None:
            events.worker_report.add_listener(self.on_worker_report)
            runner.register_message(MSG_FLUSH, self.on_flush)

    def on_counter(self, name: str, value: float = 1, **_: Any) -> None:
        if self.is_worker:
            self._unsent[name] += value
        else:
            self.totals[name] += value
        if name in GAUGES:
            self._levels[name] += value
            self.peaks[name] = max(self.peaks.get(name, 0), self._levels[name])

    def on_test_start(self, **_: Any) -> None:
        self.totals.clear()
        self.peaks.clear()
        self.worker_peaks.clear()
        self._unsent.clear()
        self._levels.clear()

    def _payload(self) -> dict[str, Any]:
        payload = {"counts": dict(self._unsent), "peaks": dict(self.peaks)}
        self._unsent.clear()
        return payload

    def on_report_to_master(self, client_id: str, data: dict[str, Any]) -> None:
        data[REPORT_KEY] = self._payload()

    def on_worker_test_stop(self, **_: Any) -> None:
        if self.environment.runner is not None:
            self.environment.runner.send_message(MSG_FLUSH, self._payload())

    def on_worker_report(self, client_id: str, data: dict[str, Any]) -> None:
        if REPORT_KEY in data:
            self._merge(client_id, data[REPORT_KEY])

    def on_flush(self, environment: Environment, msg: Any, **_: Any) -> None:
        self._merge(msg.node_id, msg.data)

    def _merge(self, client_id: str, payload: dict[str, Any]) -> None:
        self.totals.update(payload.get("counts", {}))
        self.worker_peaks[client_id] = payload.get("peaks", {})
        for name in GAUGES:
            self.peaks[name] = sum(p.get(name, 0) for p in self.worker_peaks.values())

    def get(self, name: str) -> float:
        return self.totals.get(name, 0)
