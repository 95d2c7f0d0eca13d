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
        self.trackers: list[DeliveryTracker] = []
        self.specs: list[AckChannelSpec] = []
        self.channels: list[Any] = []
        self.webhook: WebhookChannel | None = None
        for i, spec in enumerate(user.profile.ack_channels):
            name = DELIVERED if i == 0 else f"{DELIVERED} ({spec.kind})"
            count = user.count if i == 0 else _suffixed(user, spec.kind)
            self.specs.append(spec)
            self.trackers.append(DeliveryTracker(self.report, count, timeout_s, name=name))
            if spec.kind == "webhook":
                receiver = getattr(user.environment, "webhook_receiver", None)
                if receiver is not None:
                    self.webhook = WebhookChannel(receiver, spec.read, self.trackers[-1])
                    self.webhook.open()

    def webhook_url(self) -> str:
        return self.webhook.url if self.webhook is not None else self.user.unrouted_webhook_url()

    def open(self, values: dict[str, Any], headers: dict[str, str], registered: bool) -> None:
        """Connect the channels of a ready session; `registered`: the session was created with
        the webhook's URL."""
        host = self.user.host.rstrip("/")
        for spec, tracker in list(zip(self.specs, self.trackers, strict=True)):
            model = spec.model
            read = spec.read.for_session(str(values["session_id"]))
            if spec.kind == "websocket":
                url = host.replace("http", "ws", 1) + fill(model.url, values)
                channel = WebSocketChannel(
                    url, headers, read, tracker, self.report, self.user.count
                )
            elif spec.kind == "socketio":
                channel = SocketIOChannel(
                    host,
                    fill(model.namespace, values),
                    sorted(spec.read.events) or ["message"],
                    headers,
                    fill(model.query, values),
                    read,
                    tracker,
                    self.report,
                    self.user.count,
                )
            else:
                if self.webhook is None or (not registered and not self._register(values)):
                    self.user.count("acks_untracked")
                    self.trackers.remove(tracker)
                continue
            if channel.open():
                self.channels.append(channel)
            else:
                self.trackers.remove(tracker)

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

    def report(self, name: str, started: float, exception: Exception | None) -> None:
        self.user.environment.events.request.fire(
            request_type="WS",
            name=name,
            response_time=(time.perf_counter() - started) * 1000,
            response_length=0,
            exception=exception,
            context={},
        )


def _suffixed(user: ScenarioUser, suffix: str) -> Any:
    return lambda name, value=1: user.count(f"{name}_{suffix}", value)
