"""The load generators' own health: each process that runs users samples its CPU and memory.

A generator that is out of CPU delays its users and inflates the latencies it measures, so its
figures become suspect: the run warns when one passes `WARN_CPU_PCT`. Workers send their sample
with every stats report to the master (`report_to_master`); the master records it beside the
gateway's samples, one `source` per worker. A local runner samples itself once a second.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import gevent
import psutil
from locust.runners import MasterRunner, WorkerRunner

if TYPE_CHECKING:
    from locust.env import Environment

REPORT_KEY = "generator_health"
WARN_CPU_PCT = 90.0
log = logging.getLogger("monitors.generator")


class GeneratorHealth:
    def __init__(
        self, environment: Environment, record: Callable[[str, dict[str, Any]], None]
    ) -> None:
        self.environment = environment
        self.record = record
        self.process = psutil.Process()
        self.process.cpu_percent()  # primes the CPU-time delta
        self.peaks: dict[str, float] = {}
        self.warned: set[str] = set()
        runner = environment.runner
        events = environment.events
        if isinstance(runner, WorkerRunner):
            events.report_to_master.add_listener(self._on_report_to_master)
        elif isinstance(runner, MasterRunner):
            events.worker_report.add_listener(self._on_worker_report)
        else:
            gevent.spawn(self._sample_locally)
        events.test_start.add_listener(lambda **_: (self.peaks.clear(), self.warned.clear()))

    def sample(self) -> dict[str, Any]:
        return {
            "cpu_pct": round(self.process.cpu_percent(), 1),
            "rss_mb": round(self.process.memory_info().rss / 2**20, 1),
        }

    def _on_report_to_master(self, client_id: str, data: dict[str, Any]) -> None:
        data[REPORT_KEY] = self.sample()

    def _on_worker_report(self, client_id: str, data: dict[str, Any]) -> None:
        if REPORT_KEY in data:
            self._observe(f"generator:{client_id}", data[REPORT_KEY])

    def _sample_locally(self) -> None:
        while True:
            gevent.sleep(1.0)
            runner = self.environment.runner
            if runner is not None and runner.state in ("spawning", "running"):
                self._observe("generator:local", self.sample())

    def _observe(self, source: str, sample: dict[str, Any]) -> None:
        self.record(source, sample)
        cpu = float(sample.get("cpu_pct", 0))
        self.peaks[source] = max(self.peaks.get(source, 0.0), cpu)
        if cpu > WARN_CPU_PCT and source not in self.warned:
            self.warned.add(source)
            log.warning(
                "%s is at %.0f %% CPU: its latencies include its own queueing and are suspect",
                source,
                cpu,
            )

    def summary(self) -> dict[str, Any]:
        return {
            "peak_cpu_pct": dict(self.peaks),
            "overloaded": sorted(self.warned),
            "warn_cpu_pct": WARN_CPU_PCT,
        }
