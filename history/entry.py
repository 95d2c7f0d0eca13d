"""One run as the history keeps it: read from its folder (report.json and summary.json).

The entry holds what a team asks about across nights: which run (scenario, target, profile,
a label such as the gateway's version, start, length, whether it was cut short), its verdict,
every criterion's value, each stage's figures, the breaking point, memory per session, the
leak slope, and `figures`: the key figures the history charts and the trend test read, by
name (`FIGURES` says each one's unit and which way is worse; a request's p95 is
`p95_ms <METHOD name>`).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

WorseWhen = Literal["higher", "lower"]


@dataclass(frozen=True)
class Figure:
    name: str
    unit: str
    worse_when: WorseWhen
    about: str


FIGURES: tuple[Figure, ...] = (
    Figure("latency_p95_ms", "ms", "higher", "latency p95 from the due time, overall"),
    Figure("latency_p99_ms", "ms", "higher", "latency p99 from the due time, overall"),
    Figure("error_rate_pct", "%", "higher", "error rate, overall"),
    Figure("requests_per_s", "/s", "lower", "throughput over the run's window"),
    Figure("breaking_point_per_s", "/s", "lower", "load of the last stage that held"),
    Figure("memory_per_session_mb", "MB", "higher", "gateway memory per live session"),
    Figure("leak_mb_per_hour", "MB/h", "higher", "memory trend after the warm-up"),
    Figure("memory_peak_mb", "MB", "higher", "gateway memory, peak"),
    Figure("cpu_pct", "%", "higher", "gateway CPU sustained (the criterion's value)"),
)
BY_NAME = {f.name: f for f in FIGURES}
REQUEST_P95 = "p95_ms "  # + a request's key: that request's p95 (worse when higher)


def figure_of(name: str) -> Figure:
    """The figure `name`, a request's p95 included."""
    if name in BY_NAME:
        return BY_NAME[name]
    if name.startswith(REQUEST_P95):
        return Figure(name, "ms", "higher", f"latency p95 of {name.removeprefix(REQUEST_P95)}")
    raise KeyError(name)


class EntryError(ValueError):
    """A folder that holds no judged run; the message is one line."""


@dataclass
class RunEntry:
    folder: str
    scenario: str
    started_at: float  # unix seconds
    # target: the gateway's URL, or "embedded" for the embedded reference gateway
    verdict: str  # approved | degraded | failed
    partial: bool = False
    target: str | None = None
    profile: str | None = None
    label: str | None = None
    duration_s: float | None = None
    time_scale: float | None = None
    workers: int | None = None
    breaking_point_per_s: float | None = None  # the last stage that held (None: none, or n/a)
    memory_per_session_mb: float | None = None
    leak_mb_per_hour: float | None = None
    criteria: list[dict[str, Any]] = field(default_factory=list)
    stages: list[dict[str, Any]] = field(default_factory=list)
    figures: dict[str, float | None] = field(default_factory=dict)

    @property
    def report_html(self) -> str:
        return str(Path(self.folder) / "report.html")


CRITERION_KEYS = ("name", "metric", "scope", "value", "unit", "op", "limit", "status")
STAGE_KEYS = (
    "index", "name", "unit", "start", "end", "duration_s", "requests", "error_rate_pct",
    "requests_per_s", "p50_ms", "p95_ms", "p99_ms", "cpu_pct",
)  # fmt: skip


def _json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EntryError(f"{path.parent}: no {path.name} (not a judged run)") from None
    except (OSError, ValueError) as exc:
        raise EntryError(f"{path}: cannot read it ({exc})") from None
    if not isinstance(data, dict):
        raise EntryError(f"{path}: not a JSON object")
    return data


def _unix(text: Any) -> float | None:
    if not text:
        return None
    try:
        return dt.datetime.fromisoformat(str(text)).timestamp()
    except ValueError:
        return None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def entry_from_folder(folder: Path, label: str | None = None) -> RunEntry:
    """The history's entry of the run in `folder` (its report must have been written)."""
    folder = Path(folder)
    report, summary = _json(folder / "report.json"), _json(folder / "summary.json")
    run = report.get("run") or {}
    started = _unix(run.get("started_at") or summary.get("started_at"))
    if started is None:
        raise EntryError(f"{folder}: the run has no start time")
    analysis = report.get("analysis") or {}
    per_session = analysis.get("memory_per_session") or {}
    leak = analysis.get("leak") or {}
    breaking = analysis.get("breaking_point") or {}
    last_good = breaking.get("last_good_stage") or {}
    criteria = [{k: c.get(k) for k in CRITERION_KEYS} for c in report.get("criteria") or []]
    totals = summary.get("totals") or {}
    latency = totals.get("latency") or {}
    by_metric = {(c["metric"], c["scope"]): c["value"] for c in criteria}
    memory = (report.get("gateway_memory") or {}).get("figure") or "rss_mb"
    sampled = ((summary.get("resources") or {}).get("figures") or {}).get(memory) or {}
    held = last_good.get("end") if breaking.get("applicable") else None
    figures: dict[str, float | None] = {
        "latency_p95_ms": _number(latency.get("p95_ms")),
        "latency_p99_ms": _number(latency.get("p99_ms")),
        "error_rate_pct": _number(totals.get("error_rate_pct")),
        "requests_per_s": _number(totals.get("requests_per_s")),
        "breaking_point_per_s": _number(held),
        "memory_per_session_mb": _number(
            per_session.get("mb") if per_session.get("estimated") else None
        ),
        "leak_mb_per_hour": _number(leak.get("mb_per_hour") if leak.get("judged") else None),
        "memory_peak_mb": _number(sampled.get("peak")),
        "cpu_pct": _number(by_metric.get(("cpu_pct", "overall"))),
    }
    for key, entry in (summary.get("requests") or {}).items():
        if not key.startswith("WS "):
            figures[REQUEST_P95 + key] = _number(((entry or {}).get("latency") or {}).get("p95_ms"))
    return RunEntry(
        folder=str(folder),
        scenario=str(run.get("scenario") or summary.get("scenario") or "?"),
        started_at=started,
        verdict=str((report.get("verdict") or {}).get("status") or "failed"),
        partial=bool(run.get("partial") or summary.get("partial")),
        # The embedded gateway is on a new port at every run: it is one target all the same.
        target="embedded"
        if run.get("embedded_target") or summary.get("embedded_target")
        else run.get("target") or summary.get("target"),
        profile=summary.get("profile"),
        label=label if label is not None else summary.get("label"),
        duration_s=_number(run.get("duration_s")),
        time_scale=_number(run.get("time_scale")),
        workers=run.get("workers") if isinstance(run.get("workers"), int) else None,
        breaking_point_per_s=figures["breaking_point_per_s"],
        memory_per_session_mb=figures["memory_per_session_mb"],
        leak_mb_per_hour=figures["leak_mb_per_hour"],
        criteria=criteria,
        stages=[{k: s.get(k) for k in STAGE_KEYS} for s in report.get("stages") or []],
        figures=figures,
    )
