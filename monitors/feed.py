"""One payload published at a time, and every viewer woken for it (Server-Sent Events).

A payload is built once, by its publisher, however many viewers there are; each viewer's
stream is a greenlet asleep until the next one (or a keep-alive comment, so that proxies and
browsers do not drop a quiet stream).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

from gevent.event import Event

KEEPALIVE_S = 15.0


class Feed:
    """The latest payload, and a wake-up for every stream waiting for the next one."""

    def __init__(self) -> None:
        self.seq = 0
        self.payload: dict[str, Any] | None = None
        self.closed = False
        self._event = Event()

    def publish(self, payload: dict[str, Any]) -> None:
        self.seq += 1
        self.payload = payload
        self._wake()

    def close(self) -> None:
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        event, self._event = self._event, Event()
        event.set()

    def next(self, seq: int, timeout: float) -> tuple[int, dict[str, Any] | None]:
        """The payload after `seq` (None when `timeout` passes first, or on close)."""
        if self.seq == seq and not self.closed:
            self._event.wait(timeout)
        if self.seq == seq or self.closed:
            return seq, None
        return self.seq, self.payload


def sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":"), default=str).encode() + b"\n\n"


def stream(
    feed: Feed,
    first: Callable[[dict[str, Any]], dict[str, Any]] = lambda payload: payload,
    keepalive_s: float = KEEPALIVE_S,
) -> Iterator[bytes]:
    """A viewer's events: the latest payload as `first()` makes it (with what a new viewer
    needs, such as the history so far), then each new one, until the feed closes."""
    seq = 0
    if feed.payload is not None:
        seq = feed.seq
        yield sse(first(feed.payload))
    else:
        yield b": waiting for the first payload\n\n"
    while not feed.closed:
        seq, payload = feed.next(seq, keepalive_s)
        if payload is not None:
            yield sse(payload)
        elif not feed.closed:
            yield b": keep-alive\n\n"
