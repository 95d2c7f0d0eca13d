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
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from hdrh.histogram import HdrHistogram

LOWEST_US = 1
HIGHEST_US = 3_600_000_000
SIGNIFICANT_DIGITS = 3
PERCENTILES = (50.0, 90.0, 95.0, 99.0, 99.9)
AGGREGATED = "Aggregated"


def new_histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)


def record(histogram: HdrHistogram, value_ms: float) -> None:
    value_us = min(HIGHEST_US, max(LOWEST_US, round(value_ms * 1000)))
    histogram.record_value(value_us)


def describe(histogram: HdrHistogram) -> dict[str, float]:
    """Count, min, mean, max and the usual percentiles, in milliseconds."""
    count = histogram.get_total_count()
    if count == 0:
        return {"count": 0}
    summary = {
        "count": count,
        "min_ms": histogram.get_min_value() / 1000,
        "mean_ms": round(histogram.get_mean_value() / 1000, 3),
        "max_ms": histogram.get_max_value() / 1000,
    }
    for p in PERCENTILES:
        summary[f"p{p:g}_ms".replace(".", "_")] = histogram.get_value_at_percentile(p) / 1000
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
        pair = self._pair(key)
        record(pair["service"], service_ms)
        record(pair["latency"], service_ms + lateness_ms)

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
