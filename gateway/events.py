"""Live events of a session, fanned out to its WebSocket subscribers and its webhookUrl.

Each event is serialised once and put on every subscriber's bounded queue; a subscriber that
falls `SUBSCRIBER_BACKLOG` events behind is disconnected (close code 1013) rather than letting
the gateway's memory grow without bound. Outbound webhook POSTs go through a bounded queue and a
few workers, with a bounded number of attempts each.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from gateway.metrics import GatewayMetrics
    from gateway.sessions import Session

SUBSCRIBER_BACKLOG = 10_000
WEBHOOK_BACKLOG = 10_000
WEBHOOK_WORKERS = 8
WEBHOOK_TIMEOUT_S = 5.0

log = logging.getLogger("gateway.events")


class Subscriber:
    """One WebSocket connection's mailbox. `None` in the queue means: close now."""

    __slots__ = ("close_code", "queue")

    def __init__(self) -> None:
        self.queue: asyncio.Queue[str | None] = asyncio.Queue(maxsize=SUBSCRIBER_BACKLOG)
        self.close_code = 1000

    def offer(self, text: str) -> None:
        try:
            self.queue.put_nowait(text)
        except asyncio.QueueFull:
            self.close(1013)

    def close(self, code: int) -> None:
        self.close_code = code
        if self.queue.full():
            # Make room for the close signal: the backlog of a lagging subscriber is lost anyway.
            with contextlib.suppress(asyncio.QueueEmpty):
                self.queue.get_nowait()
        self.queue.put_nowait(None)


class EventHub:
    """Publishes a session's events to its subscribers and, if it has one, its webhookUrl."""

    def __init__(self, metrics: GatewayMetrics, webhook_attempts: int) -> None:
        self.metrics = metrics
        self.webhook_attempts = max(1, webhook_attempts)
        self._outbound: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue(maxsize=WEBHOOK_BACKLOG)
        self._workers: list[asyncio.Task[None]] = []
        self._client: httpx.AsyncClient | None = None

    def subscribe(self, session: Session) -> Subscriber:
        subscriber = Subscriber()
        session.subscribers.add(subscriber)
        self.metrics.websocket_connections.inc()
        self.metrics.websocket_opened.inc()
        return subscriber

    def unsubscribe(self, session: Session, subscriber: Subscriber) -> None:
        if subscriber in session.subscribers:
            session.subscribers.discard(subscriber)
            self.metrics.websocket_connections.dec()

    def publish(self, session: Session, event: dict[str, Any]) -> None:
        if not session.subscribers and not session.webhook_url:
            return
        text = json.dumps(event, separators=(",", ":"))
        for subscriber in session.subscribers:
            subscriber.offer(text)
        if session.webhook_url:
            try:
                self._outbound.put_nowait((session.webhook_url, text.encode()))
            except asyncio.QueueFull:
                self.metrics.outbound_webhooks.labels(result="dropped").inc()

    def close_session(self, session: Session) -> None:
        for subscriber in list(session.subscribers):
            subscriber.close(1000)

    async def start(self) -> None:
        self._client = httpx.AsyncClient(timeout=WEBHOOK_TIMEOUT_S)
        self._workers = [asyncio.create_task(self._post_webhooks()) for _ in range(WEBHOOK_WORKERS)]

    async def stop(self) -> None:
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()

    async def _post_webhooks(self) -> None:
        assert self._client is not None
        while True:
            url, body = await self._outbound.get()
            result = "failed"
            for attempt in range(self.webhook_attempts):
                try:
                    response = await self._client.post(
                        url, content=body, headers={"Content-Type": "application/json"}
                    )
                except Exception:  # a worker must survive any one bad delivery
                    pass
                else:
                    if response.status_code < 500:
                        result = "ok" if response.status_code < 400 else "refused"
                        break
                await asyncio.sleep(0.1 * 2**attempt)
            self.metrics.outbound_webhooks.labels(result=result).inc()
