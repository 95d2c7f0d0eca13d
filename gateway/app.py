"""The gateway's HTTP and WebSocket API: `create_app(config)` returns an ASGI app.

Handlers are plain Starlette endpoints that validate bodies with pydantic's JSON parser
(`model_validate_json`). FastAPI describes the same routes in `gateway.schema` (served at
`/openapi.json`) but does not serve them: on one core here its per-request machinery cost four
fifths of a webhook request (about 4,900 requests/s for a bare FastAPI endpoint, 15,400 for the
same endpoint on Starlette; see docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import re
import time
from collections.abc import AsyncIterator
from typing import TypeVar

from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, ValidationError
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from gateway.config import GatewayConfig
from gateway.delivery import OutboundMessage
from gateway.errors import ApiError, describe_validation_error, exception_handlers
from gateway.faults import FaultMiddleware
from gateway.limits import BodySizeLimit
from gateway.metrics import MetricsMiddleware
from gateway.models import MAX_MESSAGE_BODY_BYTES, CreateSession, SendMessage, WebhookEvent
from gateway.state import Gateway

RECIPIENT = re.compile(r"[0-9]{10,15}(@c\.us)?")
WEBHOOK_RECEIVED = b'{"received":true,"duplicate":false}'
WEBHOOK_DUPLICATE = b'{"received":true,"duplicate":true}'

Model = TypeVar("Model", bound=BaseModel)


def parse(model: type[Model], body: bytes) -> Model:
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise ApiError(400, "invalid_request", describe_validation_error(exc)) from None


def json_response(payload: dict[str, object], status_code: int = 200) -> Response:
    return Response(
        json.dumps(payload, separators=(",", ":")),
        status_code=status_code,
        media_type="application/json",
    )


def create_app(config: GatewayConfig | None = None, rng: random.Random | None = None) -> Starlette:
    config = config or GatewayConfig()
    gw = Gateway(config, rng)
    metrics = gw.metrics
    accepted_events = metrics.webhook_events.labels(result="processed")
    duplicate_events = metrics.webhook_events.labels(result="duplicate")
    rejected_messages = metrics.messages["rejected"]

    async def health(_: Request) -> Response:
        return json_response(
            {
                "status": "ok",
                "sessions": len(gw.sessions),
                "queueDepth": gw.delivery.queue.qsize(),
                "uptimeS": round(time.monotonic() - gw.started_at, 3),
            }
        )

    async def prometheus(_: Request) -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    async def openapi(_: Request) -> Response:
        # Imported on first use: FastAPI is only needed to describe the API, not to serve it.
        from gateway.schema import openapi_document

        return JSONResponse(openapi_document())

    async def create_session(request: Request) -> Response:
        payload = parse(CreateSession, await request.body())
        gw.check_webhook_url(payload.webhook_url)
        try:
            session = gw.sessions.create(
                owner_key=request.headers.get("x-api-key"),
                webhook_url=payload.webhook_url,
                now=time.monotonic(),
                now_ms=int(time.time() * 1000),
            )
        except ApiError as refusal:
            metrics.sessions_rejected.labels(reason=refusal.code).inc()
            raise
        metrics.sessions_created.inc()
        return json_response(
            {"sessionId": session.id, "status": session.status(time.monotonic())}, 201
        )

    async def get_session(request: Request) -> Response:
        session = gw.sessions.get(request.path_params["id"], request.headers.get("x-api-key"))
        return json_response(
            {
                "sessionId": session.id,
                "status": session.status(time.monotonic()),
                "phone": session.phone,
                "createdAt": session.created_at_ms,
                "messagesSent": session.messages_sent,
                "subscribers": len(session.subscribers),
            }
        )

    async def delete_session(request: Request) -> Response:
        session = gw.sessions.get(request.path_params["id"], request.headers.get("x-api-key"))
        gw.close_session(session, "deleted")
        return json_response({"sessionId": session.id, "status": "closed"})

    async def send_message(request: Request) -> Response:
        try:
            session = gw.sessions.get(request.path_params["id"], request.headers.get("x-api-key"))
            payload = parse(SendMessage, await request.body())
            _check_message(payload)
            now = time.monotonic()
            if now < session.ready_at:
                raise ApiError(
                    409,
                    "session_not_ready",
                    "The session is still initializing; retry when its status is 'ready'.",
                    retry_after_s=session.ready_at - now,
                )
            session.used = True
            wait_s = gw.sessions.take_token(session, now)
            if wait_s is not None:
                raise ApiError(
                    429,
                    "rate_limited",
                    f"Above {config.rate_limit:g} messages/s for this session.",
                    retry_after_s=wait_s,
                )
            message = OutboundMessage(
                id=gw.delivery.new_message_id(), session=session, to=payload.to, body=payload.body
            )
            if not gw.delivery.submit(message):
                raise ApiError(
                    503,
                    "queue_full",
                    f"The outbound queue is full ({config.queue_size} messages).",
                    retry_after_s=1.0,
                )
        except ApiError as refusal:
            rejected_messages.inc()
            metrics.messages_rejected.labels(reason=refusal.code).inc()
            raise
        session.messages_sent += 1
        gw.leak.on_message_accepted()
        return json_response({"messageId": message.id, "status": "queued"}, 202)

    async def webhook(request: Request) -> Response:
        if config.require_api_key and not request.headers.get("x-api-key"):
            raise ApiError(401, "unauthorized", "X-Api-Key header is required.")
        event = parse(WebhookEvent, await request.body())
        message = event.message
        if not gw.remember_inbound(message.id):
            duplicate_events.inc()
            return Response(WEBHOOK_DUPLICATE, media_type="application/json")
        accepted_events.inc()
        recipient = gw.sessions.find_recipient(message.to)
        if recipient is not None:
            gw.hub.publish(
                recipient,
                {
                    "event": "message_create",
                    "messageId": message.id,
                    "from": message.from_,
                    "to": message.to,
                    "text": message.text,
                    "timestamp": event.timestamp,
                },
            )
        return Response(WEBHOOK_RECEIVED, media_type="application/json")

    async def session_events(websocket: WebSocket) -> None:
        try:
            session = gw.sessions.get(
                websocket.path_params["id"], websocket.headers.get("x-api-key")
            )
        except ApiError as refusal:
            # 4000 + HTTP status: the usual convention for application close codes. Accept
            # first: a close before the handshake is an HTTP 403 and the code never arrives.
            await websocket.accept()
            await websocket.close(code=4000 + refusal.status_code, reason=refusal.code)
            return
        await websocket.accept()
        session.used = True
        subscriber = gw.hub.subscribe(session)
        reader = asyncio.ensure_future(_until_client_leaves(websocket))
        try:
            while True:
                getter = asyncio.ensure_future(subscriber.queue.get())
                done, _ = await asyncio.wait({getter, reader}, return_when=asyncio.FIRST_COMPLETED)
                if reader in done:
                    getter.cancel()
                    return
                text = getter.result()
                if text is None:
                    await websocket.close(code=subscriber.close_code)
                    return
                await websocket.send_text(text)
        except (WebSocketDisconnect, RuntimeError):
            return
        finally:
            reader.cancel()
            gw.hub.unsubscribe(session, subscriber)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        await gw.start()
        try:
            yield
        finally:
            await gw.stop()

    routes = [
        Route("/health", health, methods=["GET"]),
        Route("/metrics", prometheus, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
        Route("/api/sessions", create_session, methods=["POST"]),
        Route("/api/sessions/{id}", get_session, methods=["GET"]),
        Route("/api/sessions/{id}", delete_session, methods=["DELETE"]),
        Route("/api/sessions/{id}/messages", send_message, methods=["POST"]),
        Route("/api/webhook", webhook, methods=["POST"]),
        WebSocketRoute("/api/sessions/{id}/events", session_events),
    ]
    # Outermost first: metrics time what the client sees, injected latency included.
    middleware = [Middleware(MetricsMiddleware, metrics=metrics)]
    if FaultMiddleware.wanted(config):
        middleware.append(
            Middleware(FaultMiddleware, config=config, metrics=metrics, rng=gw.rng, routes=routes)
        )
    middleware.append(Middleware(BodySizeLimit))
    app = Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers=exception_handlers(),
        lifespan=lifespan,
    )
    app.state.gateway = gw
    return app


def _check_message(payload: SendMessage) -> None:
    if not RECIPIENT.fullmatch(payload.to):
        raise ApiError(
            400,
            "invalid_recipient",
            "'to' must be 10 to 15 digits, optionally followed by '@c.us'.",
        )
    if not payload.body:
        raise ApiError(400, "empty_body", "'body' must not be empty.")
    # A character is at most 4 bytes in UTF-8: only long bodies need encoding to be measured.
    if len(payload.body) * 4 > MAX_MESSAGE_BODY_BYTES and (
        len(payload.body.encode("utf-8", "surrogatepass")) > MAX_MESSAGE_BODY_BYTES
    ):
        raise ApiError(
            413, "body_too_large", f"'body' is larger than {MAX_MESSAGE_BODY_BYTES} bytes."
        )


async def _until_client_leaves(websocket: WebSocket) -> None:
    """Read (and ignore) what the client sends, so that its disconnect is noticed."""
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
