"""Synthetic run folders, in the format the suite writes them, for the analysis tests.

- `summary.json`: the keys `analysis.summary.build_summary` writes (those the analyses read);
  latency figures come from real HdrHistograms (`analysis.latency.describe`);
- `timeline.json`: `{"windows": Windows.encode(), "stages": [...], **extra}`, as
  `analysis.run_record.RunRecord.timeline` writes it; stages as `StageTimeline` notes them;
- `samples.csv`: `t,time,source,<fields>,extra` with UTC ISO times to the millisecond, as
  `monitors.storage.SampleWriter` writes it (its clock is replaced by the sample's own time).
"""

from __future__ import annotations

import csv
import datetime as dt
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from analysis.latency import describe, new_histogram, record
from analysis.timeline import Windows
from monitors.storage import BASE_COLUMNS
from shapes.stage import StageMark

T0 = 1_790_000_000.0  # the runs' wall-clock start (2026-09-21T14:13:20Z), on a window edge


def iso(unix: float, timespec: str = "seconds") -> str:
    return dt.datetime.fromtimestamp(unix, dt.UTC).isoformat(timespec=timespec)


def latency_of(values_ms: Iterable[float]) -> dict[str, float]:
    histogram = new_histogram()
    for value in values_ms:
        record(histogram, value)
    return describe(histogram)


def request_entry(
    method: str, name: str, latencies_ms: Sequence[float], failures: int, duration_s: float
) -> dict[str, Any]:
    count = len(latencies_ms)
    return {
        "method": method,
        "name": name,
        "requests": count,
        "failures": failures,
        "error_rate_pct": round(100.0 * failures / count, 3) if count else None,
        "requests_per_s": round(count / duration_s, 3),
        "latency": latency_of(latencies_ms),
        "service": latency_of(latencies_ms),
    }


def make_summary(
    *,
    scenario: str = "stress",
    start: float = T0,
    duration_s: float = 60.0,
    requests: dict[str, tuple[Sequence[float], int]] | None = None,
    requests_per_s: float | None = None,
    sessions: tuple[int, int] = (0, 0),
    messages: dict[str, Any] | None = None,
    websocket: dict[str, Any] | None = None,
    errors: Sequence[dict[str, Any]] = (),
    arrivals: dict[str, Any] | None = None,
    peak_users: int = 0,
    target: str = "http://127.0.0.1:3000",
) -> dict[str, Any]:
    """`requests`: "METHOD /name" -> (latencies in ms, failures)."""
    entries = {}
    every: list[float] = []
    total_failures = 0
    for key, (latencies, failures) in (requests or {}).items():
        method, name = key.split(" ", 1)
        entries[key] = request_entry(method, name, latencies, failures, duration_s)
        every += list(latencies)
        total_failures += failures
    total = len(every)
    attempted, created = sessions
    return {
        "schema_version": 1,
        "scenario": scenario,
        "description": f"synthetic {scenario} run",
        "model": "arrivals",
        "time_scale": 1.0,
        "target": target,
        "embedded_target": False,
        "started_at": iso(start),
        "ended_at": iso(start + duration_s),
        "duration_s": duration_s,
        "partial": False,
        "workers": 1,
        "percentiles": "HdrHistogram, 3 significant digits, every sample",
        "totals": {
            "requests": total,
            "failures": total_failures,
            "error_rate_pct": round(100.0 * total_failures / total, 3) if total else None,
            "requests_per_s": requests_per_s
            if requests_per_s is not None
            else (round(total / duration_s, 3) if total else None),
            "rate_window_s": duration_s if total else None,
            "latency": latency_of(every),
            "service": latency_of(every),
        },
        "requests": entries,
        "peak_users": peak_users,
        "arrivals": arrivals,
        "sessions": {
            "attempted": attempted,
            "created": created,
            "success_rate_pct": round(100.0 * created / attempted, 3) if attempted else None,
            "never_ready": 0,
        },
        "messages": messages
        or {
            "accepted": 0,
            "throttled": 0,
            "delivered": 0,
            "failed": 0,
            "undelivered": 0,
            "delivery_rate_pct": None,
            "delivery_latency": {"count": 0},
        },
        "websocket": websocket
        or {"connected": 0, "failed": 0, "peak_open": 0, "peak_open_exact": True},
        "checks": {},
        "resources": None,
        "generators": None,
        "errors": list(errors),
    }


def stage_dicts(
    start: float, durations_s: Sequence[float], loads: Sequence[float]
) -> list[dict[str, Any]]:
    """Consecutive stages as `StageTimeline` records them (arrivals/s phases)."""
    stages = []
    at = start
    for index, (length, load) in enumerate(zip(durations_s, loads, strict=True)):
        mark = StageMark(index, f"phase {index + 1}", "arrivals/s", float(load), float(load))
        stages.append(
            {**mark.as_dict(), "label": mark.label(), "started": at, "ended": at + length}
        )
        at += length
    return stages


def write_samples(path: Path, rows: Sequence[dict[str, Any]], start: float = T0) -> None:
    """`rows`: dicts with `unix`, `source` and the sample's fields."""
    fields: list[str] = []
    for row in rows:
        fields += [k for k in row if k not in ("unix", "source") and k not in fields]
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow([*BASE_COLUMNS, *fields, "extra"])
        for row in rows:
            unix = row["unix"]
            line = [round(unix - start, 3), iso(unix, "milliseconds"), row.get("source", "gateway")]
            writer.writerow([*line, *(row.get(f, "") for f in fields), ""])


def write_run(
    folder: Path,
    summary: dict[str, Any],
    windows: Windows | None = None,
    stages: Sequence[dict[str, Any]] = (),
    samples: Sequence[dict[str, Any]] = (),
    extra: dict[str, Any] | None = None,
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    timeline = {
        "windows": (windows or Windows(1.0)).encode(),
        "stages": list(stages),
        **(extra or {}),
    }
    (folder / "timeline.json").write_text(json.dumps(timeline, indent=2) + "\n", encoding="utf-8")
    if samples:
        start = summary.get("started_at")
        write_samples(
            folder / "samples.csv",
            samples,
            dt.datetime.fromisoformat(start).timestamp() if start else T0,
        )
    return folder
