"""The gateway's resources and metrics, sampled once a second on the master (or local runner).

Each tick takes what is available: the gateway's process and its children (psutil, when its
PID is known: the embedded gateway, `--target-pid`, or the process listening on the target's
local port; `monitors.process`), its
Prometheus metrics, or a remote agent's sample (`python -m monitors.agent`) when the gateway
runs elsewhere. Samples stream to the run's `samples.csv`; the latest one and the alerts feed
the live view. Generators' own CPU and memory arrive from the workers with their stats reports
(`monitors.generator`) and are stored in the same file, one `source` each. Which processes
the samples counted (`CountedProcesses`) goes to the summary, beside the figures' peaks.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import gevent
import httpx
import psutil

from monitors.alerts import Alert, AlertRules, AlertWatch
from monitors.process import CountedProcesses, ProcessSampler
from monitors.prometheus import MetricsScraper
from monitors.storage import SampleWriter

log = logging.getLogger("monitors")
INTERVAL_S = 1.0
COLUMNS = [
    "rss_mb", "pss_mb", "processes", "cpu_pct", "cpu_pct_total", "threads", "open_files",
    "connections",
    "disk_read_bytes_per_s", "disk_write_bytes_per_s", "disk_read_ops_per_s",
    "disk_write_ops_per_s", "host_net_sent_bytes_per_s", "host_net_recv_bytes_per_s",
    "queue_depth", "queue_capacity", "sessions_active", "sessions_ready", "sessions_limit",
    "websocket_connections", "messages_in_flight", "messages_accepted", "messages_delivered",
    "messages_failed", "messages_rejected", "target_rss_mb", "heap_used_mb", "heap_total_mb",
    "eventloop_lag_ms", "eventloop_lag_p99_ms", "users",
]  # fmt: skip


class RemoteAgent:
    """Polls a `monitors.agent` for the samples of a gateway on another machine."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/") + "/sample"
        self.client = httpx.Client(timeout=2.0)

    def sample(self) -> dict[str, Any]:
        try:
            response = self.client.get(self.url)
            return dict(response.json()) if response.status_code == 200 else {}
        except (httpx.HTTPError, ValueError):
            return {}


class ResourceMonitor:
    def __init__(
        self,
        *,
        pid: int | None,
        metrics_url: str | None,
        agent_url: str | None = None,
        include_children: bool = True,
        rules: AlertRules | None = None,
        users: Callable[[], int] | None = None,
        sessions: Callable[[], float] | None = None,
        metric_names: Mapping[str, str] | None = None,
        on_alert: Callable[[Alert], None] | None = None,
        on_sample: Callable[[dict[str, Any]], None] | None = None,
        interval_s: float = INTERVAL_S,
    ) -> None:
        self.notes: list[str] = []
        self.process: ProcessSampler | None = None
        if pid:
            try:
                self.process = ProcessSampler(pid, include_children, pause=gevent.sleep)
            except psutil.Error as exc:
                self.notes.append(f"cannot sample process {pid}: {type(exc).__name__}")
        self.scraper = MetricsScraper(metrics_url, named=metric_names) if metrics_url else None
        self.agent = RemoteAgent(agent_url) if agent_url else None
        self.rules = rules or AlertRules()
        self.users = users
        # The sessions the suite created and has not deleted: memory per session falls back
        # on it where the gateway exports no count of its own.
        self.sessions = sessions
        self.on_alert = on_alert
        self.on_sample = on_sample
        self.interval_s = interval_s
        self.watch = AlertWatch(self.rules)
        self.latest: dict[str, Any] = {}
        self.aggregates: dict[str, list[float]] = {}  # field -> [count, sum, min, max]
        self.counted = CountedProcesses()
        self.writer: SampleWriter | None = None
        self.started = 0.0
        self._loop: gevent.Greenlet | None = None

    def start(self, samples_path: Path) -> None:
        self.stop()
        self.watch = AlertWatch(self.rules)
        self.latest = {}
        self.aggregates = {}
        self.counted = CountedProcesses()
        self.writer = SampleWriter(samples_path, COLUMNS)
        self.started = time.monotonic()
        self._loop = gevent.spawn(self._run)

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.kill(block=False)
            self._loop = None
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def record(self, source: str, sample: dict[str, Any]) -> None:
        """Store a sample from elsewhere (a worker's generator) on the run's time axis."""
        if self.writer is not None:
            self.writer.write(time.monotonic() - self.started, source, sample)

    def sample(self) -> dict[str, Any]:
        sample: dict[str, Any] = {}
        if self.process is not None:
            try:
                sample.update(self.process.sample())
            except psutil.NoSuchProcess:
                self.notes.append("the gateway's process is gone")
                self.process = None
            except psutil.Error as exc:
                self.notes.append(f"process sample failed: {type(exc).__name__}")
        if self.agent is not None:
            sample.update(self.agent.sample())
        if self.scraper is not None:
            sample.update(self.scraper.sample())
            if self.scraper.note and self.scraper.note not in self.notes:
                self.notes.append(self.scraper.note)
        if self.users is not None:
            sample["users"] = self.users()
        if self.sessions is not None:
            sample["suite_sessions_open"] = self.sessions()
        # Which processes were counted: for the summary, not a figure of every stored row.
        tree = sample.pop("tree", None)
        if isinstance(tree, dict):
            self.counted.observe(tree)
        return sample

    def _run(self) -> None:
        next_tick = time.monotonic()
        while True:
            t = time.monotonic() - self.started
            sample = self.sample()
            if sample:
                self.latest = {"t": round(t, 1), **sample}
                self._aggregate(sample)
                if self.writer is not None:
                    self.writer.write(t, "gateway", sample)
                for alert in self.watch.check(t, sample):
                    log.warning("alert: %s", alert.message)
                    if self.on_alert is not None:
                        self.on_alert(alert)
                if self.on_sample is not None:
                    self.on_sample(self.latest)
            next_tick += self.interval_s
            gevent.sleep(max(0.0, next_tick - time.monotonic()))

    def _aggregate(self, sample: dict[str, Any]) -> None:
        for key, value in sample.items():
            if not isinstance(value, int | float) or isinstance(value, bool):
                continue
            entry = self.aggregates.get(key)
            if entry is None:
                self.aggregates[key] = [1, value, value, value]
            else:
                entry[0] += 1
                entry[1] += value
                entry[2] = min(entry[2], value)
                entry[3] = max(entry[3], value)

    def summary(self) -> dict[str, Any]:
        """Peak, mean and minimum of every sampled figure, which processes were counted, the
        alerts (and the rules they followed), and the notes."""
        figures = {
            key: {
                "samples": int(count),
                "mean": round(total / count, 3),
                "min": round(low, 3),
                "peak": round(high, 3),
            }
            for key, (count, total, low, high) in sorted(self.aggregates.items())
        }
        return {
            "figures": figures,
            "process_tree": self.counted.as_dict(),
            "alerts": [a.as_dict() for a in self.watch.fired],
            "notes": list(self.notes),
            "interval_s": self.interval_s,
            "alert_rules": dataclasses.asdict(self.rules),
        }

    def live(self) -> dict[str, Any]:
        """What the live view shows: the latest sample, which processes it counted, the alerts
        so far, and the notes."""
        return {
            "sample": self.latest,
            "process_tree": self.counted.as_dict(),
            "alerts": [a.as_dict() for a in self.watch.fired],
            "notes": list(self.notes),
        }
