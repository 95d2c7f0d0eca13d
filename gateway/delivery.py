"""The outbound pipeline: a bounded queue drained by a pool of senders over a simulated network.

Each accepted message goes queued -> sent (ack 1, "server") -> delivered (ack 2, "device"), or
ends failed (ack -1, "error") when the send fails or its session is gone before it is sent.
No accepted message disappears: at shutdown the ones still queued are failed too, so
`accepted == delivered + failed + in_flight` holds in the metrics at every moment.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.events import EventHub
    from gateway.metrics import GatewayMetrics
    from gateway.sessions import Session

ACK_ERROR, ACK_SERVER, ACK_DEVICE = -1, 1, 2
ACK_NAMES = {ACK_ERROR: "error", ACK_SERVER: "server", ACK_DEVICE: "device"}


@dataclass(slots=True, eq=False)
class OutboundMessage:
    id: str
    session: Session
    to: str
    body: str
    device_ack: asyncio.TimerHandle | None = None


class DeliveryPipeline:
    def __init__(
        self,
        *,
        queue_size: int,
        senders: int,
        send_latency_ms: float,
        device_latency_ms: float,
        jitter_ms: float,
        failure_rate: float,
        hub: EventHub,
        metrics: GatewayMetrics,
        rng: random.Random,
    ) -> None:
        self.queue: asyncio.Queue[OutboundMessage] = asyncio.Queue(maxsize=queue_size)
        self.queue_size = queue_size
        self.sender_count = senders
        self.send_latency_s = send_latency_ms / 1000
        self.device_latency_s = device_latency_ms / 1000
        self.jitter_s = jitter_ms / 1000
        self.failure_rate = failure_rate
        self.hub = hub
        self.metrics = metrics
        self.rng = rng
        self.in_flight = 0
        self._prefix = "3EB0" + secrets.token_hex(4).upper()
        self._ids = itertools.count(1)
        self._senders: list[asyncio.Task[None]] = []
        self._awaiting_device: set[OutboundMessage] = set()

    def new_message_id(self) -> str:
        return f"{self._prefix}{next(self._ids):012X}"

    def submit(self, message: OutboundMessage) -> bool:
        """Queue a message; False when the queue is full (the caller answers 503)."""
        try:
            self.queue.put_nowait(message)
        except asyncio.QueueFull:
            return False
        self.in_flight += 1
        self.metrics.messages["accepted"].inc()
        return True

    def start(self) -> None:
        self._senders = [asyncio.create_task(self._send_loop()) for _ in range(self.sender_count)]

    async def stop(self) -> None:
        for task in self._senders:
            task.cancel()
        await asyncio.gather(*self._senders, return_exceptions=True)
        for message in list(self._awaiting_device):
            assert message.device_ack is not None
            message.device_ack.cancel()
            self._awaiting_device.discard(message)
            self._finish(message, ACK_ERROR)
        while not self.queue.empty():
            self._finish(self.queue.get_nowait(), ACK_ERROR)

    def _latency(self, base_s: float) -> float:
        if self.jitter_s <= 0:
            return base_s
        return max(0.0, base_s + self.rng.uniform(-self.jitter_s, self.jitter_s))

    async def _send_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            message = await self.queue.get()
            try:
                await asyncio.sleep(self._latency(self.send_latency_s))
            except asyncio.CancelledError:
                self._finish(message, ACK_ERROR)
                raise
            if message.session.closed or self.rng.random() < self.failure_rate:
                self._finish(message, ACK_ERROR)
                continue
            self.metrics.messages["sent"].inc()
            self._ack(message, ACK_SERVER)
            message.device_ack = loop.call_later(
                self._latency(self.device_latency_s), self._deliver, message
            )
            self._awaiting_device.add(message)

    def _deliver(self, message: OutboundMessage) -> None:
        self._awaiting_device.discard(message)
        self._finish(message, ACK_DEVICE)

    def _finish(self, message: OutboundMessage, ack: int) -> None:
        self.in_flight -= 1
        self.metrics.messages["delivered" if ack == ACK_DEVICE else "failed"].inc()
        self._ack(message, ack)

    def _ack(self, message: OutboundMessage, ack: int) -> None:
        self.hub.publish(
            message.session,
            {
                "event": "message_ack",
                "messageId": message.id,
                "ack": ack,
                "ackName": ACK_NAMES[ack],
                "timestamp": int(time.time() * 1000),
            },
        )
