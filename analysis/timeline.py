"""The run over time: HTTP requests in wall-clock windows, and the stages of the plan.

`Windows` counts every HTTP request (not `WS`) in the window of its due time (its intended
start in open-model runs, so a stall shows where arrivals waited): requests, failures and a
latency histogram. Windows are wall-clock aligned (`floor(t / width)`), so the windows of
several workers line up without a common start and add up exactly on the master. Their
histograms keep 2 significant digits (each value within 1 %): they draw the charts and judge
the stages; the run's and each request's percentiles come from the 3-digit histograms of
`analysis.latency`.

`StageTimeline` (master or local runner) notes when the shape enters each stage.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from typing import Any

import gevent
from hdrh.histogram import HdrHistogram

from analysis.latency import HIGHEST_US, LOWEST_US, record_us
from shapes.stage import StageMark

TIMELINE = "timeline.json"  # the run file these are kept in
WINDOW_DIGITS = 2
MOST_WINDOWS = 1000
NICE_WIDTHS_S = (0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600)


def window_width_for(planned_s: float | None) -> float:
    """The narrowest of `NICE_WIDTHS_S` that keeps the plan within 1000 windows: 0.1 s for a
    compressed run of a minute, 0.2 s for the 3-min stress ramp, 120 s for 24 h."""
    if not planned_s:
        return 0.5
    for width in NICE_WIDTHS_S:
        if planned_s / width <= MOST_WINDOWS:
            return float(width)
    return float(NICE_WIDTHS_S[-1])


def new_window_histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, WINDOW_DIGITS)


class Window:
    """Requests, failures and a latency histogram; kept encoded (a few hundred bytes instead of
    26 kB) once `compact()`ed, decoded again when read. The encoding is kept until the window
    changes (`touch()`), so a checkpoint re-encodes only the windows recorded into since the
    last one: encoding all of a 0.1 s run's live windows took the event loop 10-30 ms."""

    __slots__ = ("_encoded", "_histogram", "failures", "requests")

    def __init__(self) -> None:
        self.requests = 0
        self.failures = 0
        self._histogram: HdrHistogram | None = new_window_histogram()
        self._encoded: str | None = None

    @property
    def histogram(self) -> HdrHistogram:
        if self._histogram is None:
            self._histogram = new_window_histogram()
            self._histogram.decode_and_add(self._encoded)
        return self._histogram

    def touch(self) -> None:
        """The histogram changed: its encoding is out of date."""
        self._encoded = None

    @property
    def stale(self) -> bool:
        """Whether `encoded()` has to encode the histogram again."""
        return self._encoded is None

    def encoded(self) -> str:
        if self._encoded is None:
            assert self._histogram is not None
            self._encoded = self._histogram.encode().decode("ascii")
        return self._encoded

    def compact(self) -> None:
        if self._histogram is not None:
            self.encoded()
            self._histogram = None


class Windows:
    """`compact_after_s`: windows whose start is this much older than the newest are kept
    encoded, so that a long run's memory stays flat (1000 live windows would be 26 MB); late
    reports from workers (every 3 s) still land in live ones."""

    def __init__(self, width_s: float = 1.0, compact_after_s: float = 30.0) -> None:
        self.width_s = width_s
        self.compact_after_s = compact_after_s
        self.windows: dict[int, Window] = {}
        self._live: set[int] = set()
        self._newest = -math.inf

    def __bool__(self) -> bool:
        return bool(self.windows)

    def reset(self, width_s: float) -> None:
        self.width_s = width_s
        self.windows.clear()
        self._live.clear()
        self._newest = -math.inf

    def _window(self, index: int) -> Window:
        window = self.windows.get(index)
        if window is None:
            window = self.windows[index] = Window()
            if index > self._newest:
                self._newest = index
                self._compact()
        self._live.add(index)
        return window

    def _compact(self) -> None:
        oldest_live = self._newest - self.compact_after_s / self.width_s
        for index in [i for i in self._live if i < oldest_live]:
            self.windows[index].compact()
            self._live.discard(index)

    def record(self, due: float, latency_ms: float, failed: bool) -> None:
        window = self._window(math.floor(due / self.width_s))
        window.requests += 1
        window.failures += failed
        record_us(window.histogram, min(HIGHEST_US, max(LOWEST_US, round(latency_ms * 1000))))
        window.touch()

    def encode_finished(self, pause: Callable[[], None], batch: int = 10) -> None:
        """Encode the windows older than the newest whose encoding is out of date, `batch` at a
        time with `pause()` between, so that `encode()` then finds them ready: a checkpoint
        on the event loop blocks it in pieces of half a millisecond, not in one of a few."""
        stale = [w for i, w in self.windows.items() if i < self._newest and w.stale]
        for done, window in enumerate(stale, 1):
            window.encoded()
            if done % batch == 0:
                pause()

    def encode(self) -> dict[str, Any]:
        return {
            "width_s": self.width_s,
            "windows": {
                str(index): [w.requests, w.failures, w.encoded()]
                for index, w in sorted(self.windows.items())
            },
        }

    def add_encoded(self, data: dict[str, Any]) -> None:
        if data.get("width_s") != self.width_s:
            return  # a worker still on the previous run's width: nothing of this run
        for index, (requests, failures, text) in data["windows"].items():
            window = self._window(int(index))
            window.requests += requests
            window.failures += failures
            window.histogram.decode_and_add(text)
            window.touch()

    @classmethod
    def decode(cls, data: dict[str, Any]) -> Windows:
        windows = cls(float(data["width_s"]))
        windows.add_encoded(data)
        return windows

    def between(self, start: float, end: float) -> list[tuple[int, Window]]:
        """Windows whose start lies in [start, end)."""
        first, last = math.ceil(start / self.width_s), math.ceil(end / self.width_s)
        return [(i, w) for i, w in sorted(self.windows.items()) if first <= i < last]

    def coarse(self, at_least_s: float = 1.0) -> tuple[float, list[tuple[float, Window]]]:
        """The windows merged into wall-clock buckets of whole windows at least `at_least_s`
        wide, every bucket from the first to the last (an empty one is a second with no
        request, not a gap to draw across): (the bucket width, [(its start, its window)]).
        Rates over 0.2 s windows alias with the arrival engine's dealing; over a second they
        do not."""
        factor = max(1, math.ceil(at_least_s / self.width_s - 1e-9))
        width = factor * self.width_s
        groups: dict[int, list[Window]] = {}
        for index, window in sorted(self.windows.items()):
            groups.setdefault(index // factor, []).append(window)
        if not groups:
            return width, []
        buckets = range(min(groups), max(groups) + 1)
        return width, [(b * width, self.total(groups.get(b, ()))) for b in buckets]

    @staticmethod
    def total(windows: Iterable[Window]) -> Window:
        total = Window()
        for window in windows:
            total.requests += window.requests
            total.failures += window.failures
            total.histogram.add(window.histogram)
        return total


class StageTimeline:
    """Stage marks with their wall-clock start and end, polled from the shape 4 times a second."""

    def __init__(self, current: Callable[[], StageMark | None]) -> None:
        self.current = current
        self.stages: list[dict[str, Any]] = []
        self._greenlet: gevent.Greenlet | None = None

    def start(self) -> None:
        self.stop()
        self.stages = []
        self._greenlet = gevent.spawn(self._watch)

    def _watch(self) -> None:
        while True:
            self.note(time.time())
            gevent.sleep(0.25)

    def note(self, now: float) -> None:
        mark = self.current()
        if mark is None:
            return
        last = self.stages[-1] if self.stages else None
        if last is not None and last["index"] == mark.index and last["name"] == mark.name:
            last["ended"] = now
            return
        # Polled: the stage began `into_s` ago, not now (the plan's boundary, to the ms).
        started = max(now - mark.into_s, last["started"] if last else 0.0)
        if last is not None:
            last["ended"] = started
        self.stages.append(
            {**mark.as_dict(), "label": mark.label(), "started": started, "ended": now}
        )

    def stop(self, now: float | None = None) -> None:
        if self._greenlet is not None:
            self._greenlet.kill(block=False)
            self._greenlet = None
            if self.stages:
                self.stages[-1]["ended"] = now or time.time()
