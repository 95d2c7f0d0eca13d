"""The gateway's Prometheus metrics, on a registry of its own (one per app, so tests can make many).

Names are prefixed `gateway_`; the standard `process_*`, `python_gc_*` and `python_info` collectors
are registered too, so `process_resident_memory_bytes` and `process_cpu_seconds_total` are there.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
MESSAGE_STATES = ("accepted", "sent", "delivered", "failed", "rejected")
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip


class GatewayMetrics:
    """Counters and gauges the gateway keeps; gauges that mirror state read it when scraped."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)

        self.sessions_active = Gauge(
            "gateway_sessions_active", "Live sessions (initializing or ready).", registry=r
        )
        self.sessions_ready = Gauge("gateway_sessions_ready", "Live sessions ready.", registry=r)
        self.sessions_limit = Gauge(
            "gateway_sessions_limit",
            "The session cap: above it, creations are refused.",
            registry=r,
        )
        self.sessions_created = Counter("gateway_sessions_created", "Sessions created.", registry=r)
        self.sessions_rejected = Counter(
            "gateway_sessions_rejected", "Session creations refused.", ["reason"], registry=r
        )
        self.sessions_closed = Counter(
            "gateway_sessions_closed", "Sessions ended.", ["reason"], registry=r
        )
        self.queue_depth = Gauge(
            "gateway_queue_depth", "Messages waiting in the outbound queue.", registry=r
        )
        self.queue_capacity = Gauge(
            "gateway_queue_capacity", "Size of the bounded outbound queue.", registry=r
        )
        self.messages_in_flight = Gauge(
            "gateway_messages_in_flight",
            "Accepted messages not yet delivered or failed.",
            registry=r,
        )
        self.websocket_connections = Gauge(
            "gateway_websocket_connections", "Open WebSocket event subscriptions.", registry=r
        )
        self.websocket_opened = Counter(
            "gateway_websocket_connections_opened", "WebSocket subscriptions opened.", registry=r
        )
        messages = Counter(
            "gateway_messages", "Outbound messages by state reached.", ["status"], registry=r
        )
        self.messages = {state: messages.labels(status=state) for state in MESSAGE_STATES}
        self.messages_rejected = Counter(
            "gateway_messages_rejected_by_reason",
            "Send requests refused, by reason.",
            ["reason"],
            registry=r,
        )
        self.webhook_events = Counter(
            "gateway_webhook_events",
            "Inbound webhook events by outcome.",
            ["result"],
            registry=r,
        )
        self.outbound_webhooks = Counter(
            "gateway_outbound_webhooks",
            "Acks POSTed to sessions' webhookUrl, by outcome.",
            ["result"],
            registry=r,
        )
        self.cache_entries = Gauge(
            "gateway_cache_entries",
            "Entries held by a bounded cache (webhook_ids: inbound ids kept for idempotency).",
            ["cache"],
            registry=r,
        )
        self.retained_bytes = Gauge(
            "gateway_retained_bytes",
            "Memory deliberately held: per live session, and by the leak switch.",
            ["kind"],
            registry=r,
        )
        self.http_requests = Counter(
            "gateway_http_requests",
            "HTTP requests answered, by route and status.",
            ["method", "route", "status"],
            registry=r,
        )
        self.http_latency = Histogram(
            "gateway_http_request_duration_seconds",
            "Time from request to the start of the response, by route.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.faults_injected = Counter(
            "gateway_faults_injected", "Fault switch activations.", ["kind"], registry=r
        )

    def bind_state(
        self,
        *,
        sessions_active: Callable[[], float],
        sessions_ready: Callable[[], float],
        queue_depth: Callable[[], float],
        queue_capacity: float,
        sessions_limit: float,
        webhook_ids: Callable[[], float],
        in_flight: Callable[[], float],
        session_bytes: Callable[[], float],
        leak_bytes: Callable[[], float],
    ) -> None:
        self.sessions_active.set_function(sessions_active)
        self.sessions_ready.set_function(sessions_ready)
        self.queue_depth.set_function(queue_depth)
        self.queue_capacity.set(queue_capacity)
        self.sessions_limit.set(sessions_limit)
        self.cache_entries.labels(cache="webhook_ids").set_function(webhook_ids)
        self.messages_in_flight.set_function(in_flight)
        self.retained_bytes.labels(kind="sessions").set_function(session_bytes)
        self.retained_bytes.labels(kind="leak").set_function(leak_bytes)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Counts every HTTP request by route template and status, and times it to the first byte."""

    def __init__(self, app: ASGIApp, metrics: GatewayMetrics) -> None:
        self.app = app
        self.metrics = metrics
        self._children: dict[tuple[str, str, int], tuple[object, object]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                self._record(scope, status, time.perf_counter() - started)
                status = -1  # recorded
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            if status != -1:
                # The app failed before answering (the server will answer 500 for it).
                self._record(scope, status, time.perf_counter() - started)

    def _record(self, scope: Scope, status: int, elapsed: float) -> None:
        route = scope.get("route")
        template = getattr(route, "path", None) or "unmatched"
        method = scope["method"] if scope["method"] in _METHODS else "OTHER"
        key = (method, template, status)
        children = self._children.get(key)
        if children is None:
            children = (
                self.metrics.http_requests.labels(
                    method=key[0], route=template, status=str(status)
                ),
                self.metrics.http_latency.labels(route=template),
            )
            self._children[key] = children
        counter, histogram = children
        counter.inc()  # type: ignore[attr-defined]
        histogram.observe(elapsed)  # type: ignore[attr-defined]
