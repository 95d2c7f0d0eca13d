"""Message sender: one session, then one text message per iteration to a number it may use.

The number is one of `--recipients`, or the plan's random "55119" + 9 digits where the run
allows made-up numbers (`users.numbers`).

On start it takes a session: one the user named (`--sessions`, never created nor deleted by
the suite), or a new one it creates. It polls the session's state until the profile says it
is ready (bounded by `ready_timeout_s`, not a blind sleep); a state the profile calls failed
ends the wait at once. A session that never gets ready is named with its last state; when it
was one the user named, the run stops there, having sent nothing (`suite_session_unready`).

With `track_delivery` on (the default) it opens the profile's ack channels (`users.acks`):
the time from the send's answer to the ack that the message reached the device is recorded as
its own request type, `WS message delivered`; a failed ack and messages not delivered within
`delivery_timeout_s` are failures of that type, which is the delivery rate. A throttled answer
(429 by default) honours the profile's retry-after field or `Retry-After` (then backs off with
jitter, up to `max_retries` times) and is recorded under its own name, `... (throttled)`, as a
success: throttling is visible on its own, not hidden among the failures; a send still
throttled after the last retry is a failure. On stop it waits (bounded) for the acks still
due, then deletes the session it created (`users.cleanup`), unless `--keep-sessions`.

Counters: sessions_attempted/created/never_ready/failed, messages_accepted/throttled/refused/
delivered/failed/undelivered, websocket_connected/failed, and the gauge websocket_open.
"""

from __future__ import annotations

import random
import time
from typing import Any

import gevent

from users.acks import AckChannels
from users.base import ScenarioUser

UNREADY_EVENT = "suite_session_unready"


class MessageSender(ScenarioUser):
    abstract = False
    sends_to_numbers = True
    needs = ("session_status", "send_message")
    creates_sessions = True  # unless the user named sessions (--sessions)

    def on_start(self) -> None:
        self.session_id: str | None = None
        self.channels: AckChannels | None = None
        self.delivery_timeout_s = float(self.option("delivery_timeout_s", 30))
        # Before any request: without a number it may send to, it creates no session either
        # (and on_stop, which Locust still calls, finds nothing to clean up).
        self.numbers = self.phone_numbers()
        self.send_spec = self.profile.requests["send_message"]
        values = self.session_values()
        named = self.named_session()
        if named is not None:
            values["session_name"] = values["session_id"] = named
        headers = self.authenticate(values)
        if headers is None:
            return
        self.values, self.headers = values, headers
        track = bool(self.option("track_delivery", True)) and bool(self.profile.ack_channels)
        if track:
            self.channels = AckChannels(self, self.delivery_timeout_s)
            values["webhook_url"] = self.channels.webhook_url()
        else:
            values["webhook_url"] = self.unrouted_webhook_url()
        if named is None:
            self.count("sessions_attempted")
            if not self.create_session(values, headers):
                return
        ready, state = self._wait_ready(float(self.option("ready_timeout_s", 30)))
        if not ready:
            self._not_ready(values["session_id"], state, named is not None)
            return
        self.session_id = values["session_id"]
        if self.channels is not None:
            self.channels.open(values, headers, registered=named is None)

    def named_session(self) -> str | None:
        """The next of the sessions the user named (`--sessions`), if any."""
        names = getattr(self.environment, "named_sessions", None)
        return next(names) if names is not None else None

    def iteration(self) -> None:
        if self.session_id is None:
            # No session: nothing to send with. Do not spin: wait as a failed user would.
            gevent.sleep(1.0)
            return
        if self.channels is not None:
            self.channels.expire()
        spec = self.send_spec
        values = self.values  # this user's own: filled anew for each message, not copied
        values["recipient"] = self.numbers.pick()
        values["text"] = f"Test message {random.randrange(10**6)}"
        retries = int(self.option("max_retries", 20))
        for attempt in range(retries + 1):
            with self.call("send_message", values, self.headers) as response:
                status = response.status_code
                if status in spec.success:
                    response.success()
                    self.count("messages_accepted")
                    message_id = spec.read("message_id", self.answer(response))
                    if message_id and self.channels is not None:
                        self.channels.sent(str(message_id))
                    return
                if status not in spec.model.throttled:
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
                wait_s = _backoff(self._retry_after(response), attempt)
            gevent.sleep(wait_s)

    def on_stop(self) -> None:
        if self.channels is not None:
            self.channels.close(min(self.delivery_timeout_s, 10.0))
            self.channels = None
        self.delete_own_sessions()

    # --- session -------------------------------------------------------------------------------

    def _wait_ready(self, timeout_s: float) -> tuple[bool, Any]:
        """(ready, last state seen): polls until ready, a failed state, or the timeout."""
        spec = self.profile.requests["session_status"]
        ready, failed = spec.model.ready, spec.model.failed
        deadline = time.monotonic() + timeout_s
        delay, state = 0.05, None
        while time.monotonic() < deadline:
            with self.call("session_status", self.values, self.headers) as response:
                if response.status_code not in spec.success:
                    response.failure(self.failure_reason(response))
                    return False, f"HTTP {response.status_code}"
                response.success()
                state = spec.read("state", self.answer(response))
            if state in ready:
                return True, state
            if state in failed:
                return False, state
            gevent.sleep(delay)
            delay = min(1.0, delay * 2)
        return False, state

    def _not_ready(self, session: str, state: Any, named: bool) -> None:
        spec = self.profile.requests["session_status"]
        ready = ", ".join(str(v) for v in spec.model.ready)
        if state in spec.model.failed:
            self.count("sessions_failed")
            reason = f"session {session!r} failed: {state}"
        else:
            self.count("sessions_never_ready")
            reason = f"session {session!r} not ready: {state} (ready is {ready})"
        self.report("session ready", exception=RuntimeError(reason))
        if named:
            hook = getattr(self.environment.events, UNREADY_EVENT, None)
            if hook is not None:
                hook.fire(session=session, state=state, ready=list(spec.model.ready))

    def _retry_after(self, response: Any) -> float:
        wait_ms = self.send_spec.read("retry_after_ms", self.answer(response))
        if isinstance(wait_ms, int | float) and not isinstance(wait_ms, bool):
            return max(0.0, wait_ms / 1000)
        try:
            return max(0.0, float(response.headers.get("Retry-After", 1)))
        except (TypeError, ValueError):
            return 1.0


def _backoff(retry_after_s: float, attempt: int) -> float:
    """At least what the gateway asks; then jittered, so that throttled senders of one
    session do not all come back in the same instant and collide again."""
    spread = min(5.0, retry_after_s * 2**attempt)
    return retry_after_s + random.uniform(0, spread)
