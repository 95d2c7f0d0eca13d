"""A message sender's ack channels, as its profile lists them, each with its own tracker.

The first channel is the delivery measurement (`WS message delivered`, counters
`messages_delivered`, ...); any further one is measured beside it under its own name
(`WS message delivered (webhook)`, counters suffixed `_webhook`), so that two channels of one
gateway can be held against each other on the same messages.

A webhook channel's URL goes to the gateway in the create-session request (`{webhook_url}`);
for a session the user named, which the suite does not create, a `set_webhook` request
registers it, and without one that channel is left out (`acks_untracked`).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from users.ack_channels import SocketIOChannel, WebhookChannel, WebSocketChannel
from users.delivery import DeliveryTracker
from users.profile import AckChannelSpec
from users.templates import fill

if TYPE_CHECKING:
    from users.base import ScenarioUser

DELIVERED = "message delivered"


class AckChannels:
    def __init__(self, user: ScenarioUser, timeout_s: float) -> None:
        self.user = user
        # The profile's channels with their trackers; `open` keeps the ones that connected.
        self.planned: list[tuple[AckChannelSpec, DeliveryTracker]] = []
        self.trackers: list[DeliveryTracker] = []
        self.channels: list[Any] = []
        self.webhook: WebhookChannel | None = None
        for i, spec in enumerate(user.profile.ack_channels):
            name = DELIVERED if i == 0 else f"{DELIVERED} ({spec.kind})"
            count = user.count if i == 0 else _suffixed(user, spec.kind)
            tracker = DeliveryTracker(user.report, count, timeout_s, name=name)
            self.planned.append((spec, tracker))
            if spec.kind == "webhook":
                receiver = getattr(user.environment, "webhook_receiver", None)
                if receiver is not None:
                    self.webhook = WebhookChannel(receiver, spec.read, tracker)
                    self.webhook.open()

    def webhook_url(self) -> str:
        return self.webhook.url if self.webhook is not None else self.user.unrouted_webhook_url()

    def open(self, values: dict[str, Any], headers: dict[str, str], registered: bool) -> None:
        """Connect the channels of a ready session; `registered`: the session was created with
        the webhook's URL. Only the trackers of channels that work measure anything."""
        for spec, tracker in self.planned:
            if spec.kind == "webhook":
                if self.webhook is not None and (registered or self._register(values)):
                    self.trackers.append(tracker)
                else:
                    self.user.count("acks_untracked")
                continue
            channel = self._channel(spec, tracker, values, headers)
            if channel.open():
                self.channels.append(channel)
                self.trackers.append(tracker)

    def _channel(
        self,
        spec: AckChannelSpec,
        tracker: DeliveryTracker,
        values: dict[str, Any],
        headers: dict[str, str],
    ) -> WebSocketChannel | SocketIOChannel:
        host, model, report, count = (
            self.user.host.rstrip("/"),
            spec.model,
            self.user.report,
            self.user.count,
        )
        read = spec.read.for_session(str(values["session_id"]))
        if spec.kind == "websocket":
            url = host.replace("http", "ws", 1) + fill(model.url, values)
            return WebSocketChannel(url, headers, read, tracker, report, count)
        events = sorted(spec.read.events) or ["message"]
        namespace, query = fill(model.namespace, values), fill(model.query, values)
        return SocketIOChannel(
            host, namespace, events, headers, query, read, tracker, report, count
        )

    def _register(self, values: dict[str, Any]) -> bool:
        if "set_webhook" not in self.user.profile.requests:
            return False
        spec = self.user.profile.requests["set_webhook"]
        with self.user.call("set_webhook", values, self.user.headers) as response:
            if response.status_code in spec.success:
                response.success()
                return True
            response.failure(self.user.failure_reason(response))
            return False

    def sent(self, message_id: str) -> None:
        for tracker in self.trackers:
            tracker.sent(message_id)

    def expire(self) -> None:
        for tracker in self.trackers:
            tracker.expire()

    def close(self, wait_s: float) -> None:
        """Wait (at most `wait_s`) for the acks still due, count the rest as undelivered, and
        close every channel."""
        deadline = time.monotonic() + wait_s
        for tracker in self.trackers:
            tracker.wait(max(0.0, deadline - time.monotonic()))
            tracker.expire(force=True)
        for channel in self.channels:
            channel.close()
        if self.webhook is not None:
            self.webhook.close()
        self.channels = []


def _suffixed(user: ScenarioUser, suffix: str) -> Any:
    return lambda name, value=1: user.count(f"{name}_{suffix}", value)
