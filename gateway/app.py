"""The gateway's HTTP and WebSocket API, assembled from its parts by `create_app(config)`.

All state lives on the `Gateway` object that `create_app` builds, so every app is independent.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import random
import re
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import FastAPI, Header, WebSocket, WebSocketDisconnect
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.responses import JSONResponse, Response

from gateway.config import GatewayConfig
from gateway.delivery import DeliveryPipeline, OutboundMessage
from gateway.errors import ApiError, install_error_handlers
from gateway.events import EventHub
from gateway.faults import FaultMiddleware, Leak, stall_loop
from gateway.limits import BodySizeLimit
from gateway.metrics import GatewayMetrics, MetricsMiddleware
from gateway.models import (
    MAX_MESSAGE_BODY_BYTES,
    CreateSession,
    ErrorBody,
    MessageQueued,
    SendMessage,
    SessionClosed,
    SessionCreated,
    SessionInfo,
    WebhookAccepted,
    WebhookEvent,
)
from gateway.sessions import Session, SessionStore

RECIPIENT = re.compile(r"[0-9]{10,15}(@c\.us)?")
ApiKey = Annotated[str | None, Header(alias="X-Api-Key")]


def _errors(*codes: int) -> dict[int | str, dict[str, object]]:
    return {code: {"model": ErrorBody} for code in codes}


class Gateway:
    """The state of one running gateway."""

    def __init__(self, config: GatewayConfig, rng: random.Random | None = None) -> None:
        self.config = config
        self.rng = rng or random.Random()
        self.metrics = GatewayMetrics()
        self.sessions = SessionStore(
            max_sessions=config.max_sessions,
            pairing_delay_s=config.pairing_delay_s,
            idle_expiry_s=config.session_idle_expiry_s,
            memory_kib=config.session_memory_kib,
            rate_limit=config.rate_limit,
            require_api_key=config.require_api_key,
        )
        self.hub = EventHub(self.metrics, config.webhook_attempts)
        self.delivery = DeliveryPipeline(
            queue_size=config.queue_size,
            senders=config.senders,
            send_latency_ms=config.delivery_latency_ms,
            device_latency_ms=config.device_latency_ms,
            jitter_ms=config.delivery_jitter_ms,
            failure_rate=config.delivery_failure_rate,
            hub=self.hub,
            metrics=self.metrics,
            rng=self.rng,
        )
        self.leak = Leak(config.leak_kib_per_message)
        self.seen_inbound: OrderedDict[str, None] = OrderedDict()
        self.started_at = time.monotonic()
        self._background: list[asyncio.Task[None]] = []
        self.metrics.bind_state(
            sessions_active=lambda: len(self.sessions),
            sessions_ready=lambda: self.sessions.ready_count(time.monotonic()),
            queue_depth=self.delivery.queue.qsize,
            queue_capacity=config.queue_size,
            in_flight=lambda: self.delivery.in_flight,
            session_bytes=self.sessions.retained_bytes,
            leak_bytes=lambda: self.leak.total_bytes,
        )

    async def start(self) -> None:
        await self.hub.start()
        self.delivery.start()
        self._background.append(asyncio.create_task(self._expire_sessions()))
        if self.config.stall_ms > 0:
            self._background.append(
                asyncio.create_task(
                    stall_loop(self.config.stall_ms, self.config.stall_every_s, self.metrics)
                )
            )

    async def stop(self) -> None:
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        await self.delivery.stop()
        await self.hub.stop()

    def close_session(self, session: Session, reason: str) -> None:
        self.sessions.remove(session)
        self.hub.close_session(session)
        self.metrics.sessions_closed.labels(reason=reason).inc()

    async def _expire_sessions(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            for session in self.sessions.expire(time.monotonic()):
                self.hub.close_session(session)
                self.metrics.sessions_closed.labels(reason="expired").inc()

    def check_webhook_url(self, url: str | None) -> None:
        if url is None:
            return
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ApiError(400, "invalid_webhook_url", "webhookUrl must be an http(s) URL.")
        if not self.config.allow_remote_webhooks and not _is_loopback(parts.hostname):
            raise ApiError(
                400,
                "webhook_url_not_allowed",
                "webhookUrl must be on loopback unless the gateway runs with "
                "--allow-remote-webhooks.",
            )

    def remember_inbound(self, message_id: str) -> bool:
        """True the first time an inbound message id is seen (bounded memory of ids)."""
        if message_id in self.seen_inbound:
            return False
        self.seen_inbound[message_id] = None
        if len(self.seen_inbound) > self.config.dedup_capacity:
            self.seen_inbound.popitem(last=False)
        return True


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def create_app(config: GatewayConfig | None = None, rng: random.Random | None = None) -> FastAPI:
    config = config or GatewayConfig()
    gw = Gateway(config, rng)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await gw.start()
        try:
            yield
        finally:
            await gw.stop()

    app = FastAPI(
        title="Reference WhatsApp gateway",
        version="1.0.0",
        description="The test plan's API, a simulated WhatsApp network and fault switches.",
        lifespan=lifespan,
    )
    app.state.gateway = gw
    install_error_handlers(app)

    @app.get("/health", tags=["ops"])
    async def health() -> JSONResponse:
        return JSONResponse(
            {
                "status": "ok",
                "sessions": len(gw.sessions),
                "queueDepth": gw.delivery.queue.qsize(),
                "uptimeS": round(time.monotonic() - gw.started_at, 3),
            }
        )

    @app.get("/metrics", tags=["ops"], response_class=Response)
    async def metrics() -> Response:
        return Response(gw.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    @app.post(
        "/api/sessions",
        status_code=201,
        tags=["sessions"],
        responses={201: {"model": SessionCreated}, **_errors(400, 401, 503)},
    )
    async def create_session(payload: CreateSession, x_api_key: ApiKey = None) -> JSONResponse:
        gw.check_webhook_url(payload.webhook_url)
        try:
            session = gw.sessions.create(
                owner_key=x_api_key,
                webhook_url=payload.webhook_url,
                now=time.monotonic(),
                now_ms=int(time.time() * 1000),
            )
        except ApiError as refusal:
            if refusal.status_code == 503:
                gw.metrics.sessions_rejected.labels(reason="cap").inc()
            raise
        gw.metrics.sessions_created.inc()
        return JSONResponse(
            {"sessionId": session.id, "status": session.status(time.monotonic())},
            status_code=201,
        )

    @app.get(
        "/api/sessions/{session_id}",
        tags=["sessions"],
        responses={200: {"model": SessionInfo}, **_errors(401, 403, 404)},
    )
    async def get_session(session_id: str, x_api_key: ApiKey = None) -> JSONResponse:
        session = gw.sessions.get(session_id, x_api_key)
        return JSONResponse(
            {
                "sessionId": session.id,
                "status": session.status(time.monotonic()),
                "phone": session.phone,
                "createdAt": session.created_at_ms,
                "messagesSent": session.messages_sent,
                "subscribers": len(session.subscribers),
            }
        )

    @app.delete(
        "/api/sessions/{session_id}",
        tags=["sessions"],
        responses={200: {"model": SessionClosed}, **_errors(401, 403, 404)},
    )
    async def delete_session(session_id: str, x_api_key: ApiKey = None) -> JSONResponse:
        session = gw.sessions.get(session_id, x_api_key)
        gw.close_session(session, "deleted")
        return JSONResponse({"sessionId": session.id, "status": "closed"})

    @app.post(
        "/api/sessions/{session_id}/messages",
        status_code=202,
        tags=["messages"],
        responses={
            202: {"model": MessageQueued},
            **_errors(400, 401, 403, 404, 409, 413, 429, 503),
        },
    )
    async def send_message(
        session_id: str, payload: SendMessage, x_api_key: ApiKey = None
    ) -> JSONResponse:
        rejected = gw.metrics.messages["rejected"]
        try:
            session = gw.sessions.get(session_id, x_api_key)
            _validate_message(payload)
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
                    f"Above {gw.config.rate_limit:g} messages/s for this session.",
                    retry_after_s=wait_s,
                )
            message = OutboundMessage(
                id=gw.delivery.new_message_id(), session=session, to=payload.to, body=payload.body
            )
            if not gw.delivery.submit(message):
                raise ApiError(
                    503,
                    "queue_full",
                    f"The outbound queue is full ({gw.config.queue_size} messages).",
                    retry_after_s=1.0,
                )
        except ApiError as refusal:
            rejected.inc()
            gw.metrics.messages_rejected.labels(reason=refusal.code).inc()
            raise
        session.messages_sent += 1
        gw.leak.on_message_accepted()
        return JSONResponse({"messageId": message.id, "status": "queued"}, status_code=202)

    @app.post(
        "/api/webhook",
        tags=["webhook"],
        responses={200: {"model": WebhookAccepted}, **_errors(400, 401)},
    )
    async def webhook(event: WebhookEvent, x_api_key: ApiKey = None) -> JSONResponse:
        if config.require_api_key and not x_api_key:
            raise ApiError(401, "unauthorized", "X-Api-Key header is required.")
        message = event.message
        if not gw.remember_inbound(message.id):
            gw.metrics.webhook_events.labels(result="duplicate").inc()
            return JSONResponse({"received": True, "duplicate": True})
        gw.metrics.webhook_events.labels(result="processed").inc()
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
        return JSONResponse({"received": True, "duplicate": False})

    @app.websocket("/api/sessions/{session_id}/events")
    async def session_events(websocket: WebSocket, session_id: str) -> None:
        try:
            session = gw.sessions.get(session_id, websocket.headers.get("x-api-key"))
        except ApiError as refusal:
            # 4000 + HTTP status, the usual convention for application close codes.
            await websocket.close(code=4000 + refusal.status_code, reason=refusal.code)
            return
        await websocket.accept()
        session.used = True
        subscriber = gw.hub.subscribe(session)
        reader = asyncio.ensure_future(_drain_client(websocket))
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

    app.add_middleware(BodySizeLimit)
    if (
        config.latency_ms
        or config.latency_jitter_ms
        or config.error_rate
        or config.crash_after_requests
    ):
        app.add_middleware(FaultMiddleware, config=config, metrics=gw.metrics, rng=gw.rng)
    app.add_middleware(MetricsMiddleware, metrics=gw.metrics)
    return app


def _validate_message(payload: SendMessage) -> None:
    if not RECIPIENT.fullmatch(payload.to):
        raise ApiError(
            400,
            "invalid_recipient",
            "'to' must be 10 to 15 digits, optionally followed by '@c.us'.",
        )
    if not payload.body:
        raise ApiError(400, "empty_body", "'body' must not be empty.")
    if len(payload.body) * 4 > MAX_MESSAGE_BODY_BYTES and (
        len(payload.body.encode("utf-8", "surrogatepass")) > MAX_MESSAGE_BODY_BYTES
    ):
        raise ApiError(
            413, "body_too_large", f"'body' is larger than {MAX_MESSAGE_BODY_BYTES} bytes."
        )


async def _drain_client(websocket: WebSocket) -> None:
    """Read (and ignore) what the client sends, so that its disconnect is noticed."""
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
