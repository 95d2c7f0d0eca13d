"""The measurements of a run as one JSON document: `summary.json`.

Counts come from Locust's stats (exact, merged from workers); every percentile comes from the
lossless histograms (`analysis.latency`), never from Locust's rounded buckets. "HTTP" totals
leave out the `WS` request type (WebSocket connects and message deliveries), which has its own
section. Rates are over the window from the first to the last request of the run.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from analysis.counters import RunCounters
from analysis.latency import LatencyBook, describe, merged

SCHEMA_VERSION = 1
WS = "WS"


# A master's errors arrive from workers as reprs: "CatchResponseError('HTTP 503')".
_WRAPPED = re.compile(r"""^CatchResponseError\((['"])(.*)\1\)$""")


def error_text(error: object) -> str:
    """The failure as the user wrote it, whether it came from this process or a worker."""
    text = str(error)
    wrapped = _WRAPPED.match(text)
    return wrapped.group(2) if wrapped else text


def _pct(part: float, whole: float) -> float | None:
    return round(100.0 * part / whole, 3) if whole else None


def _iso(timestamp: float | None) -> str | None:
    if not timestamp:
        return None
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).isoformat(timespec="seconds")


def build_summary(
    *,
    stats: Any,
    book: LatencyBook,
    counters: RunCounters,
    run: dict[str, Any],
) -> dict[str, Any]:
    """`run` carries what only the wiring knows: scenario, target, times, peak users, arrivals."""
    requests: dict[str, Any] = {}
    http_requests = http_failures = 0
    first, last = None, None
    for (name, method), entry in sorted(stats.entries.items()):
        key = f"{method} {name}"
        record = {
            "method": method,
            "name": name,
            "requests": entry.num_requests,
            "failures": entry.num_failures,
            "error_rate_pct": _pct(entry.num_failures, entry.num_requests),
            "requests_per_s": round(entry.total_rps, 3),
        }
        if key in book.histograms:
            record["latency"] = describe(book.get(key, "latency"))
            record["service"] = describe(book.get(key, "service"))
        requests[key] = record
        if method != WS:
            http_requests += entry.num_requests
            http_failures += entry.num_failures
            if entry.num_requests:
                first = min(first or entry.start_time, entry.start_time)
                last = max(last or 0.0, entry.last_request_timestamp or 0.0)
    window_s = (last - first) if first and last and last > first else None
    http_keys = [k for k in sorted(book.histograms) if not k.startswith(f"{WS} ")]
    overall = {kind: describe(merged(book.get(k, kind) for k in http_keys)) for kind in book.KINDS}

    sessions_attempted = counters.get("sessions_attempted")
    sessions_created = counters.get("sessions_created")
    accepted = counters.get("messages_accepted")
    delivered = counters.get("messages_delivered")
    delivery_key = f"{WS} message delivered"
    checks_passed = counters.get("webhook_check_passed")
    checks_failed = counters.get("webhook_check_failed")
    workers = run.get("workers", 1)

    summary = {
        "schema_version": SCHEMA_VERSION,
        "scenario": run["scenario"],
        "description": run.get("description", ""),
        "model": run.get("model"),
        "time_scale": run.get("time_scale", 1.0),
        "target": run["target"],
        "embedded_target": run.get("embedded_target", False),
        "started_at": _iso(run.get("started_at")),
        "ended_at": _iso(run.get("ended_at")),
        "duration_s": round(run["duration_s"], 3) if run.get("duration_s") else None,
        "partial": run.get("partial", False),
        "workers": workers,
        "percentiles": "HdrHistogram, 3 significant digits, every sample",
        "totals": {
            "requests": http_requests,
            "failures": http_failures,
            "error_rate_pct": _pct(http_failures, http_requests),
            "requests_per_s": round(http_requests / window_s, 3) if window_s else None,
            "rate_window_s": round(window_s, 3) if window_s else None,
            "latency": overall["latency"],
            "service": overall["service"],
        },
        "requests": requests,
        "peak_users": run.get("peak_users", 0),
        "arrivals": run.get("arrivals"),
        "sessions": {
            "attempted": sessions_attempted,
            "created": sessions_created,
            "success_rate_pct": _pct(sessions_created, sessions_attempted),
            "never_ready": counters.get("sessions_never_ready"),
            "deleted": counters.get("sessions_deleted"),
            "delete_failed": counters.get("sessions_delete_failed"),
        },
        "messages": {
            "accepted": accepted,
            "throttled": counters.get("messages_throttled"),
            "delivered": delivered,
            "failed": counters.get("messages_failed"),
            "undelivered": counters.get("messages_undelivered"),
            # Only over messages whose delivery was tracked: none, where no ack channel could
            # be opened or registered (acks_untracked), is no rate at all, not 0 %.
            "delivery_rate_pct": _pct(delivered, accepted)
            if delivery_key in book.histograms
            else None,
            "untracked_sessions": counters.get("acks_untracked") or None,
            "delivery_latency": describe(book.get(delivery_key))
            if delivery_key in book.histograms
            else {"count": 0},
        },
        "websocket": {
            "connected": counters.get("websocket_connected"),
            "failed": counters.get("websocket_failed"),
            "peak_open": counters.peaks.get("websocket_open", 0),
            "peak_open_exact": workers <= 1,
        },
        "checks": {
            "webhook status 200 and under 500 ms": {
                "passed": checks_passed,
                "failed": checks_failed,
                "pass_rate_pct": _pct(checks_passed, checks_passed + checks_failed),
            }
        },
        "numbers": run.get("numbers"),
        "profile": run.get("profile"),
        "named_sessions": run.get("named_sessions"),
        "label": run.get("label"),  # the run history's (--label)
        "stopped_because": run.get("stopped_because"),
        "resources": run.get("resources"),
        "generators": run.get("generators"),
        "errors": [
            {
                "method": error.method,
                "name": error.name,
                "error": error_text(error.error),
                "occurrences": error.occurrences,
            }
            for error in stats.errors.values()
        ],
    }
    return summary
