"""Lossless latency histograms per request name (HdrHistogram, 3 significant digits).

Locust rounds response times to about two significant digits before it stores them (4,960 ms
counts as 5,000 ms, which matters to the plan's "p99 > 5000 ms" rule), so every percentile the
suite reports or judges comes from these histograms instead. Two are kept per request name:

- `latency`: from the moment the request was due (an arrival's due time, in open-model runs) to
  its response: what a user of the gateway would have waited;
- `service`: from the actual send to the response, as Locust and k6 measure.

In closed-model runs the two are the same. Values are recorded in microseconds, from 1 µs to one
hour. Histograms travel from workers to the master encoded (HdrHistogram's compressed base64)
and are added exactly.

Recording and reading are on the generator's hot path (every request; a checkpoint every 5 s),
and the `hdrh` package does both in pure Python: a 3-digit histogram has 23,552 counters, which
`get_value_at_percentile` walks one by one. `record_us` computes the counter's index inline, and
`percentiles`/`describe` read the counters as a numpy array; both give exactly what `hdrh`'s own
methods give (tests/analysis/test_latency.py), a few times faster and a hundred times faster.
"""

from __future__ import annotations

import functools
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from hdrh.histogram import HdrHistogram

LOWEST_US = 1
HIGHEST_US = 3_600_000_000
SIGNIFICANT_DIGITS = 3
PERCENTILES = (50.0, 90.0, 95.0, 99.0, 99.9)
AGGREGATED = "Aggregated"


def new_histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)


def record_us(h: HdrHistogram, value_us: int) -> None:
    """`h.record_value(value_us)` for a value within the histogram's range, inlined."""
    bucket = (
        (value_us | h.sub_bucket_mask).bit_length()
        - h.unit_magnitude
        - (h.sub_bucket_half_count_magnitude + 1)
    )
    index = (
        ((bucket + 1) << h.sub_bucket_half_count_magnitude)
        + (value_us >> (bucket + h.unit_magnitude))
        - h.sub_bucket_half_count
    )
    h.counts[index] += 1
    h.total_count += 1
    if value_us < h.min_value:
        h.min_value = value_us
    if value_us > h.max_value:
        h.max_value = value_us


def record(histogram: HdrHistogram, value_ms: float) -> None:
    record_us(histogram, min(HIGHEST_US, max(LOWEST_US, round(value_ms * 1000))))


@functools.cache
def _equivalent_values(
    counts_len: int, half_count_magnitude: int, unit_magnitude: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each counter: the lowest, highest and middle value it stands for (as `hdrh`'s
    get_lowest/highest_equivalent_value and its mean's median-equivalent value)."""
    index = np.arange(counts_len, dtype=np.int64)
    bucket = (index >> half_count_magnitude) - 1
    sub_bucket = (index & ((1 << half_count_magnitude) - 1)) + (1 << half_count_magnitude)
    first = bucket < 0
    sub_bucket[first] -= 1 << half_count_magnitude
    bucket[first] = 0
    lowest = sub_bucket << (bucket + unit_magnitude)
    size = np.left_shift(1, bucket + unit_magnitude, dtype=np.int64)
    return lowest, lowest + size - 1, lowest + (size >> 1)


def _counters(h: HdrHistogram) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    counts = np.ctypeslib.as_array(h.counts)
    values = _equivalent_values(h.counts_len, h.sub_bucket_half_count_magnitude, h.unit_magnitude)
    return counts, values


def percentiles(h: HdrHistogram, ps: Sequence[float]) -> list[int]:
    """`h.get_value_at_percentile(p)` for each p, in one pass over the counters."""
    total = h.total_count
    if total == 0:
        return [0 for _ in ps]
    counts, (lowest, highest, _) = _counters(h)
    targets = [max(int(min(p, 100.0) * total / 100 + 0.5), 1) for p in ps]
    at = np.searchsorted(np.cumsum(counts), targets, side="left")
    return [
        0 if i >= len(counts) else int(highest[i] if p else lowest[i])
        for p, i in zip(ps, at, strict=True)
    ]


def percentile(h: HdrHistogram, p: float) -> int:
    return percentiles(h, (p,))[0]


def describe(histogram: HdrHistogram) -> dict[str, float]:
    """Count, min, mean, max and the usual percentiles, in milliseconds."""
    count = histogram.get_total_count()
    if count == 0:
        return {"count": 0}
    counts, (_, _, middle) = _counters(histogram)
    mean_us = float(np.dot(counts.astype(np.float64), middle)) / count
    summary = {
        "count": count,
        "min_ms": histogram.get_min_value() / 1000,
        "mean_ms": round(mean_us / 1000, 3),
        "max_ms": histogram.get_max_value() / 1000,
    }
    for p, value in zip(PERCENTILES, percentiles(histogram, PERCENTILES), strict=True):
        summary[f"p{p:g}_ms".replace(".", "_")] = value / 1000
    return summary


class LatencyBook:
    """Histograms of `latency` and `service` time per request key (e.g. "POST /api/webhook")."""

    KINDS = ("latency", "service")

    def __init__(self) -> None:
        self.histograms: dict[str, dict[str, HdrHistogram]] = {}

    def __bool__(self) -> bool:
        return bool(self.histograms)

    def _pair(self, key: str) -> dict[str, HdrHistogram]:
        pair = self.histograms.get(key)
        if pair is None:
            pair = self.histograms[key] = {kind: new_histogram() for kind in self.KINDS}
        return pair

    def record(self, key: str, service_ms: float, lateness_ms: float = 0.0) -> None:
        # Every request of the run passes here: the clamp is inlined and a closed model's
        # latency (no lateness) is the service time's value, not computed twice.
        pair = self.histograms.get(key) or self._pair(key)
        service_us = latency_us = min(HIGHEST_US, max(LOWEST_US, round(service_ms * 1000)))
        if lateness_ms:
            latency_us = min(HIGHEST_US, max(LOWEST_US, round((service_ms + lateness_ms) * 1000)))
        record_us(pair["service"], service_us)
        record_us(pair["latency"], latency_us)

    def keys(self) -> list[str]:
        return sorted(self.histograms)

    def get(self, key: str, kind: str = "latency") -> HdrHistogram:
        """One key's histogram, or all keys added together for `AGGREGATED`."""
        if key == AGGREGATED:
            return merged(pair[kind] for pair in self.histograms.values())
        return self.histograms[key][kind] if key in self.histograms else new_histogram()

    def encode(self) -> dict[str, dict[str, str]]:
        return {
            key: {kind: h.encode().decode("ascii") for kind, h in pair.items()}
            for key, pair in self.histograms.items()
        }

    def add_encoded(self, data: dict[str, dict[str, Any]]) -> None:
        for key, encoded in data.items():
            pair = self._pair(key)
            for kind, text in encoded.items():
                pair[kind].decode_and_add(text)

    def add(self, other: LatencyBook) -> None:
        for key, pair in other.histograms.items():
            mine = self._pair(key)
            for kind, histogram in pair.items():
                mine[kind].add(histogram)

    def clear(self) -> None:
        self.histograms.clear()

    def summary(self) -> dict[str, dict[str, dict[str, float]]]:
        keys = [*self.keys(), AGGREGATED] if self.histograms else []
        return {key: {kind: describe(self.get(key, kind)) for kind in self.KINDS} for key in keys}


def merged(histograms: Iterable[HdrHistogram]) -> HdrHistogram:
    total = new_histogram()
    for histogram in histograms:
        total.add(histogram)
    return total


class Recent:
    """What histograms that only grow recorded over their last `span` updates: `update()`,
    once a second, keeps the counts added since the update before (sparse: the counters that
    moved), so that the live view reads the last seconds' percentiles from the same lossless
    histograms as the report, without a second record per request. Fewer requests in all
    than at the update before (the histograms were cleared: a new run) start it again.

    It runs on the load's event loop once a second: each step is a pass over the 23,552
    counters at most (a copy, a sum, a difference), and the last seconds are read from their
    sparse counts alone."""

    def __init__(self, span: int) -> None:
        self.span = span
        self._previous: np.ndarray | None = None
        self._previous_count = 0
        self._moved: deque[tuple[np.ndarray, np.ndarray]] = deque(maxlen=span)
        self._layout: tuple[int, int, int] | None = None

    def update(self, histograms: Iterable[HdrHistogram]) -> None:
        total: np.ndarray | None = None
        count = 0
        for h in histograms:
            counts = np.ctypeslib.as_array(h.counts)
            total = counts.astype(np.int64) if total is None else total + counts
            count += h.total_count
            self._layout = (h.counts_len, h.sub_bucket_half_count_magnitude, h.unit_magnitude)
        if total is None:
            self.clear()
            return
        previous = self._previous
        if previous is None or previous.shape != total.shape or count < self._previous_count:
            self._moved.clear()
            delta = total
        else:
            delta = total - previous
        at = np.flatnonzero(delta)
        self._moved.append((at, delta[at]))
        self._previous, self._previous_count = total, count

    def clear(self) -> None:
        self._previous, self._previous_count = None, 0
        self._moved.clear()

    def describe(self, last: int | None = None) -> dict[str, float] | None:
        """Count, p50, p95, p99 and max in ms over the last `last` updates (all kept: `span`);
        None when nothing was recorded in them."""
        moved = list(self._moved)[-last:] if last else list(self._moved)
        if not moved or self._layout is None:
            return None
        at = np.concatenate([a for a, _ in moved])
        added = np.concatenate([c for _, c in moved])
        order = np.argsort(at, kind="stable")  # a few hundred counters: sorted, not scanned
        return self._described(at[order], added[order])

    def describe_all(self) -> dict[str, float] | None:
        """The same over everything the histograms hold (the whole run), from the counts the
        last update read: no second pass over them."""
        if self._previous is None:
            return None
        return self._described(None, self._previous)

    def _described(self, at: np.ndarray | None, counts: np.ndarray) -> dict[str, float] | None:
        """`counts[i]` values in counter `at[i]` (`at` ascending), or in counter `i`."""
        cumulative = np.cumsum(counts)
        total = int(cumulative[-1]) if len(cumulative) else 0
        if total == 0 or self._layout is None:
            return None
        _, highest, _ = _equivalent_values(*self._layout)
        targets = [max(int(p * total / 100 + 0.5), 1) for p in (50.0, 95.0, 99.0, 100.0)]
        places = np.minimum(np.searchsorted(cumulative, targets, side="left"), len(counts) - 1)
        counters = places if at is None else at[places]
        p50, p95, p99, top = (int(v) / 1000 for v in highest[counters])
        return {"count": total, "p50_ms": p50, "p95_ms": p95, "p99_ms": p99, "max_ms": top}
