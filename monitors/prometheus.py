"""The target's own metrics, from its Prometheus endpoint, parsed with prometheus-client.

Read once a second: the reference gateway's business metrics (queue depth, sessions, WebSocket
connections, messages by status, the session cap and queue capacity, the entries of bounded
caches) and the standard names a Node.js gateway exports through
prom-client (`process_resident_memory_bytes`, `nodejs_heap_size_used_bytes`,
`nodejs_heap_size_total_bytes`, `nodejs_eventloop_lag_seconds` and its `_p99_seconds`), so
that heap used and total, what the plan means by heap, are reported for Node.js gateways. An
endpoint that answers 404 (or is not there at all) is skipped with a note, not an error.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from monitors.sources import SampleFailed, SourceGone

# httpx logs every request at INFO: one line a second in the run's log, for a day, otherwise.
logging.getLogger("httpx").setLevel(logging.WARNING)

# metric family name (as the parser names it) -> (sample name, labels to match, our key, scale)
SELECTED: tuple[tuple[str, dict[str, str], str, float], ...] = (
    ("gateway_queue_depth", {}, "queue_depth", 1.0),
    ("gateway_sessions_active", {}, "sessions_active", 1.0),
    ("gateway_sessions_ready", {}, "sessions_ready", 1.0),
    ("gateway_sessions_limit", {}, "sessions_limit", 1.0),
    ("gateway_queue_capacity", {}, "queue_capacity", 1.0),
    ("gateway_websocket_connections", {}, "websocket_connections", 1.0),
    ("gateway_messages_in_flight", {}, "messages_in_flight", 1.0),
    ("gateway_messages_total", {"status": "accepted"}, "messages_accepted", 1.0),
    ("gateway_messages_total", {"status": "delivered"}, "messages_delivered", 1.0),
    ("gateway_messages_total", {"status": "failed"}, "messages_failed", 1.0),
    ("gateway_messages_total", {"status": "rejected"}, "messages_rejected", 1.0),
    ("process_resident_memory_bytes", {}, "target_rss_mb", 2**-20),
    ("nodejs_heap_size_used_bytes", {}, "heap_used_mb", 2**-20),
    ("nodejs_heap_size_total_bytes", {}, "heap_total_mb", 2**-20),
    ("nodejs_eventloop_lag_seconds", {}, "eventloop_lag_ms", 1000.0),
    # prom-client >= 13: the instant lag above is one setImmediate, often 0; p99 is telling.
    ("nodejs_eventloop_lag_p99_seconds", {}, "eventloop_lag_p99_ms", 1000.0),
)


# Families read whatever their label says, one key per label value: a gateway's bounded caches
# (`cache_<name>_entries`), which hold memory that the leak analysis must not call a leak.
LABELLED: tuple[tuple[str, str, str], ...] = (
    ("gateway_cache_entries", "cache", "cache_{}_entries"),
)
LABELLED_BY_NAME = {name: (label, key) for name, label, key in LABELLED}
LABEL_VALUE = re.compile(r"[a-zA-Z0-9_]+")
CACHE_KEY = re.compile(r"cache_[a-zA-Z0-9_]+_entries")

WANTED_NAMES = frozenset([*(name for name, *_ in SELECTED), *(name for name, *_ in LABELLED)])
METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


def selected_lines(text: str, also: frozenset[str] = frozenset()) -> str:
    """Only the lines of the metrics we read (samples, HELP, TYPE): the parser is slow, about
    0.2 ms per kB, and a Node.js app's exposition, histograms per route, runs to 100 kB."""
    wanted = WANTED_NAMES | also if also else WANTED_NAMES
    kept = []
    for line in text.splitlines():
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 3 and parts[1] in ("HELP", "TYPE") and parts[2] in wanted:
                kept.append(line)
        else:
            name = METRIC_NAME.match(line)
            if name is not None and name.group() in wanted:
                kept.append(line)
    return "\n".join(kept) + "\n"


def parse_metrics(text: str, named: Mapping[str, str] | None = None) -> dict[str, float]:
    """Our keys from a Prometheus text exposition (metrics absent from it are left out).

    `named`: our key -> a gateway's own metric name (its target profile's `metrics:`, such as
    sessions_active -> evolution_instances_total), summed over its label sets."""
    wanted: dict[str, list[tuple[dict[str, str], str, float]]] = {}
    for sample_name, labels, key, scale in SELECTED:
        wanted.setdefault(sample_name, []).append((labels, key, scale))
    own = {name: key for key, name in (named or {}).items()}
    values: dict[str, float] = {}
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(selected_lines(text, frozenset(own))):
        for sample in family.samples:
            if sample.name in own:
                key = own[sample.name]
                totals[key] = totals.get(key, 0.0) + sample.value
                continue
            for labels, key, scale in wanted.get(sample.name, ()):
                if all(sample.labels.get(k) == v for k, v in labels.items()):
                    values[key] = round(sample.value * scale, 3)
            if sample.name in LABELLED_BY_NAME:
                label, template = LABELLED_BY_NAME[sample.name]
                name = LABEL_VALUE.fullmatch(sample.labels.get(label, ""))
                if name is not None:
                    values[template.format(name.group())] = round(sample.value, 3)
    values.update({key: round(total, 3) for key, total in totals.items()})
    return values


class MetricsScraper:
    """Polls `<target>/metrics` (or another URL), a source of the resource monitor
    (`monitors.sources`): gone on a 404 (`available` turns False), failed otherwise."""

    name = "metrics"

    def __init__(
        self, url: str, timeout_s: float = 2.0, named: Mapping[str, str] | None = None
    ) -> None:
        self.url = url
        self.named = dict(named or {})
        self.client = httpx.Client(timeout=timeout_s)
        self.available = True

    def sample(self) -> dict[str, Any]:
        if not self.available:
            raise SourceGone(f"no metrics endpoint at {self.url}")
        try:
            response = self.client.get(self.url)
        except httpx.HTTPError as exc:
            raise SampleFailed(f"metrics endpoint unreachable: {type(exc).__name__}") from exc
        if response.status_code == 404:
            self.available = False
            raise SourceGone(f"no metrics endpoint at {self.url} (404): skipped")
        if response.status_code != 200:
            raise SampleFailed(f"metrics endpoint answered {response.status_code}")
        try:
            return parse_metrics(response.text, self.named)
        except ValueError as exc:
            raise SampleFailed(f"metrics endpoint sent unparseable text: {exc}") from exc

    def close(self) -> None:
        self.client.close()
