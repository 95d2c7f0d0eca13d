"""A stand-in for WAHA core 2024.10 (NOWEB engine), for the requests a load test sends.

    python -m tests.standins.waha [--port 0] [--paired] [--pair-delay-s 0.2]
        [--not-ready-delay-s 0.05] [--require-api-key] [--api-key K] [--any-session-name]
        [--ws-all-events] [--server-ack-ms 5] [--device-ack-ms 20] [--fail-ratio 0]

As measured on the real one (../shared/gateways.md, tests/standins/test_agreement.py):
- only the session name `default` (422 for others; `--any-session-name` is WAHA Plus);
  `POST /api/sessions` 201 `{name, status, config, me, engine}`, 422 when it exists;
  `GET /api/sessions/{name}` `.status`; `POST .../stop` 201; `DELETE` 200 with no body.
- `POST /api/sendText {session, chatId, text}`: 201 `{key: {remoteJid, fromMe, id}, ...}` when
  WORKING; otherwise, after `--not-ready-delay-s` (about 5 s on the real one, which waits for
  WORKING meanwhile), 422 `{error, session, status, expected: ["WORKING"]}`.
- `X-Api-Key` (or `?x-api-key=`) is checked only with `--require-api-key` (core 2024.10 does not).
- Unpaired sessions stay STARTING (as offline here); `--paired` makes them WORKING after
  `--pair-delay-s`, and acks each accepted message (`message.ack` events).
- Events go to `config.webhooks[].url` that list them, and to `/ws?session=*` clients. Core
  2024.10's WebSocket accepts only `events=*` or `events=session.status` (close 4001 otherwise)
  and sends only `session.status`; `--ws-all-events` behaves as newer WAHA: any comma list of
  events, `message.ack` included.
- `/ping` pong, `/metrics` 404, `/health` 422 (Plus only).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
from typing import Any

from starlette.applications import Starlette
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from tests.standins.common import (
    ACK_DEVICE,
    ACK_ERROR,
    ACK_SERVER,
    OWN_NUMBER,
    Acks,
    Record,
    Session,
    WebhookSender,
    answer,
    json_body,
    lifespan_with,
    message_id,
    parse_flags,
    record_route,
    run,
    standin_parser,
)

CORE_ONLY_DEFAULT = (
    "WAHA Core support only 'default' session. If you want to run more then one WhatsApp account"
    " - please get WAHA PLUS version. Check this out: https://waha.devlike.pro/"
)
PLUS_ONLY = (
    "The feature is available only in Plus version. Check this out: https://waha.devlike.pro/"
)
NOT_EXPECTED = "Session status is not as expected. Try again later or restart the session"
ENVIRONMENT = {
    "version": "2024.10.8",
    "engine": "NOWEB",
    "tier": "CORE",
    "browser": "/usr/bin/chromium",
}
ACK_NAMES = {
    ACK_ERROR: "ERROR",
    0: "PENDING",
    ACK_SERVER: "SERVER",
    ACK_DEVICE: "DEVICE",
    3: "READ",
}
CORE_WS_EVENTS = (["*"], ["session.status"])
WS_POLICY_VIOLATION = 4001
WS_BACKLOG = 10_000


def nest_error(status_code: int, message: str) -> Response:
    """NestJS's HttpException body, as WAHA answers its refusals."""
    reasons = {
        401: "Unauthorized",
        400: "Bad Request",
        404: "Not Found",
        422: "Unprocessable Entity",
    }
    return answer(
        {"statusCode": status_code, "message": message, "error": reasons[status_code]},
        status_code,
    )


class WahaSession(Session):
    def __init__(self, name: str, config: Any) -> None:
        super().__init__(name, "STOPPED")
        self.config = config

    def me(self) -> dict[str, str] | None:
        if self.state != "WORKING":
            return None
        return {"id": f"{OWN_NUMBER}@c.us", "pushName": "stand-in"}

    def info(self, with_engine: bool = True) -> dict[str, Any]:
        body = {"name": self.name, "status": self.state, "config": self.config, "me": self.me()}
        if with_engine:  # `engine` is {} while stopped, as on the real one
            body["engine"] = {} if self.state == "STOPPED" else {"engine": "NOWEB"}
        return body

    def webhook_urls(self, event: str) -> list[str]:
        hooks = self.config.get("webhooks") if isinstance(self.config, dict) else None
        urls = []
        for hook in hooks if isinstance(hooks, list) else []:
            if not isinstance(hook, dict) or not hook.get("url"):
                continue
            events = hook.get("events") or []
            if event in events or "*" in events:
                urls.append(hook["url"])
        return urls


class Waha:
    """The stand-in's state: sessions by name, WebSocket listeners, webhooks, acks."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.sessions: dict[str, WahaSession] = {}
        self.record = Record("waha", args.record_limit, lambda: list(self.sessions))
        self.webhooks = WebhookSender(self.record)
        self.acks = Acks(args)
        # One bounded mailbox per WebSocket client, with the events it asked for.
        self.listeners: dict[asyncio.Queue[str], tuple[str, ...]] = {}

    def envelope(self, session: WahaSession, event: str, payload: Any) -> dict[str, Any]:
        body: dict[str, Any] = {"event": event, "session": session.name}
        metadata = session.config.get("metadata") if isinstance(session.config, dict) else None
        if metadata is not None:  # undefined on the real one without config.metadata
            body["metadata"] = metadata
        body.update(me=session.me(), payload=payload, engine="NOWEB", environment=ENVIRONMENT)
        return body

    def publish(self, session: WahaSession, event: str, payload: Any) -> None:
        body = self.envelope(session, event, payload)
        for url in session.webhook_urls(event):
            self.webhooks.post(url, body)
        if self.listeners:
            text = json.dumps(body, separators=(",", ":"))
            for queue, events in self.listeners.items():
                if "*" in events or event in events:
                    with contextlib.suppress(asyncio.QueueFull):  # a client far behind
                        queue.put_nowait(text)

    def set_state(self, session: WahaSession, state: str) -> None:
        session.state = state
        self.publish(session, "session.status", {"name": session.name, "status": state})

    def start(self, session: WahaSession) -> None:
        self.set_state(session, "STARTING")
        if self.args.paired:
            session.later(self.args.pair_delay_s, self.set_state, session, "WORKING")

    def stop(self, session: WahaSession) -> None:
        if session.state != "STOPPED":
            session.cancel_timers()  # pairing and acks of this run are dropped
            self.set_state(session, "STOPPED")

    def ack(self, session: WahaSession, chat_id: str, key_id: str, level: int) -> None:
        payload = {
            "id": f"true_{chat_id}_{key_id}",
            "from": chat_id,
            "fromMe": True,
            "ack": level,
            "ackName": ACK_NAMES[level],
        }
        self.publish(session, "message.ack", payload)


def create_app(args: argparse.Namespace) -> Starlette:
    waha = Waha(args)

    def name_refused(name: Any) -> Response | None:
        if name == "default" or (args.any_session_name and isinstance(name, str) and name):
            return None
        return nest_error(422, CORE_ONLY_DEFAULT)

    async def create(request: Request) -> Response:
        body = await json_body(request)
        if not isinstance(body, dict):
            return nest_error(400, "Unexpected token in JSON")
        name = body.get("name")
        if (refused := name_refused(name)) is not None:
            return refused
        if name in waha.sessions:
            return nest_error(422, f"Session '{name}' already exists. Use PUT to update it.")
        session = WahaSession(name, body.get("config"))
        waha.sessions[name] = session
        waha.record.session_created()
        if body.get("start", True):
            waha.start(session)
        return answer(session.info(), 201)

    async def list_sessions(request: Request) -> Response:
        show_all = request.query_params.get("all") in ("true", "1")
        return answer(
            [s.info(with_engine=False) for s in waha.sessions.values()
             if show_all or s.state != "STOPPED"]
        )  # fmt: skip

    async def get_session(request: Request) -> Response:
        session = waha.sessions.get(request.path_params["name"])
        if session is None:
            return nest_error(404, "Session not found")
        return answer(session.info())

    async def start_session(request: Request) -> Response:
        session = waha.sessions.get(request.path_params["name"])
        if session is None:
            return nest_error(404, "Session not found")
        if session.state == "STOPPED":
            waha.start(session)
        return answer(session.info(), 201)

    async def stop_session(request: Request) -> Response:
        session = waha.sessions.get(request.path_params["name"])
        if session is None:
            return nest_error(404, "Session not found")
        waha.stop(session)
        return answer(session.info(), 201)

    async def delete_session(request: Request) -> Response:
        # 200 with an empty body, whether the session existed or not (as the real one).
        session = waha.sessions.pop(request.path_params["name"], None)
        if session is not None:
            waha.stop(session)
            session.alive = False
            waha.record.session_deleted()
        return Response(status_code=200)

    async def me(request: Request) -> Response:
        session = waha.sessions.get(request.path_params["name"])
        if session is None:
            return nest_error(404, "Session not found")
        me = session.me()
        return answer(me) if me is not None else Response(status_code=200)

    async def send_text(request: Request) -> Response:
        body = await json_body(request)
        if not isinstance(body, dict):
            return nest_error(400, "Unexpected token in JSON")
        name = body.get("session", "default")
        chat_id, text = body.get("chatId"), body.get("text")
        if (refused := name_refused(name)) is not None:
            return refused
        session = waha.sessions.get(name)
        if session is None or session.state == "STOPPED":
            return nest_error(
                404,
                f"We didn't find a session with name '{name}'.\n"
                f"Please start it first by using POST /api/sessions/{name}/start request",
            )
        if not isinstance(chat_id, str) or not chat_id:
            return nest_error(400, "chatId should not be empty")
        # The real one waits for WORKING (about 5 s), then refuses with the status it saw.
        deadline = time.monotonic() + args.not_ready_delay_s
        while session.alive and session.state != "WORKING" and time.monotonic() < deadline:
            await asyncio.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
        if session.state != "WORKING" or not session.alive:
            waha.record.refusal(chat_id)
            return answer(
                {"error": NOT_EXPECTED, "session": name, "status": session.state,
                 "expected": ["WORKING"]},
                422,
            )  # fmt: skip
        chat = chat_id if "@" in chat_id else f"{chat_id}@c.us"
        key_id = message_id()
        waha.record.message(name, chat, key_id)
        waha.acks.schedule(session, lambda level: waha.ack(session, chat, key_id, level))
        return answer(
            {
                "key": {
                    "remoteJid": chat.replace("@c.us", "@s.whatsapp.net"),
                    "fromMe": True,
                    "id": key_id,
                },
                "message": {"extendedTextMessage": {"text": text}},
                "messageTimestamp": str(int(time.time())),
                "status": "PENDING",
            },
            201,
        )

    async def ping(_: Request) -> Response:
        return answer({"message": "pong"})

    async def health(_: Request) -> Response:
        return nest_error(422, PLUS_ONLY)

    async def events(ws: WebSocket) -> None:
        session = ws.query_params.get("session") or "*"
        wanted = (ws.query_params.get("events") or "*").split(",")
        await ws.accept()
        if session != "*":
            error = "Only connecting to all sessions is allowed for now, use session=*"
            await ws.close(WS_POLICY_VIOLATION, json.dumps({"error": error}))
            return
        if not args.ws_all_events and wanted not in CORE_WS_EVENTS:
            error = (
                "Only 'session.status' event is allowed for now, use events=session.status"
                " or events=*"
            )
            await ws.close(WS_POLICY_VIOLATION, json.dumps({"error": error}))
            return
        # Core 2024.10 forwards only session.status, whatever `*` promises.
        queue: asyncio.Queue[str] = asyncio.Queue(maxsize=WS_BACKLOG)
        waha.listeners[queue] = tuple(wanted) if args.ws_all_events else ("session.status",)

        async def forward() -> None:
            while True:
                await ws.send_text(await queue.get())

        sender = asyncio.create_task(forward())
        try:
            while True:
                await ws.receive_text()
        except WebSocketDisconnect:
            pass
        finally:
            waha.listeners.pop(queue, None)
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)

    async def not_found(request: Request, _: Exception) -> Response:
        return nest_error(404, f"Cannot {request.method} {request.url.path}")

    app = Starlette(
        routes=[
            Route("/api/sessions", create, methods=["POST"]),
            Route("/api/sessions", list_sessions, methods=["GET"]),
            Route("/api/sessions/{name}", get_session, methods=["GET"]),
            Route("/api/sessions/{name}", delete_session, methods=["DELETE"]),
            Route("/api/sessions/{name}/start", start_session, methods=["POST"]),
            Route("/api/sessions/{name}/stop", stop_session, methods=["POST"]),
            Route("/api/sessions/{name}/me", me, methods=["GET"]),
            Route("/api/sendText", send_text, methods=["POST"]),
            Route("/ping", ping, methods=["GET"]),
            Route("/health", health, methods=["GET"]),
            WebSocketRoute("/ws", events),
            record_route(waha.record),
        ],
        exception_handlers={404: not_found, 405: not_found},
        lifespan=lifespan_with(waha.webhooks),
    )
    if args.require_api_key:
        app.add_middleware(ApiKeyCheck, api_key=args.api_key)
    return app


class ApiKeyCheck:
    """Newer WAHA's check of `X-Api-Key` (or `?x-api-key=`): 401 without the key; `/ping`
    and the stand-in's record stay open."""

    OPEN = ("/ping", "/_standin/")

    def __init__(self, app: Any, api_key: str) -> None:
        self.app = app
        self.api_key = api_key

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket") and not scope["path"].startswith(self.OPEN):
            # HTTPConnection, not Request: a WebSocket's scope is not an HTTP request's.
            request = HTTPConnection(scope)
            given = request.headers.get("x-api-key") or request.query_params.get("x-api-key")
            if given != self.api_key:
                if scope["type"] == "websocket":
                    await send({"type": "websocket.close", "code": 4401})
                    return
                response = answer({"message": "Unauthorized", "statusCode": 401}, 401)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def parser() -> argparse.ArgumentParser:
    p = standin_parser("waha", __doc__)
    p.add_argument("--api-key", default="loadtest-key", help="the key for --require-api-key")
    p.add_argument("--require-api-key", action="store_true", help="401 without X-Api-Key")
    p.add_argument(
        "--not-ready-delay-s", type=float, default=0.05,
        help="how long sendText waits for WORKING before its 422 (the real one: about 5)",
    )  # fmt: skip
    p.add_argument("--any-session-name", action="store_true", help="as WAHA Plus: many sessions")
    p.add_argument("--ws-all-events", action="store_true", help="as newer WAHA: every event on /ws")
    return p


def main(argv: list[str] | None = None) -> None:
    run(create_app, parse_flags(parser(), argv), "waha")


if __name__ == "__main__":
    main()
