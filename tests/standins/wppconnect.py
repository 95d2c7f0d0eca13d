"""A stand-in for wppconnect-server 2.10, for the requests a load test sends.

    python -m tests.standins.wppconnect [--port 0] [--secret-key THISISMYSECURETOKEN]
        [--paired] [--pair-delay-s 0.2] [--auth-delay-ms 0] [--webhook-url URL]
        [--server-ack-ms 5] [--device-ack-ms 20] [--fail-ratio 0]

From wppconnect-server's source and ../shared/gateways.md (no real one runs here):
- `POST /api/{session}/{SECRET_KEY}/generate-token` 201 `{status, session, token, full}`
  (400 for a wrong secret); then `Authorization: Bearer <token>`, or `{session}:{token}` in the
  path. A token is good for its own session only: 401 otherwise. The real one checks it with
  bcrypt (about 70 ms each call); `--auth-delay-ms` adds such a cost.
- `POST /api/{session}/start-session {webhook?, waitQrCode?}` 200 with the state before it
  starts (`{status: "CLOSED", qrcode: null}` the first time); the session is INITIALIZING,
  then QRCODE (unpaired) or, with `--paired`, CONNECTED after `--pair-delay-s`.
- `GET /api/{session}/status-session` `.status`; `POST .../close-session` 200 (500 for a
  session never started); `POST .../logout-session`.
- `POST /api/{session}/send-message {phone, isGroup, message}` 201 `{status: "success",
  response: [message]}`, id at `response[0].id` (`true_<phone>@c.us_<id>`); not connected: 404
  `{response: null, status: "Disconnected", message: ...}`.
- acks: webhook `{event: "onack", session, id: {_serialized, ...}, ack}` to the session's
  `webhook` (or `--webhook-url`), ack 1 SENT, 2 RECEIVED, -1 FAILED (`--fail-ratio`); socket.io
  broadcasts `onack` with the message itself.
- `/healthz`, `/metrics` (prom-client's default process and Node.js metrics, from this process).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import os
import resource
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

import psutil
import socketio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from tests.standins.common import (
    OWN_NUMBER,
    Acks,
    Background,
    Record,
    Session,
    WebhookSender,
    answer,
    json_object,
    lifespan_with,
    message_id,
    parse_flags,
    record_route,
    run,
    standin_parser,
)

VERSION = "2.10.4"
NOT_ACTIVE = "A sessão do WhatsApp não está ativa."
SessionHandler = Callable[[Request, str], Awaitable[Response]]
QR_DELAY_S = 0.05  # INITIALIZING -> QRCODE: the browser has opened WhatsApp Web
QR_IMAGE = "data:image/png;base64,iVBORw0KGgo="
LAG_PROBE_S = 0.5


class Tokens:
    """Tokens shaped as bcrypt's (`$2b$10$` + 22 salt + 31 hash, `/` -> `_`, `+` -> `-`), made
    with an HMAC of the session and the secret key: like the real ones, each call gives a new
    token, all of them good for their session only and across restarts."""

    PREFIX = "$2b$10$"

    def __init__(self, secret_key: str) -> None:
        self.secret_key = secret_key

    def _mac(self, salt: str, session: str) -> str:
        digest = hmac.new(self.secret_key.encode(), f"{salt}{session}".encode(), hashlib.sha256)
        text = base64.b64encode(digest.digest()).decode()[:31]
        return text.replace("/", "_").replace("+", "-")

    def make(self, session: str) -> str:
        salt = secrets.token_urlsafe(16)[:22]
        return f"{self.PREFIX}{salt}{self._mac(salt, session)}"

    def valid(self, session: str, token: str) -> bool:
        if not token.startswith(self.PREFIX) or len(token) != len(self.PREFIX) + 22 + 31:
            return False
        salt = token[len(self.PREFIX) : len(self.PREFIX) + 22]
        return hmac.compare_digest(token[len(self.PREFIX) + 22 :], self._mac(salt, session))


class Client(Session):
    """A started session (the real one's `clientsArray[session]`)."""

    def __init__(self, name: str, webhook: str | None) -> None:
        super().__init__(name, "INITIALIZING")
        self.webhook = webhook

    def status_body(self) -> dict[str, Any]:
        if self.state == "CLOSED":
            return {"status": "CLOSED", "qrcode": None}
        qrcode = QR_IMAGE if self.state == "QRCODE" else None
        return {"status": self.state, "qrcode": qrcode, "urlcode": "2@stand-in", "version": VERSION}


class Wppconnect:
    """The stand-in's state: clients by session, socket.io, webhooks, acks."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.clients: dict[str, Client] = {}
        self.record = Record("wppconnect", args.record_limit, self.open_sessions)
        self.webhooks = WebhookSender(self.record)
        self.acks = Acks(args)
        self.tokens = Tokens(args.secret_key)
        self.sio = socketio.AsyncServer(async_mode="asgi", cors_allowed_origins="*", logger=False)
        self.background = Background()
        self.lag_s = 0.0

    def open_sessions(self) -> list[str]:
        return [name for name, client in self.clients.items() if client.state != "CLOSED"]

    def set_state(self, client: Client, state: str) -> None:
        client.state = state

    def start(self, client: Client) -> None:
        if self.args.paired:
            client.later(min(QR_DELAY_S, self.args.pair_delay_s), self.set_state, client, "QRCODE")
            client.later(self.args.pair_delay_s, self.set_state, client, "CONNECTED")
        else:
            client.later(QR_DELAY_S, self.set_state, client, "QRCODE")

    def ack(self, client: Client, message: dict[str, Any], level: int) -> None:
        ack = {**message, "ack": level}
        self.background.start(self.sio.emit("onack", ack))
        url = client.webhook or self.args.webhook_url
        if url:
            self.webhooks.post(url, {"event": "onack", "session": client.name, **ack})

    async def measure_lag(self) -> None:
        """The event loop's lag, as prom-client's `nodejs_eventloop_lag_seconds`."""
        while True:
            started = time.monotonic()
            await asyncio.sleep(LAG_PROBE_S)
            self.lag_s = max(0.0, time.monotonic() - started - LAG_PROBE_S)


def create_app(args: argparse.Namespace) -> ASGIApp:
    wpp = Wppconnect(args)
    started_at = time.time()

    def on_session(path: str, handler: SessionHandler, method: str) -> Route:
        """A route of one session behind the real one's `verifyToken`: the token from the
        path (`session:token`) or `Authorization: Bearer`, good for this session only."""

        async def guarded(request: Request) -> Response:
            session, _, token = request.path_params["session"].partition(":")
            if not token:
                parts = request.headers.get("authorization", "").split(" ")
                token = parts[1] if len(parts) > 1 else ""
                if not token:
                    message = "Token is not present. Check your header and try again"
                    return answer({"message": message}, 401)
            if args.auth_delay_ms:
                await asyncio.sleep(args.auth_delay_ms / 1000)  # the real one's bcrypt.compare
            if not wpp.tokens.valid(session, token):
                return answer({"error": "Check that the Session and Token are correct"}, 401)
            return await handler(request, session)

        return Route(path, guarded, methods=[method])

    async def generate_token(request: Request) -> Response:
        session, secret = request.path_params["session"], request.path_params["secret"]
        if secret != args.secret_key:
            return answer({"response": False, "message": "The SECRET_KEY is incorrect"}, 400)
        token = wpp.tokens.make(session)
        return answer(
            {"status": "success", "session": session, "token": token, "full": f"{session}:{token}"},
            201,
        )

    async def start_session(request: Request, session: str) -> Response:
        body = await json_object(request)
        client = wpp.clients.get(session)
        before = client.status_body() if client else {"status": "CLOSED", "qrcode": None}
        if client is None or client.state == "CLOSED":
            webhook = body.get("webhook") if isinstance(body.get("webhook"), str) else None
            client = Client(session, webhook or None)
            wpp.record.session_created()  # a start counts as a session, a close ends it
            wpp.clients[session] = client
            wpp.start(client)
        return answer(before)

    async def status_session(request: Request, session: str) -> Response:
        client = wpp.clients.get(session)
        return answer(client.status_body() if client else {"status": "CLOSED", "qrcode": None})

    async def close_session(request: Request, session: str) -> Response:
        client = wpp.clients.get(session)
        if client is None:  # the real one reads `.status` of undefined here
            return answer({"status": False, "message": "Error closing session", "error": {}}, 500)
        if client.state != "CLOSED":
            client.cancel_timers()
            client.state = "CLOSED"
            wpp.record.session_deleted()
            await wpp.sio.emit("whatsapp-status", False)
        return answer({"status": True, "message": "Session successfully closed"})

    async def logout_session(request: Request, session: str) -> Response:
        client = wpp.clients.get(session)
        if client is None or client.state != "CONNECTED":
            return disconnected()
        client.alive = False
        del wpp.clients[session]
        wpp.record.session_deleted()
        await asyncio.sleep(0.5)  # the real one answers from a 500 ms timer
        return answer({"status": True, "message": "Session successfully closed"})

    def disconnected() -> Response:
        return answer({"response": None, "status": "Disconnected", "message": NOT_ACTIVE}, 404)

    async def send_message(request: Request, session: str) -> Response:
        body = await json_object(request)
        phones = body.get("phone") or []
        phones = [phones] if isinstance(phones, str) else [p for p in phones if isinstance(p, str)]
        client = wpp.clients.get(session)
        if client is None or client.state != "CONNECTED":
            for phone in phones:
                wpp.record.refusal(phone)
            return disconnected()
        suffix = "@g.us" if body.get("isGroup") else "@c.us"
        sent = []
        for phone in phones:
            chat = phone if "@" in phone else f"{phone}{suffix}"
            key_id = message_id()
            message = {
                "id": f"true_{chat}_{key_id}",
                "ack": 0,
                "from": f"{OWN_NUMBER}@c.us",
                "to": chat,
                "body": body.get("message"),
                "type": "chat",
                "t": int(time.time()),
                "fromMe": True,
            }
            wpp.record.message(session, chat, key_id)
            event = {
                **message,
                "id": {"fromMe": True, "remote": chat, "id": key_id, "_serialized": message["id"]},
            }
            wpp.acks.schedule(client, lambda level, event=event: wpp.ack(client, event, level))
            sent.append(message)
        return answer({"status": "success", "response": sent, "mapper": "return"}, 201)

    async def show_all(request: Request) -> Response:
        if request.path_params["secret"] != args.secret_key:
            return answer({"response": False, "message": "The token is incorrect"}, 400)
        return answer({"response": wpp.open_sessions()})

    async def healthz(_: Request) -> Response:
        uptime = time.time() - started_at
        return answer({"uptime": uptime, "message": "OK", "timestamp": int(time.time() * 1000)})

    async def metrics(_: Request) -> Response:
        return PlainTextResponse(
            prom_client_text(wpp.lag_s), media_type="text/plain; version=0.0.4"
        )

    app = Starlette(
        routes=[
            Route("/api/{session}/{secret}/generate-token", generate_token, methods=["POST"]),
            Route("/api/{secret}/show-all-sessions", show_all, methods=["GET"]),
            on_session("/api/{session}/start-session", start_session, "POST"),
            on_session("/api/{session}/status-session", status_session, "GET"),
            on_session("/api/{session}/close-session", close_session, "POST"),
            on_session("/api/{session}/logout-session", logout_session, "POST"),
            on_session("/api/{session}/send-message", send_message, "POST"),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
            record_route(wpp.record),
        ],
        lifespan=lifespan_with(wpp.webhooks, wpp.measure_lag),
    )
    return socketio.ASGIApp(wpp.sio, other_asgi_app=app)


def prom_client_text(lag_s: float) -> str:
    """prom-client's default metrics, the names a Node.js gateway exports, from this process:
    what the suite's monitors read (RSS, heap used and total, event-loop lag)."""
    process = psutil.Process(os.getpid())
    cpu = process.cpu_times()
    memory = process.memory_info()
    soft_fds, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    # Python has no V8 heap: the resident set stands for its total, less shared pages for used.
    heap_total = memory.rss
    samples = [
        ("process_cpu_user_seconds_total", "counter", "Total user CPU time spent in seconds.",
         cpu.user),
        ("process_cpu_system_seconds_total", "counter", "Total system CPU time spent in seconds.",
         cpu.system),
        ("process_cpu_seconds_total", "counter",
         "Total user and system CPU time spent in seconds.", cpu.user + cpu.system),
        ("process_start_time_seconds", "gauge",
         "Start time of the process since unix epoch in seconds.", int(process.create_time())),
        ("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", memory.rss),
        ("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.", memory.vms),
        ("process_heap_bytes", "gauge", "Process heap size in bytes.", memory.rss),
        ("process_open_fds", "gauge", "Number of open file descriptors.", process.num_fds()),
        ("process_max_fds", "gauge", "Maximum number of open file descriptors.", soft_fds),
        ("nodejs_eventloop_lag_seconds", "gauge", "Lag of event loop in seconds.", lag_s),
        ("nodejs_eventloop_lag_p99_seconds", "gauge",
         "The 99th percentile of the recorded event loop delays.", lag_s),
        ("nodejs_heap_size_total_bytes", "gauge", "Process heap size from Node.js in bytes.",
         heap_total),
        ("nodejs_heap_size_used_bytes", "gauge", "Process heap size used from Node.js in bytes.",
         max(memory.rss - memory.shared, 0)),
    ]  # fmt: skip
    blocks = [
        f"# HELP {name} {help_text}\n# TYPE {name} {kind}\n{name} {value}\n"
        for name, kind, help_text, value in samples
    ]
    blocks.append(
        "# HELP nodejs_version_info Node.js version info.\n# TYPE nodejs_version_info gauge\n"
        'nodejs_version_info{version="v20.19.2",major="20",minor="19",patch="2"} 1\n'
    )
    return "\n".join(blocks)


def parser() -> argparse.ArgumentParser:
    p = standin_parser("wppconnect", __doc__)
    p.add_argument("--secret-key", default="THISISMYSECURETOKEN", help="SECRET_KEY for tokens")
    p.add_argument("--auth-delay-ms", type=float, default=0.0, help="cost of each token check")
    p.add_argument("--webhook-url", help="the server-wide webhook (WEBHOOK_URL)")
    return p


def main(argv: list[str] | None = None) -> None:
    run(create_app, parse_flags(parser(), argv), "wppconnect")


if __name__ == "__main__":
    main()
