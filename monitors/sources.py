"""What the resource monitor samples: a source of figures, and the greenlet that polls it.

A source is anything with a `name`, a `sample()` that returns its figures now (a dict of our
keys) and a `close()`: the gateway's process tree (psutil), its Prometheus endpoint, a remote
agent, a Node.js gateway's inspector. One error convention for all: a sample that failed
raises `SampleFailed` (the next may not: the message is a note for the report), a source that
will never answer again raises `SourceGone`; anything else a source raises is noted the same
way as a failed sample, so that no source stops the others.

Each source runs on its own greenlet (`SourceLoop`), keeping its latest sample: a slow one (an
inspector held by a heap snapshot for seconds) delays only its own figures, which the monitor's
tick then leaves out rather than repeating stale ones.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

import gevent

log = logging.getLogger("monitors")


class SampleFailed(Exception):
    """This sample failed; the next one may not. The message is the note."""


class SourceGone(Exception):
    """The source will give no more samples. The message is the note."""


class Source(Protocol):
    name: str

    def sample(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


def take(source: Source, note: Callable[[str], None]) -> dict[str, Any] | None:
    """One sample of `source`; None when it is gone. Failures become notes."""
    try:
        return source.sample()
    except SourceGone as exc:
        note(str(exc))
        return None
    except SampleFailed as exc:
        note(str(exc))
    except Exception as exc:  # a monitor outlives whatever one of its sources does
        log.debug("%s: sample failed", source.name, exc_info=True)
        note(f"{source.name}: sample failed: {type(exc).__name__}: {exc}")
    return {}


class SourceLoop:
    """`source` sampled every `interval_s` on its own greenlet; `fresh()` its latest sample."""

    def __init__(
        self, source: Source, interval_s: float, note: Callable[[str], None], started: float
    ) -> None:
        self.source = source
        self.interval_s = interval_s
        self.note = note
        self.latest: dict[str, Any] = {}
        self.taken_at = float("-inf")
        self.taken = False
        self.gone = False
        self.greenlet = gevent.spawn(self._run, started)

    def fresh(self, now: float) -> dict[str, Any]:
        """The latest sample, once, if it was taken within the last interval and a half: a
        source that fell behind leaves a gap in its figures, not a repeated value."""
        if self.taken or now - self.taken_at > 1.5 * self.interval_s:
            return {}
        self.taken = True
        return self.latest

    def _run(self, started: float) -> None:
        next_tick = started
        while True:
            sample = take(self.source, self.note)
            if sample is None:
                self.gone = True
                self.latest = {}
                return
            self.latest, self.taken_at, self.taken = sample, time.monotonic(), False
            next_tick += self.interval_s
            while next_tick < time.monotonic():  # a sample that took longer than a tick
                next_tick += self.interval_s
            gevent.sleep(next_tick - time.monotonic())

    def stop(self) -> None:
        self.greenlet.kill(block=True)
