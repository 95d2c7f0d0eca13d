"""Drift across runs: the Mann-Kendall trend test over each key figure, run after run.

A figure's values are read in the runs' time order, runs cut short (`partial`) left out (they
stopped early: their figures are not comparable) and runs without the figure skipped. The
Mann-Kendall test asks whether later runs tend to be higher (or lower) than earlier ones,
without assuming a straight line or normal noise; Sen's slope (the median of the pairwise
slopes) says by how much, per run. A trend is *flagged* when it is significant (p < `ALPHA`)
and goes the way the figure's `worse_when` says is worse: latency rising, throughput falling.
A significant improvement is reported, never flagged.

Fewer than `MIN_RUNS` values are not judged: a handful of nights says nothing reliable. A
series of identical values is flat. The test reads each figure on its own: each steady figure
is flagged by chance one time in forty (p < 0.05, its worse way only), so with ten figures a
steady history shows a flag about one time in five; a flag is a reason to look at the chart,
not a verdict.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Literal

import pymannkendall

from history.entry import FIGURES, REQUEST_P95, RunEntry, figure_of

ALPHA = 0.05
MIN_RUNS = 8

Direction = Literal["up", "down", "flat"]
RISING = {"up": "rising", "down": "falling", "flat": "flat"}


@dataclass(frozen=True)
class Trend:
    """One figure's trend across runs.

    `direction` is the way the values lean (the sign of Mann-Kendall's S), significant or not;
    "flat" when they do not lean at all or there are too few to judge. `worse` says that way is
    the figure's worse one; `flagged` that it is also significant. `tau`, `p_value`,
    `sen_slope_per_run` and `intercept` (Sen's line: value = intercept + slope * k at the k-th
    value read, 0 first) are None when not judged.
    """

    figure: str
    n: int
    tau: float | None
    p_value: float | None
    sen_slope_per_run: float | None
    intercept: float | None
    direction: Direction
    worse: bool
    flagged: bool
    note: str
    p_family: float | None = None  # p adjusted for the other figures judged with it (Holm)

    @property
    def judged(self) -> bool:
        return self.p_value is not None

    @property
    def unit(self) -> str:
        return figure_of(self.figure).unit


def series(entries: Iterable[RunEntry], name: str) -> list[tuple[RunEntry, float]]:
    """The runs the trend of `name` reads, with their value: complete runs holding a finite
    value, oldest first (the store gives them so; sorted again, as the test needs the order)."""
    kept = []
    for entry in sorted(entries, key=lambda e: e.started_at):
        value = entry.figures.get(name)
        if entry.partial or value is None or not math.isfinite(value):
            continue
        kept.append((entry, float(value)))
    return kept


def amount(value: float) -> str:
    """A slope with its sign, three significant digits, never in e-notation: +0.412, -1.2,
    +1,234, -0.0000123; 0 without a sign."""
    if value == 0 or not math.isfinite(value):
        return f"{abs(value):g}"
    if abs(value) >= 1000:
        return f"{value:+,.0f}"
    digits = max(0, 2 - math.floor(math.log10(abs(value))))
    text = f"{value:+.{digits}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def p_text(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def trend_of(name: str, values: list[float]) -> Trend:
    """The trend of figure `name` over `values`, in time order."""
    figure = figure_of(name)
    n = len(values)
    if n < MIN_RUNS:
        note = f"{name}: not enough runs ({n} of {MIN_RUNS})"
        return Trend(name, n, None, None, None, None, "flat", False, False, note)
    if len(set(values)) == 1:
        # No variance: pymannkendall answers p = 1 here already; said plainly all the same.
        note = f"{name} flat over {n} runs: the same value every run ({values[0]:g} {figure.unit})"
        return Trend(name, n, 0.0, 1.0, 0.0, values[0], "flat", False, False, note)
    result = pymannkendall.original_test(values, alpha=ALPHA)
    s, p = float(result.s), float(result.p)
    slope, intercept = float(result.slope), float(result.intercept)
    direction: Direction = "up" if s > 0 else "down" if s < 0 else "flat"
    worse = direction == ("up" if figure.worse_when == "higher" else "down")
    flagged = worse and p < ALPHA
    change = f"{amount(slope)} {figure.unit} a run, Mann-Kendall {p_text(p)}"
    if p >= ALPHA or direction == "flat":
        note = f"{name}: no significant trend over {n} runs ({change})"
    elif worse:
        note = f"{name} {RISING[direction]} over {n} runs: {change}"
    else:
        note = f"{name} {RISING[direction]} over {n} runs, an improvement: {change}"
    return Trend(name, n, float(result.Tau), p, slope, intercept, direction, worse, flagged, note)


def figure_names(entries: Iterable[RunEntry]) -> list[str]:
    """The figures some complete run holds a value of: `FIGURES`' order, then each request's
    p95 by name."""
    held = {
        name
        for entry in entries
        if not entry.partial
        for name, value in entry.figures.items()
        if value is not None
    }
    requests = sorted(name for name in held if name.startswith(REQUEST_P95))
    return [f.name for f in FIGURES if f.name in held] + requests


def trends(entries: list[RunEntry]) -> list[Trend]:
    """The trend of every figure the entries hold (see `figure_names`), partial runs left out.

    The entries should be one series (a scenario on a target, one profile): a trend across
    different scenarios compares unlike runs.
    """
    found = [
        trend_of(name, [v for _, v in series(entries, name)]) for name in figure_names(entries)
    ]
    return holm(found)


def holm(found: list[Trend]) -> list[Trend]:
    """The trends with `p_family`, Holm's step-down adjustment over the judged ones, and
    flagged only where that is under `ALPHA`."""
    judged = sorted((t for t in found if t.p_value is not None), key=lambda t: t.p_value or 0.0)
    adjusted: dict[str, float] = {}
    running = 0.0
    for rank, trend in enumerate(judged):
        running = max(running, min(1.0, (len(judged) - rank) * (trend.p_value or 0.0)))
        adjusted[trend.figure] = running
    out = []
    for trend in found:
        family = adjusted.get(trend.figure)
        flagged = trend.flagged and family is not None and family < ALPHA
        note = trend.note
        if trend.flagged and not flagged:
            note += f", not significant among {len(judged)} figures (Holm: p = {family:.3f})"
        out.append(replace(trend, p_family=family, flagged=flagged, note=note))
    return out


def drift_summary(found: list[Trend]) -> str:
    """The overall drift in one line, for the terminal."""
    flagged = [t for t in found if t.flagged]
    judged = [t for t in found if t.judged]
    if not judged:
        most = max((t.n for t in found), default=0)
        return f"drift: not judged, not enough runs ({most} of {MIN_RUNS})"
    runs = max(t.n for t in judged)
    if not flagged:
        return (
            f"drift: none, {len(judged)} figures over up to {runs} runs, "
            f"none worsening significantly (Mann-Kendall, p < {ALPHA})"
        )
    said = "; ".join(
        f"{t.figure} {RISING[t.direction]} {amount(t.sen_slope_per_run or 0.0)} {t.unit} a run "
        f"({p_text(t.p_value or 0.0)})"
        for t in flagged
    )
    what = "figure" if len(flagged) == 1 else "figures"
    return f"drift: {len(flagged)} {what} worsening over up to {runs} runs: {said}"
