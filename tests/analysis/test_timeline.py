"""The run over time: window widths, windows merged from workers, and the stage timeline."""

from __future__ import annotations

import itertools
import json
import math
import random
import time

import gevent
import pytest

from analysis.latency import HIGHEST_US, LOWEST_US
from analysis.timeline import (
    MOST_WINDOWS,
    NICE_WIDTHS_S,
    StageTimeline,
    Windows,
    window_width_for,
)
from shapes.stage import StageMark

T0 = 1_790_000_000.0
PERCENTILES = (50.0, 90.0, 95.0, 99.0, 100.0)


# --- widths --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("planned_s", "width"),
    [
        (60, 0.1),  # a compressed run of a minute
        (100, 0.1),  # exactly 1000 windows
        (100.5, 0.2),
        (180, 0.2),  # the 3-min stress ramp
        (500, 0.5),
        (3600, 5),
        (86_400, 120),  # 24 h
        (None, 0.5),
        (0, 0.5),
    ],
)
def test_window_width_for(planned_s: float | None, width: float) -> None:
    assert window_width_for(planned_s) == width


@pytest.mark.parametrize("planned_s", [1, 45, 99.9, 150, 240, 999, 1800, 7200, 43_200, 300_000])
def test_the_narrowest_nice_width_within_1000_windows(planned_s: float) -> None:
    width = window_width_for(planned_s)
    assert width in NICE_WIDTHS_S
    assert planned_s / width <= MOST_WINDOWS
    narrower = [w for w in NICE_WIDTHS_S if w < width]
    assert all(planned_s / w > MOST_WINDOWS for w in narrower)


def test_beyond_the_widest_width_the_widest_is_kept() -> None:
    assert window_width_for(30 * 86_400) == 600.0


# --- windows from several workers ----------------------------------------------------------


def requests(seed: int, count: int = 3000, span_s: float = 20.0) -> list[tuple[float, float, bool]]:
    rng = random.Random(seed)
    return [
        (T0 + rng.uniform(0, span_s), rng.lognormvariate(3.0, 0.8), rng.random() < 0.1)
        for _ in range(count)
    ]


def ranked(values: list[float], percentile: float) -> float:
    """The value at `percentile` as HdrHistogram ranks it: the round(p * n)-th smallest."""
    ordered = sorted(values)
    rank = max(1, int(percentile * len(ordered) / 100 + 0.5))
    return ordered[rank - 1]


def test_two_workers_merged_equal_one_recorder_that_saw_everything() -> None:
    seen = requests(seed=1)
    alone = Windows(0.5)
    workers = [Windows(0.5), Windows(0.5)]
    for number, (due, latency_ms, failed) in enumerate(seen):
        alone.record(due, latency_ms, failed)
        workers[number % 2].record(due, latency_ms, failed)

    master = Windows(0.5)
    for worker in workers:
        master.add_encoded(json.loads(json.dumps(worker.encode())))  # as it travels

    assert sorted(master.windows) == sorted(alone.windows)
    for index, window in alone.windows.items():
        merged = master.windows[index]
        assert (merged.requests, merged.failures) == (window.requests, window.failures)
        assert merged.histogram.get_total_count() == window.requests
        for p in PERCENTILES:
            assert merged.histogram.get_value_at_percentile(
                p
            ) == window.histogram.get_value_at_percentile(p)

    # ... and both match the truth computed from the requests themselves.
    truth: dict[int, list[tuple[float, bool]]] = {}
    for due, latency_ms, failed in seen:
        truth.setdefault(math.floor(due / 0.5), []).append((latency_ms, failed))
    assert sorted(truth) == sorted(master.windows)
    for index, entries in truth.items():
        window = master.windows[index]
        assert window.requests == len(entries)
        assert window.failures == sum(failed for _, failed in entries)
        latencies = [latency for latency, _ in entries]
        for p in PERCENTILES:
            got = window.histogram.get_value_at_percentile(p) / 1000
            assert got == pytest.approx(ranked(latencies, p), rel=0.01)  # 2 significant digits


def test_the_run_total_from_merged_windows() -> None:
    seen = requests(seed=2, count=2000)
    workers = [Windows(1.0) for _ in range(3)]
    for number, request in enumerate(seen):
        workers[number % 3].record(*request)
    master = Windows.decode(workers[0].encode())
    for worker in workers[1:]:
        master.add_encoded(worker.encode())
    total = Windows.total(w for _, w in master.between(T0, T0 + 20))
    assert total.requests == 2000
    assert total.failures == sum(failed for *_, failed in seen)
    latencies = [latency for _, latency, _ in seen]
    for p in PERCENTILES:
        got = total.histogram.get_value_at_percentile(p) / 1000
        assert got == pytest.approx(ranked(latencies, p), rel=0.01)


def test_a_worker_on_another_width_is_ignored() -> None:
    master = Windows(0.5)
    master.record(T0 + 0.2, 10.0, False)
    stale = Windows(1.0)
    for i in range(10):
        stale.record(T0 + i, 20.0, True)
    master.add_encoded(stale.encode())
    (index, window), *others = master.windows.items()
    assert (index, window.requests, window.failures, others) == (2 * int(T0), 1, 0, [])
    master.reset(1.0)  # the next run, on the worker's width
    assert not master
    master.add_encoded(stale.encode())
    assert sum(w.requests for w in master.windows.values()) == 10


def test_latencies_are_clamped_to_the_histogram_range() -> None:
    windows = Windows(1.0)
    windows.record(T0, 0.0, False)
    windows.record(T0, 10_000_000_000.0, True)  # beyond an hour
    histogram = windows.windows[int(T0)].histogram
    assert histogram.get_min_value() == LOWEST_US
    assert histogram.get_max_value() == pytest.approx(HIGHEST_US, rel=0.01)


# --- windows of a span ---------------------------------------------------------------------


def one_per_window(width: float, count: int) -> Windows:
    windows = Windows(width)
    for i in range(count):
        windows.record(T0 + (i + 0.5) * width, 10.0 * (i + 1), False)
    return windows


def test_a_windows_encoding_follows_every_change() -> None:
    """Encodings are kept between checkpoints; a window recorded into (or merged into, or
    decoded after compaction and recorded into again) must not ship its old encoding."""
    windows = Windows(1.0, compact_after_s=2.0)

    def counts() -> dict[str, int]:
        decoded = Windows.decode(json.loads(json.dumps(windows.encode())))
        return {i: w.histogram.get_total_count() for i, w in decoded.windows.items()}

    windows.record(T0, 10.0, False)
    assert counts() == {int(T0): 1}
    windows.record(T0 + 0.5, 20.0, False)
    assert counts() == {int(T0): 2}
    other = Windows(1.0)
    other.record(T0, 30.0, True)
    windows.add_encoded(other.encode())
    assert counts() == {int(T0): 3}
    windows.record(T0 + 5, 10.0, False)  # the first window is compacted
    windows.record(T0 + 0.1, 40.0, False)  # and recorded into again
    assert counts() == {int(T0): 4, int(T0) + 5: 1}
    assert windows.windows[int(T0)].failures == 1


def test_finished_windows_are_encoded_in_batches_with_a_pause_between() -> None:
    windows = one_per_window(0.1, 25)
    pauses: list[int] = []

    def pause() -> None:
        pauses.append(sum(not w.stale for w in windows.windows.values()))

    windows.encode_finished(pause, batch=10)
    assert pauses == [10, 20]  # the newest window may still be recorded into: left as it is
    assert [w.stale for _, w in sorted(windows.windows.items())] == [False] * 24 + [True]
    newest = max(windows.windows)
    windows.record((newest + 0.5) * 0.1, 5.0, False)
    windows.encode_finished(pause, batch=10)
    assert len(pauses) == 2  # nothing was out of date but the newest
    assert Windows.decode(windows.encode()).windows[newest].requests == 2


@pytest.mark.parametrize("width", [1.0, 0.5, 0.25])
def test_between_selects_windows_starting_in_the_span(width: float) -> None:
    windows = one_per_window(width, 10)
    first = int(T0 / width)

    def starts(start: float, end: float) -> list[int]:
        return [i - first for i, _ in windows.between(start, end)]

    assert starts(T0, T0 + 10 * width) == list(range(10))
    assert starts(T0 + 2 * width, T0 + 5 * width) == [2, 3, 4]  # end excluded
    # A window that began before the span is not in it, even if most of it is.
    assert starts(T0 + 1.75 * width, T0 + 5 * width) == [2, 3, 4]
    assert starts(T0 + 2 * width, T0 + 4.25 * width) == [2, 3, 4]
    assert starts(T0 + 2.25 * width, T0 + 2.75 * width) == []
    assert starts(T0 - 100 * width, T0 + 100 * width) == list(range(10))
    selected = windows.between(T0 + 3 * width, T0 + 4 * width)
    assert len(selected) == 1
    assert selected[0][1].histogram.get_max_value() / 1000 == pytest.approx(40.0, rel=0.01)


def test_consecutive_spans_split_the_windows_without_overlap() -> None:
    windows = one_per_window(1.0, 30)
    edges = [T0, T0 + 7.3, T0 + 15.0, T0 + 22.9, T0 + 30.0]
    parts = [windows.between(a, b) for a, b in itertools.pairwise(edges)]
    assert [len(p) for p in parts] == [8, 7, 8, 7]
    assert sum(w.requests for part in parts for _, w in part) == 30


# --- stages --------------------------------------------------------------------------------


class Plan:
    """A fake shape: `current()` gives whatever mark is set."""

    def __init__(self) -> None:
        self.mark: StageMark | None = None

    def current(self) -> StageMark | None:
        return self.mark


def test_stage_starts_are_now_minus_into_s() -> None:
    plan = Plan()
    timeline = StageTimeline(plan.current)
    timeline.note(1000.0)  # before the first stage: nothing
    assert timeline.stages == []

    plan.mark = StageMark(0, "warm-up", "users", 0, 50, into_s=0.25)
    timeline.note(1000.25)
    assert timeline.stages == [
        {
            "index": 0,
            "name": "warm-up",
            "unit": "users",
            "start": 0,
            "end": 50,
            "label": "warm-up: 0→50 users",
            "started": 1000.0,
            "ended": 1000.25,
        }
    ]
    plan.mark = StageMark(0, "warm-up", "users", 0, 50, into_s=10.5)
    timeline.note(1010.5)
    assert len(timeline.stages) == 1
    assert timeline.stages[0]["ended"] == 1010.5

    plan.mark = StageMark(1, "hold", "users", 50, 50, into_s=0.125)
    timeline.note(1020.125)
    first, second = timeline.stages
    assert second["started"] == 1020.0
    assert first["ended"] == 1020.0  # the previous stage ends where the next starts
    assert (second["label"], second["ended"]) == ("hold: 50 users", 1020.125)

    plan.mark = None  # between polls the shape may say nothing: nothing changes
    timeline.note(1021.0)
    assert timeline.stages[-1]["ended"] == 1020.125

    plan.mark = StageMark(2, "spike", "arrivals/s", 10, 200, into_s=0.75)
    timeline.note(1031.0)
    assert [(s["started"], s["ended"]) for s in timeline.stages] == [
        (1000.0, 1020.0),
        (1020.0, 1030.25),
        (1030.25, 1031.0),
    ]
    assert "into_s" not in timeline.stages[-1]


def test_a_stage_never_starts_before_the_previous_one() -> None:
    plan = Plan()
    timeline = StageTimeline(plan.current)
    plan.mark = StageMark(0, "a", "users", 1, 1, into_s=0.0)
    timeline.note(50.0)
    plan.mark = StageMark(1, "b", "users", 2, 2, into_s=30.0)  # claims it began at 20
    timeline.note(60.0)
    assert [(s["started"], s["ended"]) for s in timeline.stages] == [(50.0, 50.0), (50.0, 60.0)]


def test_a_new_name_at_the_same_index_is_a_new_stage() -> None:
    plan = Plan()
    timeline = StageTimeline(plan.current)
    plan.mark = StageMark(0, "burst", "users", 10, 10, into_s=0.0)
    timeline.note(5.0)
    plan.mark = StageMark(0, "rest", "users", 1, 1, into_s=0.5)
    timeline.note(7.0)
    assert [(s["name"], s["started"], s["ended"]) for s in timeline.stages] == [
        ("burst", 5.0, 6.5),
        ("rest", 6.5, 7.0),
    ]


def test_the_polling_greenlet_notes_stages_and_stop_ends_the_last() -> None:
    plan = Plan()
    plan.mark = StageMark(0, "only", "users", 5, 5, into_s=2.0)
    timeline = StageTimeline(plan.current)
    before = time.time()
    timeline.start()
    gevent.sleep(0.01)  # the watcher notes the stage at once
    timeline.stop(now=before + 100.0)
    after = time.time()
    assert len(timeline.stages) == 1
    stage = timeline.stages[0]
    assert before - 2.0 <= stage["started"] <= after - 2.0
    assert stage["ended"] == before + 100.0


def test_a_late_request_in_a_compacted_window_is_counted_and_the_newest_still_found() -> None:
    """A window compacted meanwhile (older than `compact_after_s`) still takes a late request,
    the newest goes on counting, and each count lands where it is due."""
    windows = Windows(width_s=1.0, compact_after_s=30.0)
    windows.record(0.5, 10.0, False)
    windows.record(0.7, 20.0, True)
    windows.record(40.2, 30.0, False)  # compacts window 0
    windows.record(0.9, 40.0, False)  # late, into the compacted one
    windows.record(40.4, 50.0, True)  # the newest again
    first, newest = windows.windows[0], windows.windows[40]
    assert (first.requests, first.failures, first.histogram.get_total_count()) == (3, 1, 3)
    assert (newest.requests, newest.failures, newest.histogram.get_total_count()) == (2, 1, 2)
    windows.reset(1.0)
    windows.record(40.5, 1.0, False)
    assert windows.windows[40].requests == 1  # nothing of the run before the reset
