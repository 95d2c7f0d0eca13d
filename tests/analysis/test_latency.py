"""Lossless latency histograms, and the arrivals' bookkeeping helpers (weights and counters)."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hdrh.histogram import HdrHistogram

from analysis.latency import (
    AGGREGATED,
    HIGHEST_US,
    LOWEST_US,
    LatencyBook,
    describe,
    merged,
    percentiles,
    record_us,
)
from shapes.arrivals import ArrivalCounters, WeightedChoice

SUMMARY_KEYS = {
    "count",
    "min_ms",
    "mean_ms",
    "max_ms",
    "p50_ms",
    "p90_ms",
    "p95_ms",
    "p99_ms",
    "p99_9_ms",
}


def p(book: LatencyBook, key: str, percentile: float, kind: str = "latency") -> float:
    return book.get(key, kind).get_value_at_percentile(percentile) / 1000


# --- fast paths: exactly what hdrh's own methods give -------------------------------------


@pytest.mark.parametrize("digits", [2, 3])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_fast_record_and_read_equal_hdrh(digits: int, seed: int) -> None:
    rng = random.Random(seed)
    fast, reference = (HdrHistogram(LOWEST_US, HIGHEST_US, digits) for _ in range(2))
    # Values across the whole range: sub-millisecond, a 50 ms server, stalls, the top.
    values = [rng.choice([1, 2, 999, 1000, 1023, 1024, 2047, 2048, HIGHEST_US]) for _ in range(9)]
    values += [int(rng.lognormvariate(10.8, 1.5)) for _ in range(3000)]
    values += [min(HIGHEST_US, int(rng.expovariate(1e-7))) for _ in range(200)]
    for v in values:
        v = max(LOWEST_US, min(HIGHEST_US, v))
        record_us(fast, v)
        reference.record_value(v)
    assert list(fast.counts) == list(reference.counts)
    assert (fast.total_count, fast.min_value, fast.max_value) == (
        reference.total_count, reference.min_value, reference.max_value,
    )  # fmt: skip
    ps = [0.0, 1.0, 25.0, 50.0, 90.0, 95.0, 99.0, 99.9, 99.99, 100.0]
    assert percentiles(reference, ps) == [reference.get_value_at_percentile(q) for q in ps]
    summary = describe(reference)
    assert summary["mean_ms"] == round(reference.get_mean_value() / 1000, 3)
    assert summary["p99_9_ms"] == reference.get_value_at_percentile(99.9) / 1000


def test_reading_an_empty_histogram() -> None:
    empty = HdrHistogram(LOWEST_US, HIGHEST_US, 3)
    assert percentiles(empty, [50.0, 99.0]) == [0, 0]
    assert describe(empty) == {"count": 0}


# --- LatencyBook ---------------------------------------------------------------------------


def test_records_service_and_latency_per_key() -> None:
    book = LatencyBook()
    assert not book
    book.record("POST /api/webhook", 40.0)  # closed model: no lateness
    book.record("POST /api/webhook", 60.0, lateness_ms=250.0)
    book.record("GET /health", 3.0, lateness_ms=1.0)
    assert book
    assert book.keys() == ["GET /health", "POST /api/webhook"]

    service = book.get("POST /api/webhook", "service")
    latency = book.get("POST /api/webhook", "latency")
    assert service.get_total_count() == latency.get_total_count() == 2
    assert service.get_max_value() == pytest.approx(60_000, rel=1e-3)
    assert latency.get_max_value() == pytest.approx(310_000, rel=1e-3)
    assert service.get_min_value() == latency.get_min_value() == pytest.approx(40_000, rel=1e-3)
    assert book.get("GET /health").get_max_value() == pytest.approx(4_000, rel=1e-3)
    assert book.get("GET /health", "service").get_max_value() == pytest.approx(3_000, rel=1e-3)
    # The default kind is latency; an unknown key is an empty histogram.
    assert book.get("POST /api/webhook") is latency
    assert book.get("nope").get_total_count() == 0


def test_three_significant_digits_not_two() -> None:
    book = LatencyBook()
    book.record("slow", 4960.0)
    top = p(book, "slow", 100)
    assert top == pytest.approx(4960, rel=1e-3)
    assert top < 5000  # Locust's rounding would report 5000 and break the p99 < 5000 ms rule
    summary = describe(book.get("slow"))
    assert summary["max_ms"] == pytest.approx(4960, rel=1e-3)
    assert summary["p99_ms"] == pytest.approx(4960, rel=1e-3)
    # Values 0.1% apart stay apart.
    book.record("apart", 1000.0)
    book.record("apart", 1002.0)
    assert p(book, "apart", 50) < p(book, "apart", 100)


@pytest.mark.parametrize("value_ms", [0.25, 0.001, 0.999, 1.5, 12.345, 987.6, 61_234.0])
def test_precision(value_ms: float) -> None:
    book = LatencyBook()
    book.record("k", value_ms)
    summary = describe(book.get("k", "service"))
    for field in ("min_ms", "max_ms", "mean_ms", "p50_ms", "p99_9_ms"):
        assert summary[field] == pytest.approx(value_ms, rel=1e-3), field
    if value_ms < 2:  # below 2.048 ms every microsecond has its own bucket
        assert summary["max_ms"] == value_ms
        assert summary["min_ms"] == value_ms


def test_sub_millisecond_values_keep_microseconds() -> None:
    book = LatencyBook()
    for value in (0.250, 0.251, 0.252, 0.5):
        book.record("fast", value)
    summary = describe(book.get("fast"))
    assert summary["min_ms"] == 0.25
    assert summary["p50_ms"] == 0.251
    assert summary["max_ms"] == 0.5
    assert summary["mean_ms"] == pytest.approx((0.25 + 0.251 + 0.252 + 0.5) / 4, abs=1e-3)


def test_values_are_clamped_into_range() -> None:
    book = LatencyBook()
    book.record("k", 0.0)
    book.record("k", -5.0)
    book.record("k", 10 * 3_600_000.0)  # ten hours
    histogram = book.get("k", "service")
    assert histogram.get_total_count() == 3
    assert histogram.get_min_value() == 1
    assert histogram.get_max_value() == pytest.approx(HIGHEST_US, rel=1e-3)


def random_records(seed: int, n: int) -> list[tuple[str, float, float]]:
    rng = random.Random(seed)
    keys = ["POST /api/webhook", "POST /api/sessions", "GET /api/messages"]
    return [
        (rng.choice(keys), rng.lognormvariate(3, 1.2), rng.choice([0.0, rng.expovariate(0.01)]))
        for _ in range(n)
    ]


def assert_same_book(a: LatencyBook, b: LatencyBook, *, summaries: bool = True) -> None:
    """Same keys, counts and percentiles (and means, via the summaries: hdrh's mean is slow)."""
    assert a.keys() == b.keys()
    for key in [*a.keys(), AGGREGATED]:
        for kind in LatencyBook.KINDS:
            ha, hb = a.get(key, kind), b.get(key, kind)
            assert ha.get_total_count() == hb.get_total_count()
            assert ha.get_min_value() == hb.get_min_value()
            assert ha.get_max_value() == hb.get_max_value()
            for percentile in (1, 25, 50, 75, 90, 95, 99, 99.9, 99.99, 100):
                assert ha.get_value_at_percentile(percentile) == hb.get_value_at_percentile(
                    percentile
                ), (key, kind, percentile)
    if summaries:
        assert a.summary() == b.summary()


def test_encoded_books_from_workers_add_up_exactly() -> None:
    records = random_records(1, 3000)
    whole = LatencyBook()
    workers = [LatencyBook() for _ in range(3)]
    for i, (key, service, lateness) in enumerate(records):
        whole.record(key, service, lateness)
        workers[i % 3].record(key, service, lateness)
    master = LatencyBook()
    for worker in workers:
        encoded = worker.encode()
        assert all(isinstance(text, str) for pair in encoded.values() for text in pair.values())
        master.add_encoded(encoded)
    assert_same_book(master, whole)
    assert master.get(AGGREGATED).get_total_count() == 3000
    # A worker's share is not the whole.
    assert workers[0].get(AGGREGATED).get_total_count() == 1000


def test_add_matches_add_encoded() -> None:
    records = random_records(2, 500)
    left, right, whole = LatencyBook(), LatencyBook(), LatencyBook()
    for i, (key, service, lateness) in enumerate(records):
        (left if i < 200 else right).record(key, service, lateness)
        whole.record(key, service, lateness)
    added = LatencyBook()
    added.add(left)
    added.add(right)
    assert_same_book(added, whole, summaries=False)
    # Adding does not consume the parts.
    assert left.get(AGGREGATED).get_total_count() == 200


def test_workers_with_disjoint_keys_merge() -> None:
    a, b = LatencyBook(), LatencyBook()
    a.record("only-a", 5.0)
    b.record("only-b", 7.0)
    master = LatencyBook()
    master.add_encoded(a.encode())
    master.add_encoded(b.encode())
    master.add_encoded(LatencyBook().encode())  # an idle worker
    assert master.keys() == ["only-a", "only-b"]
    assert master.get("only-b").get_max_value() == pytest.approx(7_000, rel=1e-3)
    assert master.get("only-a").get_total_count() == 1


def test_aggregated_merges_every_key() -> None:
    book = LatencyBook()
    for value in range(1, 101):
        book.record("a" if value % 2 else "b", float(value), lateness_ms=1000.0)
    service = book.get(AGGREGATED, "service")
    assert service.get_total_count() == 100
    assert service.get_min_value() == 1_000
    assert service.get_max_value() == pytest.approx(100_000, rel=1e-3)
    assert service.get_value_at_percentile(50) == pytest.approx(50_000, rel=1e-3)
    latency = book.get(AGGREGATED, "latency")
    assert latency.get_min_value() == pytest.approx(1_001_000, rel=1e-3)
    # The aggregate is a fresh sum: the keys' histograms are unchanged.
    assert book.get("a", "service").get_total_count() == 50
    total = merged([book.get("a", "service"), book.get("b", "service")])
    assert total.get_total_count() == 100
    assert total.get_value_at_percentile(90) == service.get_value_at_percentile(90)


def test_summary_structure() -> None:
    book = LatencyBook()
    assert book.summary() == {}
    for value in range(1, 1001):
        book.record("POST /api/webhook", float(value), lateness_ms=10.0)
    book.record("GET /health", 2.0)
    summary = book.summary()
    assert list(summary) == ["GET /health", "POST /api/webhook", AGGREGATED]
    for by_kind in summary.values():
        assert set(by_kind) == {"latency", "service"}
        for numbers in by_kind.values():
            assert set(numbers) == SUMMARY_KEYS
    webhook = summary["POST /api/webhook"]["service"]
    assert webhook["count"] == 1000
    assert webhook["min_ms"] == 1.0
    assert webhook["max_ms"] == pytest.approx(1000, rel=1e-3)
    assert webhook["mean_ms"] == pytest.approx(500.5, rel=1e-3)
    for key, expected in (("p50_ms", 500), ("p90_ms", 900), ("p95_ms", 950), ("p99_ms", 990)):
        assert webhook[key] == pytest.approx(expected, rel=2e-3), key
    assert webhook["p99_9_ms"] == pytest.approx(999, rel=2e-3)
    assert summary["POST /api/webhook"]["latency"]["p50_ms"] == pytest.approx(510, rel=2e-3)
    assert summary[AGGREGATED]["service"]["count"] == 1001
    assert summary[AGGREGATED]["service"]["min_ms"] == 1.0
    # Percentiles are ordered.
    values = [webhook[k] for k in ("min_ms", "p50_ms", "p90_ms", "p95_ms", "p99_ms", "max_ms")]
    assert values == sorted(values)


def test_describe_empty() -> None:
    assert describe(LatencyBook().get("none")) == {"count": 0}


def test_clear() -> None:
    book = LatencyBook()
    book.record("k", 1.0)
    book.clear()
    assert not book
    assert book.keys() == []
    assert book.summary() == {}
    assert book.get(AGGREGATED).get_total_count() == 0
    book.record("k", 2.0)
    assert book.get("k").get_total_count() == 1


# --- WeightedChoice ------------------------------------------------------------------------


def test_weighted_choice_exact_and_interleaved() -> None:
    choice = WeightedChoice({"A": 3, "B": 1})
    picks = [choice.next() for _ in range(400)]
    assert Counter(picks) == {"A": 300, "B": 100}
    # Interleaved: every cycle of four holds three A and one B, never a block of B.
    for i in range(0, 400, 4):
        assert Counter(picks[i : i + 4]) == {"A": 3, "B": 1}, picks[i : i + 4]
    assert "BB" not in "".join(picks)
    assert "AAAA" not in "".join(picks)


@pytest.mark.parametrize(
    ("weights", "cycle"),
    [
        ({"a": 1, "b": 1}, 2),
        ({"a": 1, "b": 2, "c": 3}, 6),
        ({"a": 0.7, "b": 0.3}, 10),
        ({"a": 5, "b": 1, "c": 1, "d": 1}, 8),
    ],
)
def test_weighted_choice_proportions(weights: dict[str, float], cycle: int) -> None:
    choice = WeightedChoice(weights)
    total = sum(weights.values())
    picks = [choice.next() for _ in range(cycle * 50)]
    counts = Counter(picks)
    for name, weight in weights.items():
        assert counts[name] == round(cycle * 50 * weight / total)
    # Every prefix is within one pick per name of its exact share.
    running: Counter[str] = Counter()
    for n, name in enumerate(picks, 1):
        running[name] += 1
        for other, weight in weights.items():
            assert abs(running[other] - n * weight / total) < 1 + 1e-9, (n, other)


def test_weighted_choice_skips_zero_weights() -> None:
    choice = WeightedChoice({"never": 0, "always": 2})
    assert {choice.next() for _ in range(20)} == {"always"}


# --- ArrivalCounters -----------------------------------------------------------------------


def test_arrival_counters_total() -> None:
    parts = [
        {"due": 100, "started": 90, "dropped": 10, "completed": 85, "in_flight": 5,
         "max_in_flight": 40, "max_lateness_ms": 12.5},
        {"due": 50, "started": 50, "dropped": 0, "completed": 49, "in_flight": 1,
         "max_in_flight": 70, "max_lateness_ms": 3.0},
        {"due": 7, "max_lateness_ms": 250.0},  # an older worker sends fewer fields
    ]  # fmt: skip
    total = ArrivalCounters.total(parts)
    assert total.due == 157
    assert total.started == 140
    assert total.dropped == 10
    assert total.completed == 134
    assert total.in_flight == 6
    assert total.max_in_flight == 70
    assert total.max_lateness_ms == 250.0
    assert ArrivalCounters.total([]) == ArrivalCounters()
    # Round trip through the message format.
    again = ArrivalCounters.total([total.as_dict()])
    assert again == total
    assert ArrivalCounters.total([total.as_dict(), total.as_dict()]).due == 314


def test_recent_reads_what_the_histograms_recorded_in_their_last_updates() -> None:
    """The live view's last seconds, from the run's own histograms: over the last updates,
    exactly what a histogram of only those values would say; cleared histograms (a new run)
    start it again."""
    from analysis.latency import Recent, new_histogram, percentiles, record

    rng = random.Random(7)
    book = [new_histogram(), new_histogram()]  # two request names, added together
    recent = Recent(span=2)
    seconds: list[list[float]] = []
    for _ in range(4):
        values = [rng.lognormvariate(1.5, 1.0) for _ in range(300)]
        for i, value in enumerate(values):
            record(book[i % 2], value)
        seconds.append(values)
        recent.update(book)
    alone = new_histogram()
    for value in seconds[-2] + seconds[-1]:
        record(alone, value)
    seen = recent.describe()
    assert seen is not None and seen["count"] == 600
    p50, p95, p99 = percentiles(alone, (50, 95, 99))
    assert (seen["p50_ms"], seen["p95_ms"], seen["p99_ms"]) == (p50 / 1000, p95 / 1000, p99 / 1000)
    assert seen["max_ms"] == alone.get_max_value() / 1000
    assert recent.describe(last=1)["count"] == 300
    for histogram in book:
        histogram.reset()
    record(book[0], 42.0)
    recent.update(book)
    assert recent.describe()["count"] == 1
    recent.update(book)  # nothing new in the last second: the one before still counts
    assert recent.describe(last=1) is None and recent.describe()["count"] == 1


def test_recent_reads_the_whole_run_from_the_counts_it_already_has() -> None:
    from analysis.latency import Recent, describe, merged, new_histogram, record

    book = [new_histogram(), new_histogram()]
    recent = Recent(span=1)
    for second in range(3):
        for i in range(200):
            record(book[i % 2], 0.5 + second * 10 + i * 0.37)
        recent.update(book)
    whole, described = recent.describe_all(), describe(merged(book))
    assert whole is not None and whole["count"] == described["count"] == 600
    for key in ("p50_ms", "p95_ms", "p99_ms", "max_ms"):
        assert whole[key] == described[key], key
