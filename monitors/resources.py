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
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import gevent
import httpx
import psutil

from monitors.alerts import Alert, AlertRules, AlertWatch
from monitors.figures import COLUMNS
from monitors.process import CountedProcesses, ProcessSampler
from monitors.prometheus import MetricsScraper
from monitors.sources import SampleFailed, Source, SourceGone, SourceLoop, take
from monitors.storage import SampleWriter

log = logging.getLogger("monitors")
INTERVAL_S = 1.0


class RemoteAgent:
    """Polls a `monitors.agent` for the samples of a gateway on another machine."""

    name = "agent"

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/") + "/sample"
        self.client = httpx.Client(timeout=2.0)

    def sample(self) -> dict[str, Any]:
        try:
            response = self.client.get(self.url)
            body = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise SampleFailed(f"monitor agent unreachable: {type(exc).__name__}") from exc
        if response.status_code != 200 or not isinstance(body, dict):
            detail = body.get("detail", "") if isinstance(body, dict) else ""
            raise SampleFailed(f"monitor agent answered {response.status_code}: {detail}")
        return body

    def close(self) -> None:
        self.client.close()


class ProcessSource:
    """The gateway's process tree as a source (`monitors.process.ProcessSampler`)."""

    name = "process"

    def __init__(self, sampler: ProcessSampler) -> None:
        self.sampler = sampler
        self.process = sampler.process

    def sample(self) -> dict[str, Any]:
        try:
            return self.sampler.sample()
        except psutil.NoSuchProcess as exc:
            raise SourceGone("the gateway's process is gone") from exc
        except psutil.Error as exc:
            raise SampleFailed(f"process sample failed: {type(exc).__name__}") from exc

    def close(self) -> None:
        pass


class ResourceMonitor:
    """Every source of the gateway's figures, sampled each `interval_s` into one row.

    Sources: its process tree (`pid`), its Prometheus endpoint (`metrics_url`), a remote agent
    (`agent_url`), and any other (`sources`: a Node.js gateway's inspector); then the suite's
    own figures (users, sessions held). `sample()` takes one row of every source at once, in
    turn; a run (`start()`) samples each source on its own greenlet (`monitors.sources`)."""

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
        sources: Sequence[Source] = (),
        on_alert: Callable[[Alert], None] | None = None,
        on_sample: Callable[[dict[str, Any]], None] | None = None,
        interval_s: float = INTERVAL_S,
        watch_leak: bool = True,
    ) -> None:
        self.notes: list[str] = []
        self.sources: list[Source] = []
        if pid:
            try:
                sampler = ProcessSampler(pid, include_children, pause=gevent.sleep)
                self.sources.append(ProcessSource(sampler))
            except psutil.Error as exc:
                self.notes.append(f"cannot sample process {pid}: {type(exc).__name__}")
        if agent_url:
            self.sources.append(RemoteAgent(agent_url))
        if metrics_url:
            self.sources.append(MetricsScraper(metrics_url, named=metric_names))
        self.sources.extend(sources)
        self.rules = rules or AlertRules()
        self.users = users
        # The sessions the suite created and has not deleted: memory per session falls back
        # on it where the gateway exports no count of its own.
        self.sessions = sessions
        self.on_alert = on_alert
        self.on_sample = on_sample
        self.interval_s = interval_s
        self.watch_leak = watch_leak
        self.watch = AlertWatch(self.rules, watch_leak)
        self.latest: dict[str, Any] = {}
        self.aggregates: dict[str, list[float]] = {}  # field -> [count, sum, min, max]
        self.counted = CountedProcesses()
        self.writer: SampleWriter | None = None
        self.started = 0.0
        self._loop: gevent.Greenlet | None = None
        self._source_loops: list[SourceLoop] = []

    def _source(self, name: str) -> Any:
        return next((s for s in self.sources if s.name == name), None)

    @property
    def process(self) -> ProcessSource | None:
        """The gateway's process, while it is sampled (None once it is gone)."""
        return self._source(ProcessSource.name)

    @property
    def scraper(self) -> MetricsScraper | None:
        return self._source(MetricsScraper.name)

    def note(self, text: str) -> None:
        if text and text not in self.notes:
            self.notes.append(text)

    def start(self, samples_path: Path) -> None:
        self.stop()
        self.watch = AlertWatch(self.rules, self.watch_leak)
        self.latest = {}
        self.aggregates = {}
        self.counted = CountedProcesses()
        self.writer = SampleWriter(samples_path, COLUMNS)
        self.started = time.monotonic()
        self._source_loops = [
            SourceLoop(source, self.interval_s, self.note, self.started) for source in self.sources
        ]
        self._loop = gevent.spawn(self._run)

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.kill(block=False)
            self._loop = None
        for loop in self._source_loops:
            loop.stop()
        self._forget_gone()
        self._source_loops = []
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def close(self) -> None:
        """Stop, and let go of every source's connections."""
        self.stop()
        for source in self.sources:
            source.close()

    def record(self, source: str, sample: dict[str, Any]) -> None:
        """Store a sample from elsewhere (a worker's generator) on the run's time axis."""
        if self.writer is not None:
            self.writer.write(time.monotonic() - self.started, source, sample)

    def sample(self) -> dict[str, Any]:
        """One row now: every source in turn (a source that is gone is dropped)."""
        sample: dict[str, Any] = {}
        for source in list(self.sources):
            taken = take(source, self.note)
            if taken is None:
                self.sources.remove(source)
            else:
                sample.update(taken)
        return self._completed(sample)

    def _forget_gone(self) -> None:
        gone = [loop.source for loop in self._source_loops if loop.gone]
        self.sources = [source for source in self.sources if source not in gone]

    def _completed(self, sample: dict[str, Any]) -> dict[str, Any]:
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
        # A little after the sources' own ticks: each row has their samples of this tick.
        next_tick = self.started + min(0.25, self.interval_s / 4)
        while True:
            gevent.sleep(max(0.0, next_tick - time.monotonic()))
            now = time.monotonic()
            t = now - self.started
            merged: dict[str, Any] = {}
            for loop in self._source_loops:
                merged.update(loop.fresh(now))
            self._forget_gone()
            sample = self._completed(merged)
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

    def alert(self, kind: str, message: str) -> None:
        """An alert judged elsewhere (the report's leak analysis of the run so far), kept with
        the monitor's own: in the live view and the summary."""
        alert = Alert(kind, message, time.monotonic() - self.started)
        self.watch.fired.append(alert)
        log.warning("alert: %s", message)
        if self.on_alert is not None:
            self.on_alert(alert)

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
