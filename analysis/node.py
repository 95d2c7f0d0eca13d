"""Inside a Node.js gateway: what its inspector recorded (`--node-inspect`), for the report.

From the samples: garbage collection (its pause share of the run's time, collections a
second), the event loop's delay (the median of the per-second medians, the highest per-second
p99 and the longest delay, and the seconds whose p99 was over `EVENT_LOOP_DELAY_MS`), and the
heap (peak used, the floor after major collections first and last). From the run's folder
(`monitors.node_profiling`): the sites of the memory still live at the end (the sampling heap
profile), the hottest functions of the CPU profile with its GC and idle shares, and what grew
between the two heap snapshots by constructor. Anything missing is left out; the recording's
own notes (a profile that could not be had) come along.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from analysis.allocations import SnapshotError, allocation_sites, snapshot_diff
from analysis.cpu_profile import hot_functions
from analysis.run_data import RunData
from monitors.node_profiling import ALLOCATIONS_FILE, CPU_PROFILE_FILE, RECORD_FILE, SNAPSHOT_FILES

log = logging.getLogger("analysis")
TOP = 10
FLAME_GRAPH_FILE = "gateway-cpu.svg"
# The event loop is late by more than this at p99 of a second: requests waited behind it.
EVENT_LOOP_DELAY_MS = 100.0


def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(float(value), digits)


def gc_figures(run: RunData) -> dict[str, Any] | None:
    pause, count = run.column("gc_pause_ms"), run.column("gc_count")
    if pause.empty:
        return None
    seconds = max(1.0, float(pause.index.max() - pause.index.min()) + 1.0)
    return {
        "pause_share": round(float(pause.sum()) / (seconds * 1000.0), 4),
        "pause_ms_total": round(float(pause.sum()), 1),
        "pause_ms_peak_per_s": round(float(pause.max()), 1),
        "per_s": round(float(count.sum()) / seconds, 2) if not count.empty else None,
        "major": int(run.column("gc_major_count").sum()),
        "seconds": round(seconds),
    }


def held_by_recordings(recorded: dict[str, Any]) -> list[tuple[float, float]]:
    """The wall-clock spans in which the suite's own recordings held the gateway (its heap
    snapshots, the CPU profiler's start), and the second after: the samples that counted the
    pause. The held time is measured by the suite, from the call to its answer."""
    held = [*(recorded.get("snapshots") or {}).values(), recorded.get("cpu")]
    return [
        (float(h["at_unix"]) - 0.5, float(h["at_unix"]) + float(h.get("held_s", 0)) + 1.5)
        for h in held
        if isinstance(h, dict) and h.get("at_unix") is not None
    ]


def _outside(series: Any, spans: list[tuple[float, float]]) -> Any:
    for start, end in spans:
        series = series[(series.index < start) | (series.index > end)]
    return series


def event_loop_figures(
    run: RunData, held: list[tuple[float, float]] | None = None
) -> dict[str, Any] | None:
    """The event loop's delay, outside the seconds the suite's recordings held the gateway
    (`held`): those delays are the suite's own."""
    held = held or []
    p50 = _outside(run.column("eventloop_delay_p50_ms"), held)
    p99 = _outside(run.column("eventloop_delay_p99_ms"), held)
    longest = _outside(run.column("eventloop_delay_max_ms"), held)
    if p99.empty:
        return None
    worst = float(longest.idxmax()) if not longest.empty else None
    return {
        "p50_ms": _round(p50.median()),
        "p99_ms_peak": _round(p99.max()),
        "max_ms": _round(longest.max()) if not longest.empty else None,
        "max_at_unix": worst,
        "seconds": len(p99),
        "seconds_over": int((p99 > EVENT_LOOP_DELAY_MS).sum()),
        "limit_ms": EVENT_LOOP_DELAY_MS,
        "seconds_left_out": int(len(run.column("eventloop_delay_p99_ms")) - len(p99)),
    }


def heap_figures(run: RunData) -> dict[str, Any] | None:
    used, floor = run.column("heap_used_mb"), run.column("heap_after_gc_mb")
    if used.empty:
        return None
    figures: dict[str, Any] = {"used_peak_mb": _round(used.max(), 1)}
    for key, name in (("total_peak_mb", "heap_total_mb"), ("external_peak_mb", "heap_external_mb")):
        column = run.column(name)
        if not column.empty:
            figures[key] = _round(column.max(), 1)
    if not floor.empty:
        figures |= {
            "floor_first_mb": _round(floor.iloc[0], 1),
            "floor_last_mb": _round(floor.iloc[-1], 1),
            "floors": len(floor),
        }
    return figures


def _read(folder: Path, name: str, what: str, notes: list[str], read: Any) -> Any:
    path = folder / name
    if not path.is_file():
        return None
    try:
        return read(path)
    except (OSError, ValueError, KeyError, SnapshotError) as exc:
        notes.append(f"{what} ({name}) could not be read: {exc}")
        return None


def node_inside(run: RunData) -> dict[str, Any] | None:
    """What the inspector of a Node.js gateway recorded, or None for a run without one."""
    folder = Path(run.folder)
    notes: list[str] = []
    record = _read(folder, RECORD_FILE, "the recording's record", notes, _json) or {}
    recorded = record.get("recorded") or {}
    taken = recorded.get("snapshots") or {}
    figures = {
        "gc": gc_figures(run),
        "event_loop": event_loop_figures(run, held_by_recordings(recorded)),
        "heap": heap_figures(run),
    }
    if not record and not any(figures.values()):
        return None
    notes = [*record.get("notes", []), *notes]
    for label, snapshot in taken.items():
        notes.append(
            f"the {label} heap snapshot took {snapshot.get('held_s', 0):g} s from "
            f"{snapshot.get('at_s', 0):g} s ({snapshot.get('bytes', 0) / 2**20:.0f} MB "
            "written): the gateway stopped while V8 walked its heap and served slower while "
            "it sent the file; the latency of those seconds is the snapshot's, and the "
            "event-loop figures leave them out"
        )
    cpu_start = recorded.get("cpu") or {}
    if cpu_start.get("held_s"):
        notes.append(
            f"starting the CPU profiler held the gateway {cpu_start['held_s']:g} s at "
            f"{cpu_start.get('from_s', 0):g} s: the event-loop figures leave that second out"
        )
    sites = _read(
        folder,
        ALLOCATIONS_FILE,
        "the allocation profile",
        notes,
        lambda p: allocation_sites(p, TOP),
    )
    cpu = _read(folder, CPU_PROFILE_FILE, "the CPU profile", notes, lambda p: hot_functions(p, TOP))
    before, after = (folder / SNAPSHOT_FILES[label] for label in ("warm", "end"))
    grown = None
    if before.is_file() and after.is_file():
        grown = _read(
            folder, after.name, "the heap snapshots", notes, lambda p: snapshot_diff(before, p, TOP)
        )
    return {
        **figures,
        "allocations": sites,
        "cpu": cpu,
        "flame_graph": FLAME_GRAPH_FILE if cpu is not None else None,
        "snapshots": {
            "taken": taken,
            "grown": grown,
        },
        "recorded": recorded,
        "notes": notes,
    }


def _json(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text(encoding="utf-8")))
