"""The report model rendered: Jinja2 templates, words in two languages, charts as geometry.

Templates (`report_templates/`) only display: the numbers come computed in the model, the
charts' coordinates from `analysis.charts`, the words from `report_templates/messages.yaml`
(English and Brazilian Portuguese), numbers written as each language writes them.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import yaml
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from analysis.charts import Series, build_chart
from analysis.latency import percentile
from analysis.memory import process_memory_column
from analysis.run_data import RunData

TEMPLATES = Path(__file__).resolve().parent.parent / "report_templates"
LANGUAGES = ("en", "pt-BR")


def charts(run: RunData, start: float, duration_s: float) -> list[Any]:
    marks = [(s["started"] - start, s["label"]) for s in run.stages]
    width, buckets = run.windows.coarse(1.0)
    t = [at - start for at, _ in buckets]
    built = []
    if buckets:
        built.append(
            build_chart(
                "throughput",
                "/s",
                [
                    Series("requests/s", t, [w.requests / width for _, w in buckets], "mean"),
                    Series("failures/s", t, [w.failures / width for _, w in buckets], "mean"),
                ],
                duration_s,
                marks,
            )
        )
        busy = [(at - start, w) for at, w in buckets if w.requests]
        built.append(
            build_chart(
                "latency",
                "ms",
                [
                    Series(
                        f"p{p}",
                        [at for at, _ in busy],
                        [percentile(w.histogram, p) / 1000 for _, w in busy],
                    )
                    for p in (50, 95, 99)
                ],
                duration_s,
                marks,
            )
        )
    load = []
    offered = [
        (s["started"] - start, s["ended"] - start, s["start"], s["end"])
        for s in run.stages
        if s.get("unit") == "arrivals/s"
    ]
    users = run.column("users")
    if offered:
        ts, ys = [], []
        for a, b, r0, r1 in offered:
            ts += [a, b]
            ys += [r0, r1]
        load.append(Series("arrivals/s offered", ts, ys, "max"))
    elif not users.empty:  # in an open model, users are the idle pool: not load
        load.append(Series("users", list(users.index - start), list(users), "max"))
    if load:
        built.append(build_chart("load", "", load, duration_s, marks))
    for key, names, unit in (
        ("cpu", ("cpu_pct",), "%"),
        ("memory", (process_memory_column(run), "heap_used_mb"), "MB"),
        ("queue", ("queue_depth", "sessions_active", "websocket_connections"), ""),
    ):
        series = []
        for name in names:
            column = run.column(name)
            if not column.empty:
                series.append(Series(name, list(column.index - start), list(column), "max"))
        if series:
            built.append(build_chart(key, unit, series, duration_s, marks))
    return built


def load_messages(lang: str) -> dict[str, Any]:
    if lang not in LANGUAGES:
        raise ValueError(f"unknown language {lang!r} (known: {', '.join(LANGUAGES)})")
    catalogue = yaml.safe_load((TEMPLATES / "messages.yaml").read_text(encoding="utf-8"))
    return catalogue[lang]


def number(value: Any, lang: str = "en", digits: int = 2) -> str:
    """A number as people of `lang` write it: 1,234.5 in English, 1.234,5 in Portuguese."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value)
    if not math.isfinite(value):
        return str(value)
    if isinstance(value, int) or (value.is_integer() and abs(value) >= 100):
        text = f"{int(value):,}"
    else:
        text = f"{value:,.{digits}f}"
        if "." in text:
            text = text.rstrip("0").rstrip(".")
        if text in ("-0", ""):
            text = "0"
    if lang == "pt-BR":
        text = text.replace(",", "\x00").replace(".", ",").replace("\x00", ".")
    return text


def flame_graph(run: RunData, model: dict[str, Any]) -> Markup | None:
    """A Node.js gateway's CPU flame graph, beside the report, to embed in its HTML as it is:
    `analysis.cpu_profile` draws it self-contained, its text escaped."""
    name = (model.get("node") or {}).get("flame_graph")
    path = Path(run.folder) / name if name else None
    if path is None or not path.is_file():
        return None
    text = path.read_text(encoding="utf-8")
    return Markup(text[text.find("<svg") :])  # without its XML declaration


def render(model: dict[str, Any], run: RunData, lang: str = "en") -> dict[str, str]:
    messages = load_messages(lang)
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html", "html.j2"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = lambda v, digits=2: number(v, lang, digits)

    def say(key: str, **values: Any) -> str:
        node: Any = messages
        for part in key.split("."):
            node = node.get(part, key) if isinstance(node, dict) else key
        text = node if isinstance(node, str) else key
        shown = {k: number(v, lang) if isinstance(v, int | float) else v for k, v in values.items()}
        return text.format(**shown) if shown else text

    env.globals["t"] = say
    span = run.span()
    start = span[0] if span else 0.0
    duration = float(model["run"].get("duration_s") or (span[1] - span[0] if span else 0.0))
    context = {
        "r": model,
        "lang": lang,
        "charts": charts(run, start, duration),
        "flame_graph": flame_graph(run, model),
    }
    return {
        "report.html": env.get_template("report.html.j2").render(context),
        "report.md": env.get_template("report.md.j2").render(context),
    }
