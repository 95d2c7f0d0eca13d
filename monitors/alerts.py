"""Live alerts on the gateway's samples: high memory, high CPU, and a possible memory leak.

The plan's monitor calls "5 samples in a row grew" a leak, which noise triggers and a slow leak
evades. Here the leak alert looks at a sliding window of memory samples and fires when the
Theil-Sen slope (the median of all pairwise slopes, robust to spikes) exceeds a growth rate and
the lower bound of its 95 % confidence interval (from Kendall's S) is above zero: growth that is
both material and consistent, and only over stretches where every figure that holds memory in a
gateway held still (users, live sessions, queued messages, WebSocket and TCP connections: those
the report's leak analysis explains memory by): memory that follows a ramp of load is not a
leak. During a load run the report's own analysis of the run so far gives the leak alert
instead (`suite.live_run`: `watch_leak=False` here), so that the live and the final judgement
are one; this one watches a gateway without a run (`python -m monitors`). Memory is the heap
where the gateway's metrics give it, else its process tree's (RSS for one process, PSS for a
tree: `monitors.process.memory_column`); the leak window follows the latter.

The thresholds come from the criteria file's `alerts:` section (`load_alert_rules`); the window
is a quarter of the run's planned length, 20 s to 600 s (`leak_window_for`), unless that
section sets `leak_window_s`: a run compressed to a minute gets a 20 s window, the plan's 24 h
endurance run a 10 min one.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from monitors.figures import HOLDING_MEMORY
from monitors.process import memory_column

Z95 = 1.96
LEAK_WINDOW_MIN_S, LEAK_WINDOW_MAX_S = 20.0, 600.0
# Theil-Sen sorts all n(n-1)/2 slopes: 600 points cost ~70 ms, every second. A longer window is
# averaged down to this many consecutive groups first (~0.5 ms), which also quietens the noise.
LEAK_MAX_POINTS = 60
LOAD_FIGURES = ("users", *HOLDING_MEMORY)


def theil_sen(points: list[tuple[float, float]]) -> tuple[float, float, float]:
    """(slope, low, high): the Theil-Sen slope of (x, y) points and its 95 % interval."""
    slopes = sorted(
        (y2 - y1) / (x2 - x1)
        for i, (x1, y1) in enumerate(points)
        for x2, y2 in points[i + 1 :]
        if x2 != x1
    )
    if not slopes:
        return 0.0, 0.0, 0.0
    n, count = len(points), len(slopes)
    slope = (slopes[(count - 1) // 2] + slopes[count // 2]) / 2
    spread = Z95 * math.sqrt(n * (n - 1) * (2 * n + 5) / 18)
    low_index = max(0, math.floor((count - spread) / 2))
    high_index = min(count - 1, math.ceil((count + spread) / 2))
    return slope, slopes[low_index], slopes[high_index]


def thinned(points: list[tuple[float, float]], most: int) -> list[tuple[float, float]]:
    """`points` averaged down to `most` groups of consecutive points (as they are if fewer)."""
    if len(points) <= most:
        return points
    size = len(points) / most
    groups = (points[round(i * size) : round((i + 1) * size)] for i in range(most))
    return [
        (sum(x for x, _ in group) / len(group), sum(y for _, y in group) / len(group))
        for group in groups
    ]


@dataclass
class AlertRules:
    memory_mb: float = 1024.0  # the plan's monitor: heap above 1 GB
    cpu_pct: float = 80.0  # the plan's limit: CPU per instance
    leak_mb_per_min: float = 1.0
    leak_window_s: float = 120.0
    sustain_samples: int = 5  # CPU must stay high this long (one busy second is not an alert)


def leak_window_for(duration_s: float | None, default: float = AlertRules.leak_window_s) -> float:
    """The leak window for a run of `duration_s`: a quarter of it, within 20 s and 600 s (so a
    compressed run gets its early warning in time and a day-long one is not fooled by minutes)."""
    if not duration_s or duration_s <= 0:
        return default
    return min(max(duration_s / 4, LEAK_WINDOW_MIN_S), LEAK_WINDOW_MAX_S)


def load_alert_rules(path: Path, duration_s: float | None = None) -> AlertRules:
    """The `alerts:` section of a criteria file (any AlertRules field; others are an error).

    Without `leak_window_s` there, the window follows the run's planned duration
    (`leak_window_for`). A missing file or section gives the defaults.
    """
    section: Any = {}
    if path.is_file():
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise ValueError(f"{path.name}: cannot read: {exc}") from None
        section = (data.get("alerts") if isinstance(data, dict) else None) or {}
    if not isinstance(section, dict):
        raise ValueError(f"{path.name}: alerts: expected a mapping")
    known = [f.name for f in fields(AlertRules)]
    values: dict[str, Any] = {}
    for key, value in section.items():
        if key not in known:
            raise ValueError(f"{path.name}: alerts.{key}: unknown (known: {', '.join(known)})")
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise ValueError(f"{path.name}: alerts.{key}: expected a positive number")
        values[key] = int(value) if key == "sustain_samples" else float(value)
    values.setdefault("leak_window_s", leak_window_for(duration_s))
    return AlertRules(**values)


@dataclass
class Alert:
    kind: str  # high_memory | high_cpu | possible_leak
    message: str
    t: float

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "message": self.message, "t": round(self.t, 1)}


@dataclass
class AlertWatch:
    """Feed samples in order; `check` returns the alerts that start now (each kind once)."""

    rules: AlertRules = field(default_factory=AlertRules)
    watch_leak: bool = True
    memory: deque[tuple[float, float]] = field(default_factory=deque)
    load: dict[str, deque[tuple[float, float]]] = field(default_factory=dict)  # figure: (t, v)
    high_cpu_streak: int = 0
    most_processes: float = 1.0  # the most the samples counted at once so far
    active: set[str] = field(default_factory=set)
    fired: list[Alert] = field(default_factory=list)

    def check(self, t: float, sample: dict[str, Any]) -> list[Alert]:
        new: list[Alert] = []
        self._track_load(t, sample)
        process_mb = sample.get(self._memory_column(sample))
        memory_mb = sample.get("heap_used_mb") or process_mb
        if memory_mb is not None:
            self._flag(
                new, "high_memory", memory_mb > self.rules.memory_mb, t,
                f"memory {memory_mb:.0f} MB above {self.rules.memory_mb:.0f} MB",
            )  # fmt: skip
            if self.watch_leak:
                self._watch_leak(new, t, process_mb if process_mb is not None else memory_mb)
        cpu = sample.get("cpu_pct_total")
        if cpu is not None:
            self.high_cpu_streak = self.high_cpu_streak + 1 if cpu > self.rules.cpu_pct else 0
            self._flag(
                new, "high_cpu", self.high_cpu_streak >= self.rules.sustain_samples, t,
                f"CPU {cpu:.0f} % above {self.rules.cpu_pct:.0f} % for "
                f"{self.high_cpu_streak} samples",
            )  # fmt: skip
        return new

    def _memory_column(self, sample: dict[str, Any]) -> str:
        """The process figure that is the gateway's memory (`memory_column`), by the most
        processes counted so far: from RSS to PSS when the first child appears, and the leak
        window starts again then, since the two do not join."""
        before = memory_column(self.most_processes)
        self.most_processes = max(self.most_processes, float(sample.get("processes") or 1))
        column = memory_column(self.most_processes)
        if column != before:
            self.memory.clear()
        return column

    def _watch_leak(self, new: list[Alert], t: float, memory_mb: float) -> None:
        window = self.memory
        window.append((t, memory_mb))
        while window and window[0][0] < t - self.rules.leak_window_s:
            window.popleft()
        span = window[-1][0] - window[0][0] if window else 0.0
        if len(window) < 10 or span < 0.8 * self.rules.leak_window_s:
            return
        if not self._steady_load():
            # Memory that grows with the load (users ramping, sessions opening) is not a leak:
            # judge only stretches where the load held still.
            return
        slope, low, _ = theil_sen(thinned(list(window), LEAK_MAX_POINTS))
        per_min = slope * 60
        self._flag(
            new, "possible_leak", per_min >= self.rules.leak_mb_per_min and low > 0, t,
            f"memory growing {per_min:.1f} MB/min over the last {span:.0f} s "
            f"(95 % lower bound {low * 60:.1f} MB/min)",
        )  # fmt: skip

    def _track_load(self, t: float, sample: dict[str, Any]) -> None:
        for name in LOAD_FIGURES:
            value = sample.get(name)
            if not isinstance(value, int | float):
                continue
            series = self.load.setdefault(name, deque())
            series.append((t, float(value)))
            while series and series[0][0] < t - self.rules.leak_window_s:
                series.popleft()

    def _steady_load(self) -> bool:
        """Every load figure varied by at most a tenth (or one unit) over the leak window."""
        for series in self.load.values():
            levels = [level for _, level in series]
            if levels and max(levels) - min(levels) > max(1.0, 0.1 * max(levels)):
                return False
        return True

    def _flag(self, new: list[Alert], kind: str, on: bool, t: float, message: str) -> None:
        if on and kind not in self.active:
            self.active.add(kind)
            alert = Alert(kind, message, t)
            new.append(alert)
            self.fired.append(alert)
        elif not on:
            self.active.discard(kind)
