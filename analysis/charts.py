"""The report's charts as plain geometry: polylines in an SVG box, axes and stage marks.

The HTML template only draws what this computes (templates do not compute numbers). Series
longer than `MOST_POINTS` are reduced to that many buckets, keeping each bucket's highest value
for peaks (CPU, memory, latency) so that a spike survives the reduction, or its mean for rates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

WIDTH, HEIGHT = 760, 200
LEFT, RIGHT, TOP, BOTTOM = 56, 12, 12, 26
MOST_POINTS = 720
COLORS = ("#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c")
Reduce = Literal["max", "mean"]


@dataclass
class Series:
    name: str
    t: list[float]  # seconds from the start of the run
    y: list[float]
    reduce: Reduce = "max"


@dataclass
class Line:
    name: str
    color: str
    points: str  # "x,y x,y ..." for <polyline>
    last: float | None


@dataclass
class Chart:
    key: str  # names the title in the message catalogue
    unit: str
    lines: list[Line] = field(default_factory=list)
    y_ticks: list[tuple[float, str]] = field(default_factory=list)
    x_ticks: list[tuple[float, str]] = field(default_factory=list)
    stage_marks: list[tuple[float, str]] = field(default_factory=list)
    width: int = WIDTH
    height: int = HEIGHT
    plot: tuple[int, int, int, int] = (LEFT, TOP, WIDTH - RIGHT, HEIGHT - BOTTOM)
    empty: bool = True


def reduced(t: np.ndarray, y: np.ndarray, how: Reduce, most: int = MOST_POINTS):
    if len(t) <= most:
        return t, y
    edges = np.linspace(t[0], t[-1], most + 1)
    bucket = np.clip(np.searchsorted(edges, t, side="right") - 1, 0, most - 1)
    counts = np.bincount(bucket, minlength=most)
    keep = counts > 0
    centres = (np.bincount(bucket, weights=t, minlength=most)[keep]) / counts[keep]
    if how == "mean":
        values = np.bincount(bucket, weights=y, minlength=most)[keep] / counts[keep]
    else:
        values = np.full(most, -np.inf)
        np.maximum.at(values, bucket, y)
        values = values[keep]
    return centres, values


def nice_ceiling(value: float) -> float:
    if value <= 0 or not math.isfinite(value):
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * power:
            return step * power
    return 10 * power


def short(value: float) -> str:
    if value >= 1_000_000:
        return f"{value / 1_000_000:g}M"
    if value >= 1000:
        return f"{value / 1000:g}k"
    return f"{value:g}"


def clock(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m{seconds % 60:02d}" if seconds % 60 else f"{seconds // 60}m"
    return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}"


def build_chart(
    key: str,
    unit: str,
    series: list[Series],
    duration_s: float,
    stages: list[tuple[float, str]] = (),  # type: ignore[assignment]
) -> Chart:
    chart = Chart(key, unit)
    x0, y0, x1, y1 = chart.plot
    span = max(duration_s, 1e-9)
    top = nice_ceiling(max((max(s.y) for s in series if s.y), default=0.0))

    def x_of(t: float) -> float:
        return x0 + (x1 - x0) * min(max(t, 0.0), span) / span

    def y_of(v: float) -> float:
        return y1 - (y1 - y0) * min(max(v, 0.0), top) / top

    for number, one in enumerate(series):
        if not one.y:
            continue
        t, y = reduced(np.asarray(one.t, float), np.asarray(one.y, float), one.reduce)
        points = " ".join(f"{x_of(a):.1f},{y_of(b):.1f}" for a, b in zip(t, y, strict=True))
        chart.lines.append(Line(one.name, COLORS[number % len(COLORS)], points, float(y[-1])))
        chart.empty = False
    chart.y_ticks = [(y_of(top * f), short(top * f)) for f in (0.0, 0.25, 0.5, 0.75, 1.0)]
    step = nice_ceiling(span / 6)
    ticks = np.arange(0.0, span + 1e-9, step)
    chart.x_ticks = [(x_of(t), clock(t)) for t in ticks]
    chart.stage_marks = [(x_of(t), label) for t, label in stages if 0 < t < span]
    return chart
