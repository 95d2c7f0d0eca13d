"""The run history as a page and as a terminal table.

`render_page` writes `history.html`, self-contained (inline CSS and SVG, no script, nothing to
fetch): the flagged drifts first, then one chart per figure across runs, each run a dot coloured
by its verdict (hollow when the run was cut short, and then outside the trend) that links to the
run's own report, the label (a gateway version, say) marked where it changes, Sen's line of the
trend drawn over it; then the runs, newest first. As in the run's report, the template only
displays: positions, ticks and words are computed here.

`terminal_table` says the same in plain text.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from analysis.charts import clock, nice_ceiling, short
from history.entry import RunEntry, figure_of
from history.trend import ALPHA, MIN_RUNS, Trend, amount, drift_summary, p_text, series

TEMPLATES = Path(__file__).resolve().parent / "templates"
PAGE = "history.html"
VERDICT_COLORS = {"approved": "#16a34a", "degraded": "#d97706", "failed": "#dc2626"}
UNKNOWN_COLOR = "#6b7280"
# The figures the tables of runs show (those the runs hold), by their column's short heading.
KEY_FIGURES = {
    "latency_p95_ms": "p95 ms",
    "error_rate_pct": "errors %",
    "requests_per_s": "req/s",
    "memory_per_session_mb": "MB/session",
}
WIDTH, HEIGHT = 760, 236
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 40, 26
INSET = 12  # keeps the first and last dot off the axes
LABEL_ROWS = (14, 28)  # baselines of the label marks' text, above the plot
CHAR_PX = 6.4  # width of a character of the marks' 11 px text, near enough to avoid overlaps
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@dataclass
class Dot:
    x: float
    y: float
    color: str
    hollow: bool
    href: str
    title: str


@dataclass
class LabelMark:
    x: float
    text: str
    text_y: float | None  # None: no room for the text, the line keeps it as its tooltip


@dataclass
class RunChart:
    figure: str
    unit: str
    about: str
    anchor: str
    trend: Trend
    summary: str
    dots: list[Dot] = field(default_factory=list)
    line: str = ""  # "x,y x,y ..." through the complete runs, the values the trend reads
    sen: tuple[float, float, float, float] | None = None
    label_marks: list[LabelMark] = field(default_factory=list)
    y_ticks: list[tuple[float, str]] = field(default_factory=list)
    x_ticks: list[tuple[float, str]] = field(default_factory=list)
    width: int = WIDTH
    height: int = HEIGHT
    plot: tuple[int, int, int, int] = (LEFT, TOP, WIDTH - RIGHT, HEIGHT - BOTTOM)


@dataclass
class RunRow:
    number: int
    start: str
    scenario: str
    label: str
    verdict: str
    color: str
    partial: bool
    duration: str
    figures: list[str]
    href: str
    found: bool


def when(unix: float, seconds: bool = False) -> str:
    """A start in UTC: the runs of a history come from machines in any zone."""
    moment = dt.datetime.fromtimestamp(unix, dt.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


def day(unix: float) -> str:
    moment = dt.datetime.fromtimestamp(unix, dt.UTC)
    return f"{moment.day} {MONTHS[moment.month - 1]}"


def number(value: float | None) -> str:
    """A figure for a table: fewer decimals as it grows, — when missing."""
    if value is None or not math.isfinite(value):
        return "—"
    size = abs(value)
    digits = 0 if size >= 100 else 1 if size >= 10 else 2
    return f"{value:,.{digits}f}"


def tick(value: float) -> str:
    return f"-{short(-value)}" if value < 0 else short(value)


def anchor_of(name: str) -> str:
    return "chart-" + re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower()


def report_link(entry: RunEntry, root: Path) -> tuple[str, bool]:
    """The run's report as a URL relative to the page's folder `root`, and whether it is there.

    A relative `entry.folder` is relative to the current dir, as the store recorded it."""
    report = os.path.abspath(entry.report_html)
    try:
        relative = os.path.relpath(report, os.path.abspath(root))
    except ValueError:  # another drive (Windows): no relative path exists
        return Path(report).as_uri(), os.path.isfile(report)
    return quote(Path(relative).as_posix()), os.path.isfile(report)


def y_scale(values: list[float]) -> tuple[float, float, float]:
    """Bottom, top and step of a chart's value axis: tight around the values (a drift of a few
    percent must show), from zero when the values come near it."""
    low, high = min(values), max(values)
    if low == high:
        pad = abs(low) * 0.1 or 1.0
        low, high = low - pad, high + pad
    if 0 <= low < 0.35 * high:
        low = 0.0
    step = nice_ceiling((high - low) / 4)
    return math.floor(low / step) * step, math.ceil(high / step) * step, step


def place_labels(changes: list[tuple[float, str]], right: float) -> list[LabelMark]:
    """Each label's text in the first row above the plot where it does not run into the text
    before it; none when neither row has room."""
    ends = [-math.inf] * len(LABEL_ROWS)
    marks = []
    for x, text in changes:
        width = CHAR_PX * len(text) + 8
        row = next(
            (i for i, end in enumerate(ends) if x + 3 >= end and x + width <= right + 40), None
        )
        if row is not None:
            ends[row] = x + width
        marks.append(LabelMark(x, text, None if row is None else LABEL_ROWS[row]))
    return marks


def build_run_chart(
    trend: Trend, runs: list[RunEntry], links: dict[int, tuple[str, bool]]
) -> RunChart:
    """The chart of `trend`'s figure across `runs` (oldest first; x is the run's place)."""
    figure = figure_of(trend.figure)
    chart = RunChart(
        trend.figure, figure.unit, figure.about, anchor_of(trend.figure), trend, trend_line(trend)
    )
    x0, y0, x1, y1 = chart.plot
    held = [
        (i, e, float(v))
        for i, e in enumerate(runs)
        if (v := e.figures.get(trend.figure)) is not None and math.isfinite(v)
    ]
    if not held:
        return chart
    bottom, top, step = y_scale([v for _, _, v in held])

    def x_of(index: int) -> float:
        if len(runs) == 1:
            return (x0 + x1) / 2
        return x0 + INSET + (x1 - x0 - 2 * INSET) * index / (len(runs) - 1)

    def y_of(value: float) -> float:
        return y1 - (y1 - y0) * (min(max(value, bottom), top) - bottom) / (top - bottom)

    for i, entry, value in held:
        state = entry.verdict + (", cut short: not in the trend" if entry.partial else "")
        title = (
            f"run {i + 1}, {when(entry.started_at)} UTC · {entry.label or 'no label'} · "
            f"{state} · {number(value)} {figure.unit}"
        )
        color = VERDICT_COLORS.get(entry.verdict, UNKNOWN_COLOR)
        chart.dots.append(
            Dot(x_of(i), y_of(value), color, entry.partial, links[id(entry)][0], title)
        )
    complete = {id(e) for e, _ in series(runs, trend.figure)}
    chart.line = " ".join(f"{x_of(i):.1f},{y_of(v):.1f}" for i, e, v in held if id(e) in complete)
    used = [i for i, e, _ in held if id(e) in complete]
    if trend.judged and trend.intercept is not None and len(used) >= 2:
        slope = trend.sen_slope_per_run or 0.0
        end = trend.intercept + slope * (len(used) - 1)
        chart.sen = (x_of(used[0]), y_of(trend.intercept), x_of(used[-1]), y_of(end))
    count = round((top - bottom) / step)
    levels = [round(bottom + k * step, 9) for k in range(count + 1)]  # no 0.30000000000000004
    chart.y_ticks = [(y_of(level), tick(level)) for level in levels]
    every = max(1, math.ceil(len(runs) / 7))
    shown = None
    for i in range(0, len(runs), every):
        text = day(runs[i].started_at)
        if text != shown:
            chart.x_ticks.append((x_of(i), text))
            shown = text
    chart.label_marks = place_labels(label_changes(runs, x_of), x1)
    return chart


def label_changes(runs: list[RunEntry], x_of: Callable[[int], float]) -> list[tuple[float, str]]:
    """Where a run's label differs from the last labelled run's: between the two runs' dots
    (the first label at its dot). Unlabelled runs change nothing: their label is unknown."""
    changes: list[tuple[float, str]] = []
    last: str | None = None
    last_i: int | None = None
    for i, entry in enumerate(runs):
        if entry.label is None or entry.label == last:
            continue
        x = x_of(i) if last_i is None else (x_of(i - 1) + x_of(i)) / 2
        changes.append((x, entry.label))
        last, last_i = entry.label, i
    return changes


def trend_line(trend: Trend) -> str:
    """What the trend test found, under the chart."""
    if not trend.judged:
        return f"Trend not judged: {trend.n} complete runs of the {MIN_RUNS} needed."
    said = (
        f"Mann-Kendall over {trend.n} complete runs: τ = {trend.tau:.2f}, "
        f"{p_text(trend.p_value or 0.0)}, Sen's slope {amount(trend.sen_slope_per_run or 0.0)} "
        f"{trend.unit} a run"
    )
    if trend.flagged:
        return f"{said}. Flagged: worsening (p < {ALPHA})."
    if trend.p_value is not None and trend.p_value < ALPHA and trend.direction != "flat":
        return f"{said}. Not flagged: a significant improvement."
    return f"{said}. Not flagged."


def distinct(values: Iterable[str | None]) -> list[str]:
    return sorted({v for v in values if v})


def header_facts(entries: list[RunEntry]) -> list[tuple[str, str]]:
    facts = []
    for what, values in (
        ("scenario", distinct(e.scenario for e in entries)),
        ("target", distinct(e.target for e in entries)),
        ("profile", distinct(e.profile for e in entries)),
    ):
        if values:
            facts.append((what if len(values) == 1 else what + "s", ", ".join(values)))
    partial = sum(e.partial for e in entries)
    runs = f"{len(entries)}" + (
        f" ({partial} cut short, left out of the trends)" if partial else ""
    )
    facts.append(("runs", runs))
    if entries:
        first, last = when(entries[0].started_at), when(entries[-1].started_at)
        facts.append(("from", f"{first} to {last} UTC" if first != last else f"{first} UTC"))
    labels = [e.label for e in entries if e.label]
    if labels:
        first, last = labels[0], labels[-1]
        facts.append(("labels", f"{first} to {last}" if first != last else first))
    return facts


def mixed(entries: list[RunEntry]) -> str | None:
    """A warning when the runs are not one series: trends across them compare unlike runs."""
    kinds = [
        f"{len(v)} {what}s"
        for what, v in (
            ("scenario", distinct(e.scenario for e in entries)),
            ("target", distinct(e.target for e in entries)),
            ("profile", distinct(e.profile for e in entries)),
        )
        if len(v) > 1
    ]
    if not kinds:
        return None
    return f"These runs mix {' and '.join(kinds)}: their trends compare unlike runs."


def key_figures(entries: list[RunEntry]) -> list[str]:
    return [n for n in KEY_FIGURES if any(e.figures.get(n) is not None for e in entries)]


def run_rows(
    runs: list[RunEntry], links: dict[int, tuple[str, bool]], names: list[str]
) -> list[RunRow]:
    rows = []
    for i, entry in enumerate(runs):
        href, found = links[id(entry)]
        rows.append(
            RunRow(
                number=i + 1,
                start=when(entry.started_at),
                scenario=entry.scenario,
                label=entry.label or "—",
                verdict=entry.verdict,
                color=VERDICT_COLORS.get(entry.verdict, UNKNOWN_COLOR),
                partial=entry.partial,
                duration="—" if entry.duration_s is None else clock(entry.duration_s),
                figures=[number(entry.figures.get(n)) for n in names],
                href=href,
                found=found,
            )
        )
    return rows[::-1]  # newest first: the night a team asks about


def page_path(out: Path) -> Path:
    return out if out.suffix in (".html", ".htm") else out / PAGE


def templates() -> Environment:
    return Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html", "html.j2"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def write_page(path: Path, template: str, **values: object) -> Path:
    """One of the history's pages, rendered from `template` with `values`, at `path`."""
    generated = when(dt.datetime.now(dt.UTC).timestamp(), seconds=True)
    html = templates().get_template(template).render(generated=generated, **values)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html, encoding="utf-8")
    return path


def render_page(
    entries: list[RunEntry], trends: list[Trend], title: str, out: Path, root: Path
) -> Path:
    """Write the history page of `entries` and their `trends` (`history.trend.trends`); return
    its path.

    `out` is the page's file, or a folder to write `history.html` into (created if missing).
    `root` is the folder the page is seen from, the one the links to the runs' reports are
    relative to: normally the page's own folder.
    """
    path = page_path(Path(out))
    runs = sorted(entries, key=lambda e: e.started_at)
    links = {id(e): report_link(e, Path(root)) for e in runs}
    names = key_figures(runs)
    return write_page(
        path,
        "history.html.j2",
        title=title,
        facts=header_facts(runs),
        mixed=mixed(runs),
        drift=drift_summary(trends),
        flagged=[(t, anchor_of(t.figure)) for t in trends if t.flagged],
        judged=any(t.judged for t in trends),
        charts=[build_run_chart(t, runs, links) for t in trends],
        colors=VERDICT_COLORS,
        columns=[(KEY_FIGURES[n], n) for n in names],
        rows=run_rows(runs, links, names),
        alpha=ALPHA,
        min_runs=MIN_RUNS,
    )


def text_table(header: list[str], rows: list[list[str]], right: set[int]) -> list[str]:
    widths = [max(len(r[c]) for r in [header, *rows]) for c in range(len(header))]
    return [
        "  ".join(
            cell.rjust(widths[c]) if c in right else cell.ljust(widths[c])
            for c, cell in enumerate(row)
        ).rstrip()
        for row in [header, *rows]
    ]


def terminal_table(entries: list[RunEntry], trends: list[Trend]) -> str:
    """The runs (oldest first, as a terminal scrolls) and the trends, in plain text; a flagged
    trend is marked with `!`."""
    runs = sorted(entries, key=lambda e: e.started_at)
    names = key_figures(runs)
    header = ["start (UTC)", "label", "verdict", *(KEY_FIGURES[n] for n in names)]
    rows = [
        [
            when(e.started_at),
            e.label or "—",
            e.verdict + (" (partial)" if e.partial else ""),
            *(number(e.figures.get(n)) for n in names),
        ]
        for e in runs
    ]
    lines = text_table(header, rows, set(range(3, len(header))))
    lines += ["", f"trends (Mann-Kendall, flagged ! when worsening with p < {ALPHA}):"]
    lines += [f"{'!' if t.flagged else ' '} {t.note}" for t in trends]
    lines += ["", drift_summary(trends)]
    return "\n".join(lines)


@dataclass
class Series:
    """One series of the history: a scenario on a target with one profile, and its page."""

    scenario: str
    target: str
    profile: str
    runs: int
    last_verdict: str
    drift: str
    flagged: bool
    href: str


def render_index(series_list: list[Series], title: str, out: Path) -> Path:
    """`history.html` when the history holds several series: each one's drift and a link to
    its own page (trends across unlike runs would mean nothing)."""
    path = page_path(Path(out))
    return write_page(path, "index.html.j2", title=title, series=series_list, colors=VERDICT_COLORS)
