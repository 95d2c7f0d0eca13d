"""Ack channels: how a gateway's delivery acks reach a sender's `DeliveryTracker`.

Gateways tell of acks in one of three ways (`../shared/gateways.md`):

- `WebSocketChannel`: a plain WebSocket of JSON frames (WAHA, the plan's gateway);
- `SocketIOChannel`: socket.io events on a namespace (Evolution API, wppconnect-server);
- `WebhookChannel`: POSTs to a URL the gateway is given (all three), received by one
  `WebhookReceiver` in the Locust process for all of its senders.

Each channel hands every decoded JSON object it gets to `read`, the target profile's reader:
`read(payload)` returns `(message_id, outcome)` for an ack, with an outcome of
`users.delivery.OUTCOMES`, or None for anything else; the channel then tells the tracker. An event
on which the reader raises is not an ack either: the channel goes on reading.

The socket channels report their connect as a request ("WS connect", "socket.io connect"),
timed, with its error when it fails, and count `websocket_connected` or `websocket_failed`; the
gauge `websocket_open` goes up by one on connect and down by one when the connection ends,
closed by the sender or by the gateway. A webhook channel has no connection: it reports nothing.
Each channel is opened once and closed once (`close()` may be called again, and before `open()`).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import secrets
import time
import urllib.parse
from collections.abc import Callable, Iterable
from typing import Any, ClassVar, Protocol, runtime_checkable

import gevent
import socketio
import websocket
from gevent.pywsgi import WSGIServer

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


class WebhookReceiver:
    """An HTTP server in the Locust process that takes the gateway's webhook POSTs for every
    sender of that process (one receiver per Locust environment).

    - `listen`: "HOST:PORT" ("[::1]:PORT" for IPv6); port 0, the default, takes a free one.
      Loopback only, unless `allow_non_loopback` (the suite's rule: it is set only when the user
      gave `--webhook-listen` an address outside loopback).
    - `public_url`: the base URL the gateway must call, when it is not the listen address (a
      gateway in a container, a proxy); else the listen address, once started.
    - `count(name)`: counts `webhook_acks_unmatched`, POSTs that matched no subscriber or
      carried no ack.

    Each sender subscribes with its reader and tracker and gets a URL of its own,
    `<base>/acks/<token>`, with a random token that no other sender (or anyone else) can guess.
    Requests are routed by that token, wherever it stands in the path, so that what a gateway
    adds to the URL does not matter (Evolution with `byEvents` appends "/messages-update").
    Every request to a live token is answered 200, at once (gateways retry what fails, which
    would only repeat the acks); anything else 404.
    """

    def __init__(
        self,
        listen: str = "127.0.0.1:0",
        public_url: str | None = None,
        count: Callable[[str], None] | None = None,
        *,
        allow_non_loopback: bool = False,
    ) -> None:
        self.host, self.port = _listen_address(listen)
        if not allow_non_loopback and not _is_loopback(self.host):
            raise ValueError(
                f"webhook receiver: {listen!r} is not a loopback address (127.0.0.1, ::1, "
                "localhost); it listens outside loopback only when told so explicitly"
            )
        self.public_url = public_url.rstrip("/") if public_url else None
        self._count = count or (lambda name: None)
        self._subscribers: dict[str, tuple[Read, DeliveryTracker]] = {}
        self._server: WSGIServer | None = None

    @property
    def url(self) -> str:
        """The base URL the gateway calls: `public_url`, or the address listened on."""
        if self.public_url:
            return self.public_url
        if self._server is None:
            raise RuntimeError("webhook receiver: not started, and no public_url")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> WebhookReceiver:
        """Listen (without blocking: the server is a greenlet of this process)."""
        if self._server is None:
            # log=None: no access log line for each of thousands of acks a second.
            server = WSGIServer((self.host, self.port), self._app, log=None, error_log=logger)
            server.start()
            self._server = server
            self.port = server.server_port
        return self

    def stop(self) -> None:
        """Stop listening; idempotent."""
        server, self._server = self._server, None
        if server is not None:
            server.stop(timeout=1)

    def __enter__(self) -> WebhookReceiver:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def subscribe(self, read: Read, tracker: DeliveryTracker) -> str:
        """A new URL whose POSTs go to `read` and `tracker`."""
        token = secrets.token_urlsafe(16)
        self._subscribers[token] = (read, tracker)
        return f"{self.url}/acks/{token}"

    def unsubscribe(self, url: str) -> None:
        """Requests to `url` are answered 404 from now on; an unknown URL is ignored."""
        token = urllib.parse.urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1]
        self._subscribers.pop(token, None)

    def _app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        subscriber = self._route(environ.get("PATH_INFO", ""))
        post = environ.get("REQUEST_METHOD") == "POST"
        if subscriber is None:
            if post:
                self._count("webhook_acks_unmatched")
            start_response("404 Not Found", [("Content-Length", "0")])
            return []
        if post:
            try:
                payload = json.loads(environ["wsgi.input"].read())
            except ValueError:
                payload = None
            if not _deliver(*subscriber, payload):
                self._count("webhook_acks_unmatched")
        start_response("200 OK", [("Content-Length", "0")])
        return []

    def _route(self, path: str) -> tuple[Read, DeliveryTracker] | None:
        for segment in path.split("/"):
            subscriber = self._subscribers.get(segment)
            if subscriber is not None:
                return subscriber
        return None


def _listen_address(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"webhook receiver: listen on {listen!r}? HOST:PORT, such as 127.0.0.1:0")
    return host.removeprefix("[").removesuffix("]"), int(port)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a name, or "" (every address)
        return False


class WebhookChannel:
    """A sender's subscription to the process's `WebhookReceiver`.

    After `open()`, `url` is the URL to give the gateway (the profile's `{webhook_url}` in the
    create-session or set-webhook request); `close()` drops the subscription.
    """

    def __init__(self, receiver: WebhookReceiver, read: Read, tracker: DeliveryTracker) -> None:
        self.receiver = receiver
        self._read = read
        self._tracker = tracker
        self.url: str | None = None

    def open(self) -> bool:
        if self.url is None:
            self.url = self.receiver.subscribe(self._read, self._tracker)
        return True

    def close(self) -> None:
        url, self.url = self.url, None
        if url is not None:
            self.receiver.unsubscribe(url)
