"""Every figure the monitors sample, once: its name (a column of `samples.csv`), unit and
what it is. The samples file's columns, the live view's descriptions and the report's labels
(report_templates/messages.yaml, checked against this list by the tests) all follow it, so
that a figure a source adds is named in one place.

A figure not listed still reaches `samples.csv` (its `extra` column) and the live view; the
entries of a gateway's bounded caches are named by their cache (`cache_<name>_entries`).
"""

from __future__ import annotations

from typing import NamedTuple


class Figure(NamedTuple):
    name: str
    unit: str
    about: str


# The figures that hold memory in a gateway: the report's leak analysis explains memory by them
# (with the gateway's bounded caches), and the live leak alert waits for them to hold still.
HOLDING_MEMORY = ("sessions_active", "queue_depth", "websocket_connections", "connections")

FIGURES: tuple[Figure, ...] = (
    # The gateway's processes (psutil: its own and its children's, or a remote agent's).
    Figure("rss_mb", "MB", "gateway resident memory (RSS, summed over its processes)"),
    Figure("pss_mb", "MB", "gateway proportional memory (PSS: pages shared counted once)"),
    Figure("processes", "", "gateway processes counted (its own and its children)"),
    Figure("pss_unreadable", "", "gateway processes whose PSS could not be read (RSS counted)"),
    Figure("cpu_pct", "%", "gateway CPU, % of one core"),
    Figure("cpu_pct_total", "%", "gateway CPU, % of the whole machine"),
    Figure("threads", "", "gateway threads"),
    Figure("open_files", "", "gateway open file descriptors"),
    Figure("connections", "", "gateway TCP connections"),
    Figure("disk_read_bytes_per_s", "B/s", "gateway disk reads"),
    Figure("disk_write_bytes_per_s", "B/s", "gateway disk writes"),
    Figure("disk_read_ops_per_s", "1/s", "gateway disk read operations"),
    Figure("disk_write_ops_per_s", "1/s", "gateway disk write operations"),
    Figure("host_net_sent_bytes_per_s", "B/s", "machine's network sent (all interfaces)"),
    Figure("host_net_recv_bytes_per_s", "B/s", "machine's network received (all interfaces)"),
    # The gateway's own metrics (Prometheus; a target profile's `metrics:` names its own).
    Figure("queue_depth", "", "messages waiting in the gateway's outbound queue"),
    Figure("queue_capacity", "", "the outbound queue's capacity"),
    Figure("sessions_active", "", "live sessions (initializing or ready)"),
    Figure("sessions_ready", "", "sessions ready"),
    Figure("sessions_limit", "", "the gateway's session cap"),
    Figure("websocket_connections", "", "open WebSocket event subscriptions"),
    Figure("messages_in_flight", "", "messages sent, not yet acknowledged"),
    Figure("messages_accepted", "", "messages accepted (total)"),
    Figure("messages_delivered", "", "messages delivered (total)"),
    Figure("messages_failed", "", "messages failed (total)"),
    Figure("messages_rejected", "", "messages rejected (total)"),
    Figure("target_rss_mb", "MB", "resident memory from the gateway's own metrics"),
    Figure("heap_used_mb", "MB", "Node.js heap used"),
    Figure("heap_total_mb", "MB", "Node.js heap total (reserved)"),
    Figure("eventloop_lag_ms", "ms", "Node.js event loop lag (prom-client, one setImmediate)"),
    Figure("eventloop_lag_p99_ms", "ms", "Node.js event loop lag, p99 (prom-client)"),
    # A Node.js gateway's inspector (--node-inspect), each over the sample's second.
    Figure("heap_external_mb", "MB", "Node.js memory outside the heap held by JS objects"),
    Figure("heap_array_buffers_mb", "MB", "Node.js ArrayBuffers and Buffers"),
    Figure("node_rss_mb", "MB", "the Node.js process's own RSS (process.memoryUsage)"),
    Figure("heap_after_gc_mb", "MB", "Node.js heap used just after a major collection"),
    Figure("gc_count", "", "garbage collections in the second"),
    Figure("gc_major_count", "", "major (mark-sweep-compact) collections in the second"),
    Figure("gc_pause_ms", "ms", "time paused in garbage collection in the second"),
    Figure("eventloop_delay_p50_ms", "ms", "Node.js event-loop delay, median over the second"),
    Figure("eventloop_delay_p99_ms", "ms", "Node.js event-loop delay, p99 over the second"),
    Figure("eventloop_delay_max_ms", "ms", "Node.js event-loop delay, longest in the second"),
    # The suite's own.
    Figure("users", "", "Locust users running"),
    Figure("suite_sessions_open", "", "sessions the suite created and has not deleted"),
)
BY_NAME = {figure.name: figure for figure in FIGURES}
COLUMNS = [figure.name for figure in FIGURES]


def about(name: str) -> str:
    """What a figure is, with its unit ("gateway threads"; "Node.js heap used, MB")."""
    figure = BY_NAME.get(name)
    if figure is None:
        return ""
    return f"{figure.about}, {figure.unit}" if figure.unit else figure.about
