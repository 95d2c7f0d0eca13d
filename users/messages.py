"""Message sender: its own session, then `{"to": <a number>, "body"}` per iteration.

The number is one of `--recipients`, or the plan's random "55119" + 9 digits where the run
allows made-up numbers (`users.numbers`).

On start it creates a session and polls its status until it is ready (bounded by
`ready_timeout_s`, not a blind sleep), then, when `track_delivery` is on (the default), opens
the session's WebSocket event stream and matches acks to message ids: the time from the send's
202 to ack 2 ("device") is recorded as its own request type, `WS message delivered`; ack -1 and
messages not delivered within `delivery_timeout_s` are failures of that type, which is the
delivery rate. A 429 honours `Retry-After` (then backs off with jitter, up to `max_retries`
times) and is recorded under its own name, `... (throttled)`, as a success: throttling is
visible on its own, not hidden among the failures; a send still throttled after the last retry
is a failure. On stop it waits (bounded) for the acks still due, then deletes its session
(counted as `sessions_deleted`), unless the run was told `--keep-sessions`.

Counters: sessions_attempted/created, messages_accepted/throttled/refused/delivered/failed/
undelivered,
websocket_connected/failed, and the gauge websocket_open.
"""

from __future__ import annotations

import contextlib
import json
import random
import time
from typing import Any

import gevent
import websocket

from users.base import ScenarioUser

MAX_EARLY_ACKS = 10_000
DELIVERED = "message delivered"


class MessageSender(ScenarioUser):
    abstract = False
    sends_to_numbers = True
    needs = ("create_session", "session_status", "send_message", "delete_session")

    def on_start(self) -> None:
        self.key = self.api_key(self.option("api_key", "test-key-{random}"))
        self.session_id: str | None = None
        self.pending: dict[str, float] = {}  # message id -> when its 202 came back
        # Acks that came before their send's 202 was read (a busy generator reads the socket
        # late): message id -> ack code, matched when the 202 is read.
        self.early: dict[str, object] = {}
        self.socket: websocket.WebSocket | None = None
        self.reader: gevent.Greenlet | None = None
        self.delivery_timeout_s = float(self.option("delivery_timeout_s", 30))
        # Before any request: without a number it may send to, it creates no session either
        # (and on_stop, which Locust still calls, finds nothing to clean up).
        self.numbers = self.phone_numbers()
        self.session_id = self._create_session()
        if self.session_id and self._wait_ready(float(self.option("ready_timeout_s", 30))):
            if self.option("track_delivery", True):
                self._subscribe()
        else:
            self.session_id = None

    def iteration(self) -> None:
        if self.session_id is None:
            # No session: nothing to send with. Do not spin: wait as a failed user would.
            gevent.sleep(1.0)
            return
        self._expire_pending()
        recipient = self.numbers.pick()
        retries = int(self.option("max_retries", 20))
        for attempt in range(retries + 1):
            with self.call(
                "send_message",
                self.key,
                session_id=self.session_id,
                recipient=recipient,
                text=f"Test message {random.randrange(10**6)}",
            ) as response:
                if response.status_code == 202:
                    message_id = _json(response).get(self.profile.fields["message_id"])
                    response.success()
                    self.count("messages_accepted")
                    if message_id and self.socket is not None:
                        self.pending[str(message_id)] = time.perf_counter()
                        if str(message_id) in self.early:
                            self._acked(str(message_id), self.early.pop(str(message_id)))
                    return
                if response.status_code != 429:
                    response.failure(self.failure_reason(response))
                    self.count("messages_refused")
                    return
                self.count("messages_throttled")
                if attempt == retries:
                    response.failure(f"throttled {retries + 1} times, gave up")
                    self.count("messages_refused")
                    return
                response.request_meta["name"] += " (throttled)"
                response.success()
                wait_s = _backoff(_retry_after(response), attempt)
            gevent.sleep(wait_s)

    def on_stop(self) -> None:
        deadline = time.monotonic() + min(self.delivery_timeout_s, 10.0)
        while self.pending and self.socket is not None and time.monotonic() < deadline:
            gevent.sleep(0.05)
        self._expire_pending(force=True)
        if self.reader is not None:
            self.reader.kill(block=False)
        if self.socket is not None:
            with contextlib.suppress(Exception):
                self.socket.close()
            self.socket = None
            self.count("websocket_open", -1)
        keep = getattr(self.environment.parsed_options, "keep_sessions", False)
        if self.session_id is not None and not keep:
            with self.call("delete_session", self.key, session_id=self.session_id) as response:
                if response.status_code in (200, 204, 404):
                    response.success()
                    self.count("sessions_deleted")

    # --- session -------------------------------------------------------------------------------

    def _create_session(self) -> str | None:
        self.count("sessions_attempted")
        with self.call("create_session", self.key, api_key=self.key) as response:
            session_id = _json(response).get(self.profile.fields["session_id"])
            if response.status_code in (200, 201) and session_id:
                response.success()
                self.count("sessions_created")
                return str(session_id)
            response.failure(self.failure_reason(response))
            return None

    def _wait_ready(self, timeout_s: float) -> bool:
        fields = self.profile.fields
        deadline = time.monotonic() + timeout_s
        delay = 0.05
        while time.monotonic() < deadline:
            with self.call("session_status", self.key, session_id=self.session_id) as response:
                if response.status_code != 200:
                    response.failure(self.failure_reason(response))
                    return False
                response.success()
                if _json(response).get(fields["session_status"]) == fields["ready_status"]:
                    return True
            gevent.sleep(delay)
            delay = min(1.0, delay * 2)
        self.count("sessions_never_ready")
        return False

    # --- delivery tracking ---------------------------------------------------------------------

    def _subscribe(self) -> None:
        url = self.host.replace("http://", "ws://", 1).replace("https://", "wss://", 1)
        url = url.rstrip("/") + self.profile.events(session_id=self.session_id)
        started = time.perf_counter()
        try:
            self.socket = websocket.create_connection(
                url, header=[f"{self.profile.api_key_header}: {self.key}"], timeout=10
            )
        except Exception as exc:
            self._report("WS connect", started, exc)
            self.count("websocket_failed")
            return
        self._report("WS connect", started, None)
        self.count("websocket_connected")
        self.count("websocket_open", 1)
        self.socket.settimeout(None)
        self.reader = gevent.spawn(self._read_events)

    def _read_events(self) -> None:
        fields = self.profile.fields
        socket = self.socket
        assert socket is not None
        while True:
            try:
                frame = socket.recv()
            except Exception:
                return
            if not frame:
                return
            try:
                event = json.loads(frame)
            except ValueError:
                continue
            if (
                not isinstance(event, dict)
                or event.get(fields["event_type"]) != fields["ack_event"]
            ):
                continue
            message_id = str(event.get(fields["ack_message_id"]))
            ack = event.get(fields["ack_code"])
            if ack not in (fields["delivered_ack"], fields["failed_ack"]):
                continue
            if message_id in self.pending:
                self._acked(message_id, ack)
            elif len(self.early) < MAX_EARLY_ACKS:
                self.early[message_id] = ack

    def _acked(self, message_id: str, ack: object) -> None:
        """A final ack: delivered (2) or failed (-1); the time from the 202 to it, or 0 when
        the ack was read first."""
        accepted = self.pending.pop(message_id)
        if ack == self.profile.fields["delivered_ack"]:
            self._report(DELIVERED, accepted, None)
            self.count("messages_delivered")
        else:
            self._report(DELIVERED, accepted, RuntimeError("ack -1"))
            self.count("messages_failed")

    def _expire_pending(self, force: bool = False) -> None:
        now = time.perf_counter()
        for message_id, accepted in list(self.pending.items()):
            if force or now - accepted > self.delivery_timeout_s:
                del self.pending[message_id]
                error = TimeoutError(f"not delivered within {self.delivery_timeout_s:g} s")
                self._report(DELIVERED, accepted, error)
                self.count("messages_undelivered")

    def _report(self, name: str, started: float, exception: Exception | None) -> None:
        self.environment.events.request.fire(
            request_type="WS",
            name=name,
            response_time=(time.perf_counter() - started) * 1000,
            response_length=0,
            exception=exception,
            context={},
        )


def _json(response: Any) -> dict[str, Any]:
    try:
        body = response.json()
    except Exception:
        return {}
    return body if isinstance(body, dict) else {}


def _backoff(retry_after_s: float, attempt: int) -> float:
    """At least what Retry-After asks; then jittered, so that throttled senders of one
    session do not all come back in the same instant and collide again."""
    spread = min(5.0, retry_after_s * 2**attempt)
    return retry_after_s + random.uniform(0, spread)


def _retry_after(response: Any) -> float:
    body = _json(response)
    if isinstance(body.get("retryAfterMs"), int | float):
        return max(0.0, body["retryAfterMs"] / 1000)
    try:
        return max(0.0, float(response.headers.get("Retry-After", 1)))
    except (TypeError, ValueError):
        return 1.0
