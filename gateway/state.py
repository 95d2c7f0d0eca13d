"""The state of one running gateway: sessions, delivery pipeline, event hub, metrics, faults.

`create_app` builds one `Gateway` per app, so every app (and every test) is independent.
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
import re
import time
from collections import OrderedDict
from urllib.parse import urlsplit

from gateway.config import GatewayConfig
from gateway.delivery import DeliveryPipeline
from gateway.errors import ApiError
from gateway.events import EventHub
from gateway.faults import Leak, stall_loop, stall_on_signal
from gateway.metrics import GatewayMetrics
from gateway.sessions import Session, SessionStore


class Gateway:
    """The state of one running gateway."""

    def __init__(self, config: GatewayConfig, rng: random.Random | None = None) -> None:
        self.config = config
        self.rng = rng or random.Random()
        self.metrics = GatewayMetrics()
        self.sessions = SessionStore(
            max_sessions=config.max_sessions,
            pairing_delay_s=config.pairing_delay_s,
            idle_expiry_s=config.session_idle_expiry_s,
            memory_kib=config.session_memory_kib,
            rate_limit=config.rate_limit,
            require_api_key=config.require_api_key,
        )
        self.hub = EventHub(self.metrics, config.webhook_attempts)
        self.delivery = DeliveryPipeline(
            queue_size=config.queue_size,
            senders=config.senders,
            send_latency_ms=config.delivery_latency_ms,
            device_latency_ms=config.device_latency_ms,
            jitter_ms=config.delivery_jitter_ms,
            failure_rate=config.delivery_failure_rate,
            hub=self.hub,
            metrics=self.metrics,
            rng=self.rng,
        )
        self.leak = Leak(config.leak_kib_per_message)
        self.seen_inbound: OrderedDict[str, None] = OrderedDict()
        self.started_at = time.monotonic()
        self._background: list[asyncio.Task[None]] = []
        self.metrics.bind_state(
            sessions_active=lambda: len(self.sessions),
            sessions_ready=lambda: self.sessions.ready_count(time.monotonic()),
            queue_depth=self.delivery.queue.qsize,
            queue_capacity=config.queue_size,
            sessions_limit=config.max_sessions,
            webhook_ids=lambda: len(self.seen_inbound),
            in_flight=lambda: self.delivery.in_flight,
            session_bytes=self.sessions.retained_bytes,
            leak_bytes=lambda: self.leak.total_bytes,
        )

    async def start(self) -> None:
        await self.hub.start()
        self.delivery.start()
        self._background.append(asyncio.create_task(self._expire_sessions()))
        if self.config.stall_ms > 0 and self.config.stall_on_signal:
            stall_on_signal(self.config.stall_ms, self.metrics)
        elif self.config.stall_ms > 0:
            self._background.append(
                asyncio.create_task(
                    stall_loop(self.config.stall_ms, self.config.stall_every_s, self.metrics)
                )
            )

    async def stop(self) -> None:
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        await self.delivery.stop()
        await self.hub.stop()

    def close_session(self, session: Session, reason: str) -> None:
        self.sessions.remove(session)
        self.hub.close_session(session)
        self.metrics.sessions_closed.labels(reason=reason).inc()

    async def _expire_sessions(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            for session in self.sessions.expire(time.monotonic()):
                self.hub.close_session(session)
                self.metrics.sessions_closed.labels(reason="expired").inc()

    def check_webhook_url(self, url: str | None) -> None:
        if url is None:
            return
        not_a_url = ApiError(400, "invalid_webhook_url", "webhookUrl must be an http(s) URL.")
        try:
            # Both raise ValueError on a malformed URL: "http://[::1" or "http://[abc]/" (bad
            # brackets), a port that is not a number from 0 to 65535.
            parts = urlsplit(url)
            hostname, _port = parts.hostname, parts.port
        except ValueError:
            raise not_a_url from None
        # Control characters pass `urlsplit` but make httpx refuse the URL when acks are posted.
        if parts.scheme not in ("http", "https") or not hostname or _CONTROL.search(url):
            raise not_a_url
        if not self.config.allow_remote_webhooks and not is_loopback_host(hostname):
            raise ApiError(
                400,
                "webhook_url_not_allowed",
                "webhookUrl must be on loopback unless the gateway runs with "
                "--allow-remote-webhooks.",
            )

    def remember_inbound(self, message_id: str) -> bool:
        """True the first time an inbound message id is seen (bounded memory of ids)."""
        if message_id in self.seen_inbound:
            return False
        self.seen_inbound[message_id] = None
        if len(self.seen_inbound) > self.config.dedup_capacity:
            self.seen_inbound.popitem(last=False)
        return True


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def is_loopback_host(host: str) -> bool:
    """True for "localhost" and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
