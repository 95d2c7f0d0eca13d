"""The ack channels against real servers on loopback, under gevent's patching as in Locust.

All the tests here run in one process that Locust's import patched (the `gevent` marker,
tests/users/conftest.py). The plain WebSocket server is the `websockets` package's, in that
process; the socket.io server is python-socketio's on uvicorn, in a process of its own
(tests/users/socketio_gateway.py), as a gateway is; the webhook POSTs come from httpx.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import gevent
import httpx
import pytest
import socketio
from websockets.sync.server import ServerConnection, serve

from users.ack_channels import (
    AckChannel,
    SocketIOChannel,
    WebhookChannel,
    WebhookReceiver,
    WebSocketChannel,
)
from users.delivery import DeliveryTracker

pytestmark = pytest.mark.gevent

ROOT = Path(__file__).resolve().parents[2]

WAIT_S = 10  # an upper bound only: each wait ends as soon as what it waits for is there


class Events:
    """What the channels and trackers report and count."""

    def __init__(self) -> None:
        self.reports: list[tuple[str, Exception | None]] = []
        self.counts: Counter[str] = Counter()

    def report(self, name: str, started: float, exception: Exception | None) -> None:
        self.reports.append((name, exception))

    def count(self, name: str, value: float = 1) -> None:
        self.counts[name] += value

    def tracker(self) -> DeliveryTracker:
        return DeliveryTracker(self.report, self.count, timeout_s=30)


def read_ack(event: dict[str, Any]) -> tuple[str, str] | None:
    """A reader as a profile would give one: {"event": "ack", "id", "ack"}."""
    if event.get("event") != "ack":
        return None
    return event["id"], event["ack"]


def ack(message_id: str, outcome: str) -> dict[str, str]:
    return {"event": "ack", "id": message_id, "ack": outcome}


def until(condition: Callable[[], bool]) -> bool:
    """Sleep (letting the channel's greenlets run) until `condition()`, for at most WAIT_S."""
    with gevent.Timeout(WAIT_S, False):
        while not condition():
            gevent.sleep(0.01)
    return condition()


# --- plain WebSocket -----------------------------------------------------------------------------


@contextlib.contextmanager
def websocket_server(
    handler: Callable[[ServerConnection], None],
) -> Iterator[tuple[str, list[ServerConnection]]]:
    """A `websockets` server on a free loopback port that runs `handler` for each connection;
    yields its URL and the connections it accepted."""
    connections: list[ServerConnection] = []

    def handle(connection: ServerConnection) -> None:
        connections.append(connection)
        handler(connection)

    with serve(handle, "127.0.0.1", 0) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)  # a greenlet here
        thread.start()
        try:
            yield f"ws://127.0.0.1:{server.socket.getsockname()[1]}", connections
        finally:
            server.shutdown()
            thread.join(WAIT_S)


def push_and_wait(frames: list[str | bytes]) -> Callable[[ServerConnection], None]:
    """A handler that sends `frames`, then reads until the client closes."""

    def handler(connection: ServerConnection) -> None:
        for frame in frames:
            connection.send(frame)
        for _ in connection:
            pass

    return handler


def test_websocket_frames_reach_the_tracker() -> None:
    events = Events()
    tracker = events.tracker()
    for message_id in ("m1", "m2", "m3"):
        tracker.sent(message_id)
    frames: list[str | bytes] = [
        "not json",
        "[1, 2]",
        json.dumps({"event": "session.status", "status": "WORKING"}),
        json.dumps(ack("m1", "server")),
        json.dumps(ack("m1", "device")),
        json.dumps(ack("m2", "failed")),
        json.dumps(ack("m3", "read")).encode(),  # a binary frame
    ]
    with websocket_server(push_and_wait(frames)) as (url, connections):
        channel = WebSocketChannel(
            f"{url}/ws?session=s1", {"X-Api-Key": "key-1"}, read_ack, tracker,
            events.report, events.count,
        )  # fmt: skip
        assert isinstance(channel, AckChannel)
        assert channel.open() is True
        assert tracker.wait(WAIT_S) is True
        channel.close()
        channel.close()  # again: nothing more
    assert connections[0].request.path == "/ws?session=s1"
    assert connections[0].request.headers["X-Api-Key"] == "key-1"
    assert [name for name, _ in events.reports] == ["WS connect", *["message delivered"] * 3]
    assert [error for _, error in events.reports].count(None) == 3  # connect, m1, m3
    assert events.counts == {
        "websocket_connected": 1, "websocket_open": 0, "messages_server_acked": 1,
        "messages_delivered": 2, "messages_failed": 1,
    }  # fmt: skip


def test_a_websocket_the_gateway_closes_leaves_the_gauge() -> None:
    events = Events()
    tracker = events.tracker()
    tracker.sent("m1")
    with websocket_server(lambda connection: connection.send(json.dumps(ack("m1", "device")))) as (
        url,
        _,
    ):
        channel = WebSocketChannel(url, {}, read_ack, tracker, events.report, events.count)
        assert channel.open() is True
        assert until(lambda: events.counts["websocket_open"] == 0)  # the handler returned
        channel.close()
    assert events.counts["websocket_open"] == 0 and events.counts["messages_delivered"] == 1


def test_a_websocket_that_cannot_connect_is_a_failed_connect() -> None:
    events = Events()
    with websocket_server(push_and_wait([])) as (url, _):
        pass  # stopped: nothing listens on its port now
    channel = WebSocketChannel(url, {}, read_ack, events.tracker(), events.report, events.count)
    assert channel.open() is False
    [(name, error)] = events.reports
    assert name == "WS connect" and isinstance(error, OSError)
    assert events.counts == {"websocket_failed": 1}
    channel.close()
    assert events.counts == {"websocket_failed": 1}


# --- socket.io -----------------------------------------------------------------------------------


class SocketIOGateway:
    """tests/users/socketio_gateway.py in a process of its own, as a gateway would be: it
    sends `script` to a client that connects to `namespace` with `key`, refuses other keys."""

    def __init__(self, namespace: str, key: str, script: list[tuple[str, Any]]) -> None:
        self.namespace = namespace
        config = json.dumps({"namespace": namespace, "key": key, "script": script})
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.users.socketio_gateway", config],
            cwd=ROOT, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip

    def __enter__(self) -> SocketIOGateway:
        assert self.process.stdout is not None
        with gevent.Timeout(WAIT_S):
            self.url = f"http://127.0.0.1:{int(self.process.stdout.readline())}"
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.process.terminate()
        self.process.wait(WAIT_S)

    def seen(self) -> list[dict[str, Any]]:
        """The connects it had: {"query": {name: [values]}, "headers": {name: value}}."""
        return httpx.get(self.url + "/seen", timeout=WAIT_S).json()

    def disconnect_all(self) -> None:
        httpx.post(self.url + "/disconnect", timeout=WAIT_S).raise_for_status()


def socketio_channel(
    gateway: SocketIOGateway, key: str, events: Events, tracker: DeliveryTracker
) -> SocketIOChannel:
    return SocketIOChannel(
        gateway.url, gateway.namespace, ["messages.update", "onack"], {"apikey": key},
        {"apikey": key}, read_ack, tracker, events.report, events.count,
    )  # fmt: skip


def test_socketio_events_on_the_namespace_reach_the_tracker() -> None:
    events = Events()
    tracker = events.tracker()
    for message_id in ("m1", "m2", "m3"):
        tracker.sent(message_id)
    script = [
        ("connection.update", {"state": "open"}),  # an event it does not listen to
        ("messages.update", "not an object"),
        ("messages.update", {"event": "messages.update", "data": {}}),
        ("messages.update", ack("m1", "device")),
        ("onack", ack("m2", "failed")),
        ("messages.update", ack("m3", "read")),
    ]
    with SocketIOGateway("/instance-1", "key-1", script) as gateway:
        channel = socketio_channel(gateway, "key-1", events, tracker)
        assert isinstance(channel, AckChannel)
        assert channel.open() is True
        assert tracker.wait(WAIT_S) is True
        channel.close()
        channel.close()
        [connect] = gateway.seen()
    assert connect["headers"]["apikey"] == "key-1"
    assert connect["query"]["apikey"] == ["key-1"]
    assert connect["query"]["transport"] == ["websocket"]  # no long-polling first
    assert [name for name, _ in events.reports] == ["socket.io connect", *["message delivered"] * 3]
    assert events.counts == {
        "websocket_connected": 1, "websocket_open": 0, "messages_delivered": 2,
        "messages_failed": 1,
    }  # fmt: skip


def test_a_socketio_namespace_that_refuses_is_a_failed_connect() -> None:
    events = Events()
    with SocketIOGateway("/instance-1", "key-1", []) as gateway:
        channel = socketio_channel(gateway, "wrong-key", events, events.tracker())
        assert channel.open() is False
        channel.close()
    [(name, error)] = events.reports
    assert name == "socket.io connect" and isinstance(error, socketio.exceptions.ConnectionError)
    assert events.counts == {"websocket_failed": 1}


def test_a_socketio_server_that_goes_away_leaves_the_gauge() -> None:
    events = Events()
    with SocketIOGateway("/instance-1", "key-1", []) as gateway:
        channel = socketio_channel(gateway, "key-1", events, events.tracker())
        assert channel.open() is True
        assert events.counts["websocket_open"] == 1
        gateway.disconnect_all()
        assert until(lambda: events.counts["websocket_open"] == 0)
        channel.close()
    assert events.counts == {"websocket_connected": 1, "websocket_open": 0}


# --- webhooks ------------------------------------------------------------------------------------


def test_webhook_posts_reach_their_own_subscriber_only() -> None:
    events, first, second = Events(), Events(), Events()
    with WebhookReceiver(count=events.count) as receiver, httpx.Client(timeout=WAIT_S) as http:
        trackers = [first.tracker(), second.tracker()]
        urls = [receiver.subscribe(read_ack, tracker) for tracker in trackers]
        assert urls[0] != urls[1] and all(url.startswith(receiver.url + "/acks/") for url in urls)
        for tracker in trackers:
            tracker.sent("m1")
        # Evolution with byEvents appends the event's name to the URL.
        answer = http.post(urls[1] + "/messages-update", json=ack("m1", "failed"))
        assert answer.status_code == 200
        assert first.counts == {} and second.counts == {"messages_failed": 1}
        assert http.post(urls[0], json=ack("m1", "read")).status_code == 200
        assert first.counts == {"messages_delivered": 1}
    assert events.counts == {}


def test_webhook_posts_that_are_no_ack_are_answered_and_counted() -> None:
    events = Events()
    with WebhookReceiver(count=events.count) as receiver, httpx.Client(timeout=WAIT_S) as http:
        url = receiver.subscribe(read_ack, events.tracker())
        assert http.post(url, json={"event": "session.status"}).status_code == 200
        assert http.post(url, content=b"not json").status_code == 200
        assert http.post(url, json=[ack("m1", "device")]).status_code == 200  # not an object
        assert http.get(url).status_code == 200  # a gateway checking the URL
    assert events.counts == {"webhook_acks_unmatched": 3}


def test_webhook_requests_to_no_subscriber_are_404() -> None:
    events = Events()
    with WebhookReceiver(count=events.count) as receiver, httpx.Client(timeout=WAIT_S) as http:
        url = receiver.subscribe(read_ack, events.tracker())
        assert (
            http.post(receiver.url + "/acks/guessed", json=ack("m1", "device")).status_code == 404
        )
        assert http.get(receiver.url + "/").status_code == 404
        receiver.unsubscribe(url)
        assert http.post(url, json=ack("m1", "device")).status_code == 404
    assert events.counts == {"webhook_acks_unmatched": 2}  # the two POSTs


def test_a_webhook_channel_subscribes_while_open() -> None:
    events = Events()
    tracker = events.tracker()
    with WebhookReceiver() as receiver, httpx.Client(timeout=WAIT_S) as http:
        channel = WebhookChannel(receiver, read_ack, tracker)
        assert isinstance(channel, AckChannel) and channel.url is None
        assert channel.open() is True and channel.url is not None
        url = channel.url
        tracker.sent("m1")
        assert http.post(url, json=ack("m1", "device")).status_code == 200
        channel.close()
        channel.close()
        assert channel.url is None
        assert http.post(url, json=ack("m2", "device")).status_code == 404
    assert events.counts == {"messages_delivered": 1} and events.reports == [
        ("message delivered", None)
    ]


def test_a_webhook_receiver_behind_a_public_url() -> None:
    """The gateway calls `public_url` (a proxy that keeps the path forwards it here)."""
    events = Events()
    tracker = events.tracker()
    tracker.sent("m1")
    gateway_side = "http://gateway-side.example:9000"
    public = gateway_side + "/hooks"
    with WebhookReceiver(public_url=public + "/") as receiver, httpx.Client(timeout=WAIT_S) as http:
        assert receiver.url == public
        url = receiver.subscribe(read_ack, tracker)
        assert url.startswith(public + "/acks/")
        forwarded = f"http://127.0.0.1:{receiver.port}" + url.removeprefix(gateway_side)
        assert http.post(forwarded, json=ack("m1", "device")).status_code == 200
    assert events.counts == {"messages_delivered": 1}


def test_a_webhook_receiver_stays_on_loopback_unless_told() -> None:
    for listen in ("0.0.0.0:0", ":8090", "192.0.2.1:8090", "gateway.example:8090"):
        with pytest.raises(ValueError, match="not a loopback address"):
            WebhookReceiver(listen)
    for listen in ("127.0.0.1", "127.0.0.1:port", "127.0.0.1:70000"):
        with pytest.raises(ValueError, match="HOST:PORT"):
            WebhookReceiver(listen)
    assert WebhookReceiver("0.0.0.0:8090", allow_non_loopback=True).port == 8090  # not started
    assert WebhookReceiver("[::1]:0").host == "::1"
    with WebhookReceiver("localhost:0") as receiver:
        assert receiver.port > 0 and receiver.url == f"http://localhost:{receiver.port}"
