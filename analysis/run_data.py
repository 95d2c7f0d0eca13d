"""A run as its files left it: what every analysis reads, live or long after (`make report`).

- `summary.json`: counts and lossless percentiles (`analysis.summary`);
- `timeline.json`: the HTTP requests in wall-clock windows and the stages of the plan
  (`analysis.timeline`), the recovery probe after the load, an abort if there was one;
- `samples.csv`: the gateway's resource samples, once a second (`monitors.storage`), and the
  generators' (`source` = `generator:<id>`).

Files may be missing (a run killed early, a gateway without metrics): whatever is absent is
empty here, and the analyses say "not measured" rather than guess.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.timeline import TIMELINE, Windows

SUMMARY, SAMPLES = "summary.json", "samples.csv"


class RunDataError(ValueError):
    """A folder that holds no run; the message is one line."""


@dataclass
class RunData:
    folder: Path
    summary: dict[str, Any]
    windows: Windows
    stages: list[dict[str, Any]]
    gateway: pd.DataFrame  # one row per gateway sample; `unix` is its wall-clock time
    generators: pd.DataFrame
    extra: dict[str, Any] = field(default_factory=dict)  # recovery probe, abort

    @property
    def scenario(self) -> str:
        return str(self.summary.get("scenario", "?"))

    def span(self) -> tuple[float, float] | None:
        """The run's wall-clock span, from its summary (start, end)."""
        start, end = self.summary.get("started_at"), self.summary.get("ended_at")
        if not start or not end:
            return None
        return pd.Timestamp(start).timestamp(), pd.Timestamp(end).timestamp()

    def column(self, name: str) -> pd.Series:
        """A gateway figure over time (index: wall-clock seconds); empty if never sampled."""
        if name not in self.gateway:
            return pd.Series(dtype=float)
        series = pd.to_numeric(self.gateway[name], errors="coerce")
        series.index = self.gateway["unix"]
        return series.dropna()


def load_run(folder: Path) -> RunData:
    folder = Path(folder)
    if not folder.is_dir():
        raise RunDataError(f"{folder}: no such run folder")
    summary_path = folder / SUMMARY
    if not summary_path.is_file():
        raise RunDataError(f"{folder}: no {SUMMARY} (not a run folder, or the run never started)")
    try:
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise RunDataError(f"{summary_path}: not valid JSON ({exc})") from exc
    timeline: dict[str, Any] = {}
    if (folder / TIMELINE).is_file():
        try:
            timeline = json.loads((folder / TIMELINE).read_text(encoding="utf-8"))
        except ValueError:
            timeline = {}  # written at the end: a run killed while writing it keeps the rest
    windows = Windows.decode(timeline["windows"]) if "windows" in timeline else Windows()
    stages = _covering(timeline.get("stages", []), windows)
    gateway, generators = _samples(folder / SAMPLES)
    extra = {k: v for k, v in timeline.items() if k not in ("windows", "stages")}
    return RunData(folder, summary, windows, stages, gateway, generators, extra)


def _covering(stages: list[dict[str, Any]], windows: Windows) -> list[dict[str, Any]]:
    """The first stage stretched back to the first request, the last on to the last one.

    The shape's clock is the master's: workers start a moment after it and stop a moment after
    it (a thousand users take most of a second to stop), and those requests were load too."""
    if not stages or not windows.windows:
        return stages
    first, last = min(windows.windows), max(windows.windows)
    stages = [dict(stage) for stage in stages]
    stages[0]["started"] = min(stages[0]["started"], first * windows.width_s)
    stages[-1]["ended"] = max(stages[-1]["ended"], (last + 1) * windows.width_s)
    return stages


def _samples(path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    empty = pd.DataFrame({"unix": pd.Series(dtype=float)})
    if not path.is_file() or path.stat().st_size == 0:
        return empty, empty
    try:
        frame = pd.read_csv(path, low_memory=False, on_bad_lines="skip")
    except (ValueError, pd.errors.ParserError):
        return empty, empty
    if frame.empty or "time" not in frame or "source" not in frame:
        return empty, empty
    # A run killed mid-write leaves a last line cut short: its time does not parse, dropped.
    stamps = pd.to_datetime(frame["time"], errors="coerce", utc=True, format="ISO8601")
    frame = frame.assign(unix=(stamps - pd.Timestamp(0, tz="UTC")).dt.total_seconds())
    frame = frame.dropna(subset=["unix"])
    frame = _with_extra(frame)
    is_gateway = frame["source"] == "gateway"
    return frame[is_gateway].reset_index(drop=True), frame[~is_gateway].reset_index(drop=True)


def _with_extra(frame: pd.DataFrame) -> pd.DataFrame:
    """The `extra` column's JSON fields (figures the file's header did not name, such as a
    gateway's cache sizes) as columns of their own; a fixed column of the same name wins."""
    if "extra" not in frame or not frame["extra"].notna().any():
        return frame
    parsed = []
    for text in frame["extra"]:
        try:
            value = json.loads(text) if isinstance(text, str) and text else {}
        except ValueError:
            value = {}
        parsed.append(value if isinstance(value, dict) else {})
    extra = pd.DataFrame(parsed, index=frame.index)
    extra = extra[[c for c in extra.columns if c not in frame.columns]]
    return pd.concat([frame, extra], axis=1) if not extra.empty else frame
