"""What the three stand-ins share: flags, serving on loopback, pairing and ack timers, webhook
posting (to loopback only) and the record a test reads at `GET /_standin/record`.

Each stand-in module builds a Starlette app from its flags (`create_app(args)`) and serves it
with `run(...)`, which prints `<name> stand-in listening on http://127.0.0.1:PORT` first, the
line `GatewayProcess` waits for.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import random
import secrets
import sys
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable
from contextlib import AbstractAsyncContextManager as AsyncContextManager
from typing import Any
from urllib.parse import urlsplit

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from gateway.__main__ import bind, serve_app
from gateway.state import is_loopback_host

# Ack levels as the stand-ins schedule them; each names them its own way (WAHA's `ack` numbers,
# Evolution's SERVER_ACK/DELIVERY_ACK, wppconnect's ack codes).
ACK_ERROR, ACK_SERVER, ACK_DEVICE = -1, 1, 2
# The phone number a paired stand-in session claims as its own (`me`): it never receives.
OWN_NUMBER = "5500000000000"
WEBHOOK_WORKERS = 4
WEBHOOK_BACKLOG = 10_000
WEBHOOK_TIMEOUT_S = 5.0

log = logging.getLogger("standins")


def standin_parser(kind: str, description: str | None) -> argparse.ArgumentParser:
    """The flags every stand-in takes; its module adds its own."""
    parser = argparse.ArgumentParser(
        prog=f"python -m tests.standins.{kind}",
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common_flags(parser)
    return parser


def add_common_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="a loopback address (only)")
    parser.add_argument("--port", type=int, default=0, help="0: a free port, printed")
    parser.add_argument(
        "--paired", action="store_true", help="sessions become ready, as with a scanned QR code"
    )
    parser.add_argument("--pair-delay-s", type=float, default=0.2, help="create to ready")
    parser.add_argument("--server-ack-ms", type=float, default=5.0, help="send to server ack")
    parser.add_argument("--device-ack-ms", type=float, default=20.0, help="send to device ack")
    parser.add_argument(
        "--fail-ratio", type=float, default=0.0, help="share of messages acked as failed"
    )
    parser.add_argument("--seed", type=int, help="for --fail-ratio: the same failures each run")
    parser.add_argument(
        "--record-limit", type=int, default=100_000, help="accepted messages kept in the record"
    )
    parser.add_argument("--log-level", default="warning")


def parse_flags(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    args = parser.parse_args(argv)
    if not is_loopback_host(args.host):
        parser.error(f"--host {args.host} is not a loopback address: stand-ins serve loopback only")
    if not 0.0 <= args.fail_ratio <= 1.0:
        parser.error("--fail-ratio must be between 0 and 1")
    for name in ("pair_delay_s", "server_ack_ms", "device_ack_ms"):
        if getattr(args, name) < 0:
            parser.error(f"--{name.replace('_', '-')} must not be negative")
    args.url = f"http://{args.host}:{args.port}"  # the real port once bound (`run`)
    return args


def run(create_app: Callable[[argparse.Namespace], ASGIApp], args: argparse.Namespace,
        name: str) -> None:  # fmt: skip
    """Bind, build the app (which may want its own URL: `args.url`), serve in the foreground
    until SIGTERM/SIGINT."""
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr)
    sock = bind(args.host, args.port)
    args.url = "http://{}:{}".format(*sock.getsockname()[:2])
    serve_app(create_app(args), sock, log_level=args.log_level, label=f"{name} stand-in")


class Background:
    """Tasks started and not awaited (socket.io emits): kept referenced until done."""

    def __init__(self) -> None:
        self.tasks: set[asyncio.Task[Any]] = set()

    def start(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.ensure_future(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)


def message_id() -> str:
    """An id shaped as Baileys makes them (`generateMessageIDV2`): 3EB0 and 18 hex digits."""
    return "3EB0" + secrets.token_hex(9).upper()


def digits(number: str) -> str:
    """The phone number of a recipient as the record keeps it: `5511...@c.us` -> `5511...`."""
    return number.split("@", 1)[0].lstrip("+")


def iso_now() -> str:
    """`2026-12-01T23:46:42.607Z`, as Node's `Date.toISOString()`."""
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"


async def json_body(request: Request) -> Any:
    """The request's JSON body, or None when it is empty or not JSON (each stand-in answers
    that its own way)."""
    raw = await request.body()
    if not raw:
        return {}
    try:
        return json.loads(raw)
    except ValueError:
        return None


async def json_object(request: Request) -> dict[str, Any]:
    """The request's JSON object, or {} for anything else (the real one reads fields of it)."""
    body = await json_body(request)
    return body if isinstance(body, dict) else {}


def lifespan_with(
    webhooks: WebhookSender, *loops: Callable[[], Coroutine[Any, Any, None]]
) -> Callable[[Any], AsyncContextManager[None]]:
    """A Starlette lifespan: webhook workers (and `loops`, run as tasks) while serving."""

    @contextlib.asynccontextmanager
    async def lifespan(_: Any) -> AsyncIterator[None]:
        await webhooks.start()
        tasks = [asyncio.create_task(loop()) for loop in loops]
        yield
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await webhooks.stop()

    return lifespan


def answer(payload: Any, status_code: int = 200) -> Response:
    return JSONResponse(payload, status_code=status_code)


class Session:
    """One session of a stand-in. Its timers (pairing, acks) fire only while it is alive and
    not restarted since: a deleted or stopped session gets no late acks, as on a real gateway."""

    def __init__(self, name: str, state: str) -> None:
        self.name = name
        self.state = state
        self.alive = True
        self.generation = 0
        self.created_at = time.time()

    def later(self, delay_s: float, callback: Callable[..., None], *args: Any) -> None:
        loop = asyncio.get_running_loop()
        loop.call_later(delay_s, self._fire, self.generation, callback, args)

    def cancel_timers(self) -> None:
        self.generation += 1

    def _fire(self, generation: int, callback: Callable[..., None], args: tuple[Any, ...]) -> None:
        if self.alive and generation == self.generation:
            callback(*args)


class Record:
    """What a stand-in did, for the test that drove it (`GET /_standin/record`): sessions
    created and deleted, every accepted and refused send with its recipient, webhooks."""

    def __init__(self, gateway: str, limit: int, current: Callable[[], Iterable[str]]) -> None:
        self.gateway = gateway
        self.current = current
        self.messages: deque[dict[str, Any]] = deque(maxlen=max(1, limit))
        self.clear()

    def clear(self) -> None:
        self.sessions_created = 0
        self.sessions_deleted = 0
        self.accepted = 0
        self.messages.clear()
        self.recipients: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()  # recipient -> sends refused (not ready, ...)
        self.webhooks: Counter[str] = Counter()  # posted, failed, dropped, refused
        self.refused_urls: set[str] = set()

    def session_created(self) -> None:
        self.sessions_created += 1

    def session_deleted(self) -> None:
        self.sessions_deleted += 1

    def message(self, session: str, recipient: str, message_id: str) -> None:
        self.accepted += 1
        self.recipients[digits(recipient)] += 1
        self.messages.append({"session": session, "recipient": digits(recipient), "id": message_id})

    def refusal(self, recipient: str) -> None:
        self.refused[digits(recipient)] += 1

    def as_dict(self) -> dict[str, Any]:
        current = sorted(self.current())
        return {
            "gateway": self.gateway,
            "sessions": {
                "created": self.sessions_created,
                "deleted": self.sessions_deleted,
                "current": current,
                "count": len(current),
            },
            "messages": {
                "accepted": self.accepted,
                "recipients": dict(self.recipients),
                "refused": dict(self.refused),
                "last": list(self.messages),
            },
            "webhooks": {**self.webhooks, "refused_urls": sorted(self.refused_urls)},
        }


def record_route(record: Record) -> Route:
    """`GET /_standin/record` (`?clear` also forgets what it returns)."""

    async def read(request: Request) -> Response:
        payload = record.as_dict()
        if "clear" in request.query_params:
            record.clear()
        return answer(payload)

    return Route("/_standin/record", read, methods=["GET"])


class Acks:
    """When a paired session's accepted message is acked: server ack, then device ack, or
    one failure ack for a `--fail-ratio` share of messages."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.server_s = args.server_ack_ms / 1000
        self.device_s = max(args.device_ack_ms, args.server_ack_ms) / 1000
        self.fail_ratio = args.fail_ratio
        self.rng = random.Random(args.seed)

    def schedule(self, session: Session, deliver: Callable[[int], None]) -> None:
        if self.fail_ratio and self.rng.random() < self.fail_ratio:
            session.later(self.server_s, deliver, ACK_ERROR)
            return
        session.later(self.server_s, deliver, ACK_SERVER)
        session.later(self.device_s, deliver, ACK_DEVICE)


class WebhookSender:
    """POSTs JSON events to the URLs sessions gave, through a bounded queue and a few workers
    (so one event may overtake another, as with the real gateways' concurrent posts); a URL
    off loopback is refused (counted, never contacted): load stays on this machine."""

    def __init__(self, record: Record) -> None:
        self.record = record
        self.queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue(maxsize=WEBHOOK_BACKLOG)
        self.workers: list[asyncio.Task[None]] = []
        self.client: httpx.AsyncClient | None = None

    def post(self, url: str, payload: Any) -> None:
        if not is_loopback_host(urlsplit(url).hostname or ""):
            if url not in self.record.refused_urls:
                log.warning("stand-in: webhook %s is not on loopback: not posted", url)
            self.record.refused_urls.add(url)
            self.record.webhooks["refused"] += 1
            return
        try:
            self.queue.put_nowait((url, json.dumps(payload, separators=(",", ":")).encode()))
        except asyncio.QueueFull:
            self.record.webhooks["dropped"] += 1

    async def start(self) -> None:
        self.client = httpx.AsyncClient(timeout=WEBHOOK_TIMEOUT_S)
        self.workers = [asyncio.create_task(self._work()) for _ in range(WEBHOOK_WORKERS)]

    async def stop(self) -> None:
        for task in self.workers:
            task.cancel()
        await asyncio.gather(*self.workers, return_exceptions=True)
        if self.client is not None:
            await self.client.aclose()

    async def _work(self) -> None:
        assert self.client is not None
        while True:
            url, body = await self.queue.get()
            try:
                response = await self.client.post(
                    url, content=body, headers={"Content-Type": "application/json"}
                )
            except httpx.HTTPError:
                self.record.webhooks["failed"] += 1
            else:
                self.record.webhooks["posted" if response.status_code < 400 else "failed"] += 1
