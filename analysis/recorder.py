"""Every request into the latency histograms; on workers, the histograms to the master.

One listener on Locust's `request` event records each request under "METHOD name", with the
lateness its user reported in the request context (arrival-paced users, see `shapes.arrivals`).
A worker keeps what it recorded since its last report and ships it, encoded, with Locust's
own stats report (`report_to_master`) and once more when its users stop, so that the master's
histograms are exactly the sum of the workers'.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from locust.runners import WorkerRunner

from analysis.latency import LatencyBook

if TYPE_CHECKING:
    from locust.env import Environment

REPORT_KEY = "latency_book"
MSG_FLUSH = "latency:flush"


class RequestRecorder:
    def __init__(self, environment: Environment) -> None:
        self.environment = environment
        self.book = LatencyBook()  # the run's histograms (master or local runner)
        self.outbox = LatencyBook()  # a worker's histograms not yet shipped
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
        **_: Any,
    ) -> None:
        lateness_ms = context.get("lateness_ms", 0.0) if context else 0.0
        target = self.outbox if self.is_worker else self.book
        target.record(f"{request_type} {name}", response_time or 0.0, lateness_ms)

    def on_test_start(self, **_: Any) -> None:
        self.book.clear()
        self.outbox.clear()

    def on_report_to_master(self, client_id: str, data: dict[str, Any]) -> None:
        if self.outbox:
            data[REPORT_KEY] = self.outbox.encode()
            self.outbox.clear()

    def on_worker_report(self, client_id: str, data: dict[str, Any]) -> None:
        if REPORT_KEY in data:
            self.book.add_encoded(data[REPORT_KEY])

    def on_worker_test_stop(self, **_: Any) -> None:
        if self.outbox and self.environment.runner is not None:
            self.environment.runner.send_message(MSG_FLUSH, self.outbox.encode())
            self.outbox.clear()

    def on_flush(self, environment: Environment, msg: Any, **_: Any) -> None:
        self.book.add_encoded(msg.data)
