"""Ack channels: how a gateway's delivery acks reach a sender's `DeliveryTracker`.

Gateways tell of acks by webhook or over a socket (`../shared/gateways.md`); the sockets:

- `WebSocketChannel`: a plain WebSocket of JSON frames (WAHA, the plan's gateway);
- `SocketIOChannel`: socket.io events on a namespace (Evolution API, wppconnect-server).

Each channel hands every decoded JSON object it gets to `read`, the target profile's reader:
`read(payload)` returns `(message_id, outcome)` for an ack, with an outcome of
`users.delivery.OUTCOMES`, or None for anything else; the channel then tells the tracker. An event
on which the reader raises is not an ack either: the channel goes on reading.

The socket channels report their connect as a request ("WS connect", "socket.io connect"),
timed, with its error when it fails, and count `websocket_connected` or `websocket_failed`; the
gauge `websocket_open` goes up by one on connect and down by one when the connection ends,
closed by the sender or by the gateway.
Each channel is opened once and closed once (`close()` may be called again, and before `open()`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
import urllib.parse
from collections.abc import Callable, Iterable
from typing import Any, ClassVar, Protocol, runtime_checkable

import gevent
import socketio
import websocket

from users.delivery import OUTCOMES, DeliveryTracker, Report

logger = logging.getLogger(__name__)

Read = Callable[[Any], tuple[str, str] | None]
"""The profile's ack reader: a decoded JSON payload in, `(message_id, outcome)` or None out."""


class Count(Protocol):
    """`count(name, value=1)`: a business counter or, with a negative value, a gauge
    (`ScenarioUser.count`)."""

    def __call__(self, name: str, value: float = 1) -> None: ...


@runtime_checkable
class AckChannel(Protocol):
    """Where a sender's acks come from."""

    def open(self) -> bool:
        """Connect or subscribe; False when that failed (reported and counted)."""
        ...

    def close(self) -> None:
        """Stop delivering acks; idempotent."""
        ...


def _deliver(read: Read, tracker: DeliveryTracker, payload: Any) -> bool:
    """Tell the tracker of the ack in `payload`, if `read` finds one; True if it did."""
    if not isinstance(payload, dict):
        return False
    try:
        ack = read(payload)
        if ack is None:
            return False
        message_id, outcome = ack
    except Exception:
        # A reader written for the ack's envelope meets some other event of the gateway's:
        # that event is not an ack, and the channel must go on reading.
        logger.debug("ack reader failed on %r", payload, exc_info=True)
        return False
    if outcome not in OUTCOMES:
        return False
    tracker.acked(str(message_id), outcome)
    return True


class _SocketChannel:
    """What both socket channels share: a timed, counted connect and the `websocket_open` gauge,
    which goes down once, whoever ends the connection."""

    connect_name: ClassVar[str]

    def __init__(self, read: Read, tracker: DeliveryTracker, report: Report, count: Count) -> None:
        self._read = read
        self._tracker = tracker
        self._report = report
        self._count = count
        self._up = False  # counted in the gauge
        self._over = False  # ended, possibly before `open` counted it up

    def open(self) -> bool:
        started = time.perf_counter()
        try:
            self._connect()
        except Exception as exc:
            self._report(self.connect_name, started, exc)
            self._count("websocket_failed")
            self.close()
            return False
        self._report(self.connect_name, started, None)
        self._count("websocket_connected")
        self._count("websocket_open", 1)
        self._up = True
        if self._over:  # the gateway hung up before the connect was counted
            self._ended()
        return True

    def _connect(self) -> None:
        raise NotImplementedError

    def _ended(self) -> None:
        self._over = True
        if self._up:
            self._up = False
            self._count("websocket_open", -1)

    def _on_payload(self, payload: Any) -> None:
        _deliver(self._read, self._tracker, payload)


class WebSocketChannel(_SocketChannel):
    """A plain WebSocket (websocket-client) whose text or binary frames are JSON events.

    `headers` go into the handshake (the API key). A reader greenlet reads frames until the
    connection ends; frames that are not JSON objects are skipped.
    """

    connect_name = "WS connect"

    def __init__(
        self,
        url: str,
        headers: dict[str, str],
        read: Read,
        tracker: DeliveryTracker,
        report: Report,
        count: Count,
        *,
        timeout_s: float = 10.0,
    ) -> None:
        super().__init__(read, tracker, report, count)
        self.url = url
        self.headers = dict(headers)
        self.timeout_s = timeout_s
        self._socket: websocket.WebSocket | None = None
        self._reader: gevent.Greenlet | None = None

    def _connect(self) -> None:
        header = [f"{name}: {value}" for name, value in self.headers.items()]
        self._socket = websocket.create_connection(self.url, header=header, timeout=self.timeout_s)
        # The handshake is bounded, the wait for a frame is not: a quiet session sends nothing
        # for minutes, and `close` ends the wait.
        self._socket.settimeout(None)
        self._reader = gevent.spawn(self._read_frames, self._socket)

    def _read_frames(self, socket: websocket.WebSocket) -> None:
        try:
            while True:
                try:
                    opcode, data = socket.recv_data()  # answers pings on the way
                except Exception:
                    break
                if opcode == websocket.ABNF.OPCODE_CLOSE:  # answered already
                    break
                try:
                    payload = json.loads(data)
                except ValueError:
                    continue
                self._on_payload(payload)
            # The gateway ended it: the TCP connection too, which the gateway waits for and
            # websocket-client's `close()` no longer closes once the WebSocket is closed.
            socket.shutdown()
        finally:
            self._ended()

    def close(self) -> None:
        reader, self._reader = self._reader, None
        socket, self._socket = self._socket, None
        # The reader first: the closing handshake reads the socket too, and one gevent socket
        # takes one reader at a time.
        if reader is not None and reader is not gevent.getcurrent():
            reader.kill(block=True, timeout=1)
        if socket is not None:
            with contextlib.suppress(Exception):
                socket.close(timeout=1)
            socket.shutdown()
        self._ended()


class SocketIOChannel(_SocketChannel):
    """A socket.io connection (python-socketio's synchronous client, which runs on gevent's
    patched threads and sockets) to one `namespace`, such as Evolution API's "/<instance>".

    Every event named in `events` feeds the reader each JSON object it carries. `headers` go
    into the handshake, `query` into the connect URL (Evolution takes its `apikey` either way).
    The transport is WebSocket only (no long-polling first, which would be a stream of HTTP
    requests of its own) and there is no reconnection: a dropped connection ends the channel,
    and the messages it would have acked become undelivered, which is what happened. Only the
    scheme, host and port of `url` count: the path is `socketio_path`.
    """

    connect_name = "socket.io connect"

    def __init__(
        self,
        url: str,
        namespace: str,
        events: Iterable[str],
        headers: dict[str, str],
        query: dict[str, str],
        read: Read,
        tracker: DeliveryTracker,
        report: Report,
        count: Count,
        *,
        timeout_s: float = 10.0,
        socketio_path: str = "socket.io",
    ) -> None:
        super().__init__(read, tracker, report, count)
        self.url = _with_query(url, query)
        self.namespace = namespace
        self.events = list(events)
        self.headers = dict(headers)
        self.timeout_s = timeout_s
        self.socketio_path = socketio_path
        self._client: socketio.Client | None = None

    def _connect(self) -> None:
        # handle_sigint=False: a client made in the main greenlet would take SIGINT over from
        # Locust, for the whole process (user greenlets pass for other threads, so they would
        # not: by luck).
        client = socketio.Client(
            reconnection=False, handle_sigint=False, request_timeout=self.timeout_s
        )
        for event in self.events:
            client.on(event, self._on_event, namespace=self.namespace)
        client.on("disconnect", self._on_disconnect, namespace=self.namespace)
        self._client = client
        client.connect(
            self.url,
            headers=dict(self.headers),  # a copy: the client edits it
            transports=["websocket"],
            namespaces=[self.namespace],
            socketio_path=self.socketio_path,
            wait_timeout=self.timeout_s,
        )

    def _on_event(self, *args: Any) -> None:
        for payload in args:
            self._on_payload(payload)

    def _on_disconnect(self, *_reason: Any) -> None:
        self._ended()

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.disconnect()
        self._ended()


def _with_query(url: str, query: dict[str, str]) -> str:
    if not query:
        return url
    parts = urllib.parse.urlsplit(url)
    pairs = urllib.parse.parse_qsl(parts.query, keep_blank_values=True) + list(query.items())
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(pairs)))
