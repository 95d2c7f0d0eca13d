"""What a run records inside a Node.js gateway besides its samples: profiles, into its folder.

Over the gateway's V8 inspector (`monitors.inspector`), one connection for all of it:

- **allocation sampling** (on by default): V8's sampling heap profiler from the start of the
  load (`HeapProfiler.startSampling`, one sample per 256 kB allocated on average); at the end
  its profile, whose samples are of memory still live, as `gateway-allocations.heapprofile`
  (opens in Chrome DevTools' Memory panel);
- **CPU profile** (`--cpu-profile`, the run or a window `FROM:TO` in seconds): V8's sampling
  profiler, `gateway-cpu.cpuprofile` (Chrome DevTools, speedscope); its interval is 1 ms,
  longer for a long window, so that it keeps at most `MAX_CPU_SAMPLES` samples;
- **heap snapshots** (`--heap-snapshots`): one after the warm-up and one at the end,
  `gateway-heap-warm.heapsnapshot` and `gateway-heap-end.heapsnapshot`. A snapshot runs a full
  collection and pauses the gateway while V8 walks its heap (about a second per 100 MB here),
  and its file is about twice the heap: one is skipped, with a note, when the heap is over
  `--heap-snapshot-max-mb`.

`node-inspector.json` lists what was recorded, when, what it cost (seconds the gateway was
held, bytes written) and the notes (a profile that could not be had, and why). The judging
package reads these files (`analysis.node`); nothing here interprets them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gevent

from monitors.inspector import (
    CdpSession,
    InspectorError,
    NodeInspector,
    debugger_url,
    parse_address,
)

log = logging.getLogger("monitors")
# A sample per 256 kB allocated on average: DevTools' 32 kB cost a saturated gateway 6 to 10 %
# of its throughput (docs/benchmarks.md), this about 1 %; a site holding a few MB of live
# memory still has ten samples or more.
ALLOCATION_INTERVAL_BYTES = 262144
CPU_INTERVAL_US = 1000
MAX_CPU_SAMPLES = 600_000
SNAPSHOT_TIMEOUT_S = 300.0
PROFILE_TIMEOUT_S = 60.0
CPU_PROFILE_FILE = "gateway-cpu.cpuprofile"
ALLOCATIONS_FILE = "gateway-allocations.heapprofile"
SNAPSHOT_FILES = {"warm": "gateway-heap-warm.heapsnapshot", "end": "gateway-heap-end.heapsnapshot"}
RECORD_FILE = "node-inspector.json"


class ProfilingError(ValueError):
    """A profiling option that cannot be used, in one line."""


@dataclass(frozen=True)
class ProfilingPlan:
    """What to record: allocation sampling, a CPU window (seconds from the start, `to_s` None
    for the run's end), and heap snapshots under a heap limit."""

    allocations: bool = True
    cpu_from_s: float | None = None
    cpu_to_s: float | None = None
    heap_snapshots: bool = False
    heap_snapshot_max_mb: float = 1024.0

    @property
    def cpu(self) -> bool:
        return self.cpu_from_s is not None


def cpu_window(text: str) -> tuple[float | None, float | None]:
    """`--cpu-profile`'s value: '' (none), 'run' (all of it), or 'FROM:TO' in seconds."""
    if not text:
        return None, None
    if text == "run":
        return 0.0, None
    start, sep, end = text.partition(":")
    try:
        window = float(start), float(end)
    except ValueError:
        window = (-1.0, -1.0)
    if not sep or window[0] < 0 or window[1] <= window[0]:
        raise ProfilingError(
            f"--cpu-profile {text!r}: expected FROM:TO in seconds of the run, e.g. 60:120"
        )
    return window


class NodeProfiling:
    """One run's recordings inside a Node.js gateway; `sampler` feeds the resource monitor."""

    def __init__(self, session: CdpSession, plan: ProfilingPlan) -> None:
        self.session = session
        self.plan = plan
        self.sampler = NodeInspector(session)
        self.notes: list[str] = list(self.sampler.notes)
        self.recorded: dict[str, Any] = {}
        self.folder: Path | None = None
        self.started = 0.0
        self.finished = False
        self.cpu_running = False
        self.allocations_running = False
        self.timers: list[gevent.Greenlet] = []
        self.heap_used_mb: Callable[[], float | None] = lambda: None

    @classmethod
    def attach(cls, address: str, plan: ProfilingPlan, *, allow_remote: bool) -> NodeProfiling:
        host, port = parse_address(address, allow_remote=allow_remote)
        return cls(CdpSession(debugger_url(host, port)), plan)

    def start(self, folder: Path, planned_s: float | None, warmup_s: float | None) -> None:
        """Begin the recordings of a run whose files go to `folder`."""
        self.finish_timers()
        self.folder, self.started, self.recorded = folder, time.monotonic(), {}
        self.finished = False
        self.notes = list(self.sampler.notes)
        if self.plan.cpu:
            start = self.plan.cpu_from_s or 0.0
            end = self.plan.cpu_to_s
            length = (end if end is not None else (planned_s or 600.0)) - start
            interval = max(CPU_INTERVAL_US, int(length * 1e6 / MAX_CPU_SAMPLES))
            if start == 0:
                # Before the allocation sampling: the profiler's own start allocates a few MB
                # (seen as 2 to 4 MB of "(EXTERNAL)" or of whatever function ran) that would
                # otherwise head the sites of live memory.
                self._try("CPU profile", self._start_cpu, interval)
            else:
                self.timers.append(
                    gevent.spawn_later(start, self._try, "CPU profile", self._start_cpu, interval)
                )
            if end is not None:
                self.timers.append(
                    gevent.spawn_later(end, self._try, "CPU profile", self._stop_cpu)
                )
        if self.plan.allocations:
            self._try("allocation sampling", self._start_allocations)
        if self.plan.heap_snapshots and warmup_s is not None:
            self.timers.append(
                gevent.spawn_later(warmup_s, self._try, "heap snapshot", self._snapshot, "warm")
            )

    def finish(self) -> None:
        """End the run's recordings and write them (at the load's end, before the report)."""
        self.finish_timers()
        if self.folder is None or self.finished:
            return
        self.finished = True
        if self.cpu_running:
            self._try("CPU profile", self._stop_cpu)
        if self.allocations_running:
            self._try("allocation sampling", self._stop_allocations)
        if self.plan.heap_snapshots:
            self._try("heap snapshot", self._snapshot, "end")
        self.write_record()

    def finish_timers(self) -> None:
        for timer in self.timers:
            timer.kill(block=True)
        self.timers = []

    def close(self) -> None:
        """Remove the probe, stop anything still running, let go of the inspector."""
        self.finish_timers()
        self.sampler.close()
        for method in ("Profiler.disable", "HeapProfiler.disable"):
            with contextlib.suppress(InspectorError):
                self.session.call(method, timeout_s=2.0)
        self.session.close()

    def _at(self) -> float:
        return round(time.monotonic() - self.started, 1)

    def _try(self, what: str, action: Callable[..., None], *args: Any) -> None:
        try:
            action(*args)
        except (InspectorError, OSError) as exc:
            note = f"{what}: {exc}"
            log.warning("node inspector: %s", note)
            self.notes.append(note)

    def _start_allocations(self) -> None:
        self.session.call("HeapProfiler.enable")
        self.session.call(
            "HeapProfiler.startSampling", {"samplingInterval": ALLOCATION_INTERVAL_BYTES}
        )
        self.allocations_running = True
        self.recorded["allocations"] = {
            "from_s": self._at(),
            "interval_bytes": ALLOCATION_INTERVAL_BYTES,
        }

    def _stop_allocations(self) -> None:
        self.allocations_running = False
        result = self.session.call("HeapProfiler.getSamplingProfile", timeout_s=PROFILE_TIMEOUT_S)
        self.session.call("HeapProfiler.stopSampling", timeout_s=PROFILE_TIMEOUT_S)
        written = self._write_json(ALLOCATIONS_FILE, result.get("profile") or {})
        self.recorded["allocations"].update(
            {"to_s": self._at(), "file": ALLOCATIONS_FILE, "bytes": written}
        )

    def _start_cpu(self, interval_us: int) -> None:
        at, at_unix, began = self._at(), time.time(), time.monotonic()
        self.session.call("Profiler.enable")
        self.session.call("Profiler.setSamplingInterval", {"interval": interval_us})
        self.session.call("Profiler.start")
        self.cpu_running = True
        # Starting the profiler holds the gateway (0.1 to 0.5 s seen on real gateways): the
        # event-loop figures leave that out, as they do a snapshot's pause.
        self.recorded["cpu"] = {
            "from_s": at,
            "at_unix": round(at_unix, 3),
            "held_s": round(time.monotonic() - began, 3),
            "interval_us": interval_us,
        }
        if self.allocations_running:
            self.notes.append(
                f"the CPU profile started at {at:g} s, inside the allocation sampling: the "
                "profiler's own few MB may show among the sites of live memory"
            )

    def _stop_cpu(self) -> None:
        if not self.cpu_running:
            return
        self.cpu_running = False
        result = self.session.call("Profiler.stop", timeout_s=PROFILE_TIMEOUT_S)
        written = self._write_json(CPU_PROFILE_FILE, result.get("profile") or {})
        self.recorded["cpu"].update(
            {"to_s": self._at(), "file": CPU_PROFILE_FILE, "bytes": written}
        )

    def _snapshot(self, label: str) -> None:
        heap = self.heap_used_mb()
        limit = self.plan.heap_snapshot_max_mb
        if heap is not None and heap > limit:
            self.notes.append(
                f"heap snapshot {label!r} skipped: the heap was {heap:.0f} MB, over "
                f"--heap-snapshot-max-mb {limit:g}"
            )
            return
        assert self.folder is not None
        path = self.folder / SNAPSHOT_FILES[label]
        at, at_unix, began = self._at(), time.time(), time.monotonic()
        with path.open("w", encoding="utf-8") as out:
            self.session.on(
                "HeapProfiler.addHeapSnapshotChunk",
                lambda params: out.write(params.get("chunk", "")),
            )
            try:
                self.session.call("HeapProfiler.enable")
                self.session.call(
                    "HeapProfiler.takeHeapSnapshot",
                    {"reportProgress": False, "captureNumericValue": False},
                    timeout_s=SNAPSHOT_TIMEOUT_S,
                )
            finally:
                self.session.on("HeapProfiler.addHeapSnapshotChunk", None)
        self.recorded.setdefault("snapshots", {})[label] = {
            "at_s": at,
            "at_unix": round(at_unix, 3),
            "file": path.name,
            "bytes": path.stat().st_size,
            "held_s": round(time.monotonic() - began, 2),
            "heap_used_mb": heap,
        }

    def _write_json(self, name: str, data: dict[str, Any]) -> int:
        assert self.folder is not None
        path = self.folder / name
        path.write_text(json.dumps(data, separators=(",", ":")), encoding="utf-8")
        return path.stat().st_size

    def write_record(self) -> None:
        if self.folder is None:
            return
        record = {"recorded": self.recorded, "notes": self.notes, "probe": self.sampler.probe}
        (self.folder / RECORD_FILE).write_text(json.dumps(record, indent=2), encoding="utf-8")
