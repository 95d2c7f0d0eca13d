"""What had reached a ceiling when the trouble began.

The **onset** is the first second (the run's windows merged to at least one second) from which
the error rate, or a latency percentile that a criterion limits, stays over its limit for
`SUSTAIN_S` seconds in a row: one bad second is not the start of anything. Its moment is the
first of the run's own windows over the limit within that second.

A measured figure that can limit a gateway (live sessions, queue depth, open connections,
WebSocket subscriptions, CPU, event-loop delay, memory) is at its **ceiling** at the onset when

- a limit of it is known and it got within `AT_LIMIT` of it as the trouble began (in the
  samples from half a second before the onset to 3 s after): the gateway's session cap
  (`sessions_limit`) or queue capacity (`queue_capacity`) from its metrics, a criterion's limit
  for CPU or memory, `EVENT_LOOP_DELAY_MS` for the event loop; or
- it had climbed to that level (by a third at least, and past the figure's `floor`) and then
  held a plateau: for `HOLD_S` seconds from the onset (or to the end of the trouble) it stayed
  within `PLATEAU` of its level at the onset. Plateaus are named only when no figure stood at
  a known limit.

Each ceiling says its level, the limit when one is known, when the figure reached that level
and how long it held; the bottlenecks and the breaking point build their findings on these.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import pandas as pd

from analysis.latency import percentile
from analysis.memory import process_memory_column
from analysis.metrics import LATENCY
from analysis.run_data import RunData

SUSTAIN_S = 3
HOLD_S = 10.0
AT_LIMIT = 0.02
PLATEAU = 0.03
EVENT_LOOP_DELAY_MS = 100.0


@dataclass(frozen=True)
class Figure:
    """A figure that can limit a gateway; `column` is its name in the samples."""

    column: str
    floor: float  # a level below this is not the ceiling of anything
    limit_column: str = ""  # the gateway's own limit of it, when its metrics export one
    criterion: str = ""  # a criteria metric whose `max` is its limit
    fixed_limit: float | None = None


FIGURES = (
    Figure("sessions_active", 10, limit_column="sessions_limit"),
    Figure("queue_depth", 50, limit_column="queue_capacity"),
    Figure("connections", 10),
    Figure("websocket_connections", 10),
    Figure("cpu_pct", 50, criterion="cpu_pct"),
    Figure("eventloop_delay_p99_ms", 10, fixed_limit=EVENT_LOOP_DELAY_MS),  # the inspector's
    Figure("eventloop_lag_p99_ms", 10, fixed_limit=EVENT_LOOP_DELAY_MS),
    Figure("eventloop_lag_ms", 10, fixed_limit=EVENT_LOOP_DELAY_MS),
    Figure("heap_used_mb", 1, criterion="memory_mb"),
)
# The gateway's processes' memory: RSS, or PSS for a tree (`process_memory_column`).
PROCESS_MEMORY = Figure("rss_mb", 1, criterion="memory_mb")
# Memory that stops growing is what memory does; only a known limit makes it a ceiling.
LIMIT_ONLY = frozenset({"heap_used_mb", "rss_mb", "pss_mb"})


@dataclass(frozen=True)
class Onset:
    signal: str  # errors | latency
    at_unix: float
    until_unix: float  # the end of the trouble: the last second over the limit
    value: float
    limit: float
    metric: str  # error_rate_pct, p95_ms, ...


@dataclass(frozen=True)
class Ceiling:
    figure: str
    level: float
    limit: float | None  # the known limit it stood at; None for a plateau
    reached_unix: float  # when it reached the level it then held
    held_s: float  # how long it stayed there after the onset


def onset(run: RunData, limits: dict[str, float]) -> Onset | None:
    """The first sustained crossing of `limits` (`error_rate_pct`, `p50_ms` ... `p99_ms`)."""
    width, buckets = run.windows.coarse(1.0)
    signals = [("errors", "error_rate_pct"), *(("latency", m) for m in LATENCY)]
    found: list[Onset] = []
    for signal, metric in signals:
        if metric not in limits:
            continue
        over = [(at, value) for at, value in _values(buckets, metric) if value > limits[metric]]
        streak: list[tuple[float, float]] = []
        for at, value in over:
            if streak and at - streak[-1][0] > width * 1.5:
                streak = []  # a second under the limit in between: a new streak
            streak.append((at, value))
            if len(streak) * width >= SUSTAIN_S:
                break
        if len(streak) * width < SUSTAIN_S:
            continue
        first = streak[0]
        until = max(at for at, _ in over if at >= first[0]) + width
        began = _first_window_over(run, metric, limits[metric], first[0], first[0] + width)
        found.append(Onset(signal, began, until, round(first[1], 2), limits[metric], metric))
    return min(found, key=lambda o: o.at_unix) if found else None


def _first_window_over(run: RunData, metric: str, limit: float, start: float, end: float) -> float:
    """Within the first second over the limit, the start of its first window that was: the
    moment to read the figures at, to the run's own resolution (0.1 s to 0.2 s in a ramp)."""
    width = run.windows.width_s
    windows = [(i * width, w) for i, w in run.windows.between(start, end)]
    for at, value in _values(windows, metric):
        if value > limit:
            return at
    return start


def _values(buckets: list[tuple[float, Any]], metric: str) -> list[tuple[float, float]]:
    values = []
    for at, window in buckets:
        if not window.requests:
            continue
        if metric == "error_rate_pct":
            values.append((at, 100.0 * window.failures / window.requests))
        else:
            values.append((at, percentile(window.histogram, LATENCY[metric]) / 1000))
    return values


def ceilings(run: RunData, start: Onset, criteria_limits: dict[str, float]) -> list[Ceiling]:
    """The figures at a ceiling at `start`, the latest reached first. When some stood at a
    known limit, those only: the plateaus beside them are then more likely effects than
    causes (connections stop growing when every request is refused at once)."""
    found = []
    memory = replace(PROCESS_MEMORY, column=process_memory_column(run))
    for figure in (*FIGURES, memory):
        series = run.column(figure.column)
        if series.empty:
            continue
        ceiling = _ceiling(run, figure, series.sort_index(), start, criteria_limits)
        if ceiling is not None:
            found.append(ceiling)
    at_limit = [c for c in found if c.limit is not None]
    return sorted(at_limit or found, key=lambda c: -c.reached_unix)


def _limit(
    run: RunData, figure: Figure, at: float, criteria_limits: dict[str, float]
) -> float | None:
    if figure.limit_column:
        limit = run.column(figure.limit_column)
        near = limit[limit.index <= at + 1]
        return float(near.iloc[-1]) if not near.empty and near.iloc[-1] > 0 else None
    if figure.criterion:
        return criteria_limits.get(figure.criterion)
    return figure.fixed_limit


def _ceiling(
    run: RunData,
    figure: Figure,
    series: pd.Series,
    start: Onset,
    criteria_limits: dict[str, float],
) -> Ceiling | None:
    at = start.at_unix
    # Its level as the trouble began: sampled once a second, the sample before the onset may
    # still be below a cap that the next one shows reached.
    around = series[(series.index >= at - 0.5) & (series.index <= at + 3)]
    if around.empty:
        return None
    level = float(around.median())
    if level < figure.floor:
        return None
    limit = _limit(run, figure, at, criteria_limits)
    # At its limit if it got there as the trouble began: sampled once a second, the samples
    # around the onset may straddle the moment it did.
    at_limit = limit is not None and float(around.max()) >= limit * (1 - AT_LIMIT)
    if not at_limit and figure.column in LIMIT_ONLY:
        return None
    hold_end = min(start.until_unix, at + HOLD_S)
    after = series[(series.index >= at) & (series.index <= max(hold_end, at + 1))]
    band = max(PLATEAU * level, 1.0)
    held = not after.empty and float((after - level).abs().max()) <= band
    before = series[series.index < at]
    climbed = not before.empty and level - float(before.min()) >= max(level / 3, figure.floor)
    if not at_limit and not (held and climbed):
        return None
    # When it reached the level it held: the start of its last stretch within the band.
    below = before[before < level - band]
    lead = before[before.index > below.index[-1]] if not below.empty else before
    reached = float(lead.index[0]) if not lead.empty else at
    stayed = series[series.index >= at]
    left = stayed[(stayed - level).abs() > band]
    held_s = (float(left.index[0]) if not left.empty else float(stayed.index[-1])) - at
    return Ceiling(
        figure.column,
        # At a limit: the level it reached there (the median may hold a sample from before).
        round(float(around.max()) if at_limit else level, 2),
        round(limit, 2) if at_limit and limit is not None else None,
        reached,
        round(max(0.0, held_s), 1),
    )
