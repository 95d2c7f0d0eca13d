"""Every request into the latency histograms; on workers, the histograms to the master.

One listener on Locust's `request` event records each request under "METHOD name", with the
lateness its user reported in the request context (arrival-paced users, see `shapes.arrivals`).
A worker keeps what it recorded since its last report and ships it, encoded, with Locust's
own stats report (`report_to_master`) and once more when its users stop, so that the master's
histograms are exactly the sum of the workers'.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from locust.runners import WorkerRunner

from analysis.latency import LatencyBook
from analysis.timeline import Windows

if TYPE_CHECKING:
    from locust.env import Environment

REPORT_KEY = "latency_book"
WINDOWS_KEY = "latency_windows"
WS = "WS"
MSG_FLUSH = "latency:flush"


class RequestRecorder:
    """`window_width()` is asked at each start: the width of the run's `Windows` in seconds."""

    def __init__(
        self, environment: Environment, window_width: Callable[[], float] = lambda: 1.0
    ) -> None:
        self.environment = environment
        self.window_width = window_width
        self.book = LatencyBook()  # the run's histograms (master or local runner)
        self.windows = Windows()  # the run's HTTP requests over time
        self.outbox = LatencyBook()  # a worker's histograms not yet shipped
        self.outbox_windows = Windows()
        runner = environment.runner
        self.is_worker = isinstance(runner, WorkerRunner)
        events = environment.events
        events.request.add_listener(self.on_request)
        events.test_start.add_listener(self.on_test_start)
        if self.is_worker:
            events.report_to_master.add_listener(self.on_report_to_master)
            events.test_stop.add_listener(self.on_worker_test_stop)
        elif runner is not None:
            events.worker_report.add_listener(self.on_worker_report)
            runner.register_message(MSG_FLUSH, self.on_flush)

    def on_request(
        self,
        request_type: str,
        name: str,
        response_time: float | None,
        context: dict[str, Any] | None = None,
        exception: BaseException | None = None,
        **_: Any,
    ) -> None:
        lateness_ms = context.get("lateness_ms", 0.0) if context else 0.0
        service_ms = response_time or 0.0
        book, windows = (
            (self.outbox, self.outbox_windows) if self.is_worker else (self.book, self.windows)
        )
        book.record(f"{request_type} {name}", service_ms, lateness_ms)
        if request_type != WS:
            latency_ms = service_ms + lateness_ms
            windows.record(time.time() - latency_ms / 1000, latency_ms, exception is not None)

    def on_test_start(self, **_: Any) -> None:
        width = self.window_width()
        self.book.clear()
        self.outbox.clear()
        self.windows.reset(width)
        self.outbox_windows.reset(width)

    def _shipment(self) -> dict[str, Any]:
        shipment = {REPORT_KEY: self.outbox.encode(), WINDOWS_KEY: self.outbox_windows.encode()}
        self.outbox.clear()
        self.outbox_windows.reset(self.outbox_windows.width_s)
        return shipment

    def _receive(self, data: dict[str, Any]) -> None:
        if REPORT_KEY in data:
            self.book.add_encoded(data[REPORT_KEY])
        if WINDOWS_KEY in data:
            self.windows.add_encoded(data[WINDOWS_KEY])

    def on_report_to_master(self, client_id: str, data: dict[str, Any]) -> None:
        if self.outbox or self.outbox_windows:
            data.update(self._shipment())

    def on_worker_report(self, client_id: str, data: dict[str, Any]) -> None:
        self._receive(data)

    def on_worker_test_stop(self, **_: Any) -> None:
        if (self.outbox or self.outbox_windows) and self.environment.runner is not None:
            self.environment.runner.send_message(MSG_FLUSH, self._shipment())

    def on_flush(self, environment: Environment, msg: Any, **_: Any) -> None:
        self._receive(msg.data)
