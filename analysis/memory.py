"""The gateway's memory: how much each live session costs, and whether it leaks.

Memory is the gateway's processes' (`memory_series`): RSS for a gateway that is one process,
PSS for one that runs children (a browser per session), which counts the pages they share once
where RSS counts them in every process; else its own resident-memory metric, else its heap.

- **Memory per session**: the least-squares slope of memory against the gateway's live sessions
  over the run's samples, with its standard error and 95 % interval. Only estimated when the
  session count moved enough to say anything (`min_session_spread`).
- **Leak**: memory that grows with time while the load that holds memory does not. The load
  figures are every one the run measured that can hold memory in a gateway: live sessions,
  queued messages, WebSocket subscriptions, open connections (keep-alive ones too) and the
  entries of the gateway's bounded caches (`cache_<name>_entries`, when its metrics name them;
  a cache that grew at one pace the whole run, its bound never reached, explains nothing: it
  cannot be told from a leak, and its memory is counted in the trend).
  After the warm-up, the trend of memory over time *holding those figures fixed* is the
  Theil-Sen slope of memory's residual against time's residual, both taken after a least-squares
  fit on the figures (Frisch-Waugh-Lovell), with its 95 % interval (Kendall's S). Samples are
  averaged into at most 200 consecutive groups first: neighbouring seconds are not
  independent, and the interval would otherwise be too narrow.

  What time shares with the load cannot be told from the load: where the load ramps the whole
  run (k6 stages climbing to 1000 users), time's residual is small and the interval wide, and
  the verdict is "not enough steady load to judge", with roughly how long a steady stretch
  would be enough. A leak is growth that is significant (the interval is above zero), material
  (above `leak_mb_per_hour`) and that keeps on: growth whose last third is confidently below
  the threshold levelled off (a warm-up, a bounded cache filling) and is not a leak.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from analysis.criteria import AnalysisSettings
from analysis.run_data import RunData
from monitors.alerts import theil_sen, thinned
from monitors.figures import HOLDING_MEMORY
from monitors.process import memory_column
from monitors.prometheus import CACHE_KEY

Z95 = 1.96
LEAK_GROUPS = 200
MIN_LEAK_SAMPLES = 20
# The figures that hold memory in a gateway, besides its caches (`CACHE_KEY`).
EXPLAINING = HOLDING_MEMORY
# Time varying apart from the load by less than this share of its own spread: the load
# ramped throughout, and a leak cannot be told from it unless the interval says otherwise;
# below `LEAST_STEADY_SHARE`, whatever the interval says: the slope then rests on a few
# seconds of jitter in the load, where a load figure that memory follows with a lag, or not
# quite in proportion, would read as a trend.
STEADY_SHARE = 0.25
LEAST_STEADY_SHARE = 0.05
LATE_FRACTION = 1 / 3  # growth that keeps on must still be there in the last third
# A Node.js gateway whose heap holds while its RSS grows: this long after the warm-up before
# that growth is a leak (native memory) rather than V8 and the allocator warming up.
NATIVE_LEAK_MIN_S = 600.0
# A cache whose entries follow time this closely grew at one pace throughout, its bound never
# seen: it cannot be told from a leak that grows per request, and explains nothing.
CACHE_TIME_CORRELATION = 0.99


def process_memory_column(run: RunData) -> str:
    """The sampled figure of the gateway's processes' memory in this run: PSS when any sample
    counted more than one process, else RSS (`monitors.process.memory_column`). Chosen for the
    whole run, not sample by sample: a tree's first child would otherwise join two figures.
    A run sampled before PSS was has RSS only."""
    processes = run.column("processes")
    column = memory_column(float(processes.max()) if not processes.empty else None)
    return column if not run.column(column).empty else "rss_mb"


def memory_series(run: RunData) -> tuple[str, pd.Series]:
    """The gateway's memory in MB, and which figure it is: its processes' if they were
    sampled (`process_memory_column`), else its own resident-memory metric, else its heap."""
    for name in (process_memory_column(run), "target_rss_mb", "heap_used_mb"):
        series = run.column(name)
        if not series.empty:
            return name, series
    return "", pd.Series(dtype=float)


def sessions_series(run: RunData) -> tuple[str, pd.Series]:
    """Live sessions: the gateway's own count where it exports one, else the suite's count of
    the sessions it holds (created and not deleted, and the ones the user named)."""
    for name in ("sessions_active", "suite_sessions_open"):
        series = run.column(name)
        if not series.empty:
            return name, series
    return "", pd.Series(dtype=float)


def leak_series(run: RunData, after_fraction: float) -> tuple[str, pd.Series, int | None]:
    """The memory a leak is judged on, its figure, and how many heap floors the run had after
    the warm-up (None for a gateway whose inspector was not attached).

    For a Node.js gateway's inspector (`--node-inspect`): its heap floor (`heap_after_gc_mb`,
    the heap used just after each major collection) when there are `MIN_LEAK_SAMPLES` of them,
    else the heap used with the memory its objects hold outside it (`heap_js_mb`: heap used +
    external), each second: the JS heap, where a leak of the gateway's own code is, and which,
    unlike RSS, does not grow while V8 and the allocator warm up. Otherwise the gateway's
    memory (`memory_series`)."""
    source, memory = memory_series(run)
    used, external = run.column("heap_used_mb"), run.column("heap_external_mb")
    if run.column("gc_count").empty or used.empty:
        return source, memory, None
    floor = run.column("heap_after_gc_mb").dropna()
    start, end = float(used.index.min()), float(used.index.max())
    after = int((floor.index >= start + after_fraction * (end - start)).sum())
    if after >= MIN_LEAK_SAMPLES:
        return "heap_after_gc_mb", floor, after
    heap = (used + external.reindex(used.index).fillna(0.0)).dropna()
    return "heap_js_mb", heap, after


def memory_basis(run: RunData) -> dict[str, Any]:
    """What the run's memory figures are of, for the report: the figure (`pss_mb`, `rss_mb`,
    `target_rss_mb`, `heap_used_mb`, or None), the most processes counted at once and their
    names (from the summary's `resources.process_tree`), whether children were looked for, and
    for PSS how many processes at most had their RSS counted instead."""
    source, _ = memory_series(run)
    counted = (run.summary.get("resources") or {}).get("process_tree") or {}
    processes, unreadable = run.column("processes"), run.column("pss_unreadable")
    return {
        "figure": source or None,
        "processes": int(processes.max()) if not processes.empty else None,
        "names": counted.get("names_at_most") or {},
        "children_counted": counted.get("children"),
        "pss_unreadable": int(unreadable.max())
        if source == "pss_mb" and not unreadable.empty
        else 0,
    }


def memory_per_session(run: RunData, settings: AnalysisSettings) -> dict[str, Any]:
    source, memory = memory_series(run)
    sessions_source, sessions = sessions_series(run)
    frame = pd.concat({"memory": memory, "sessions": sessions}, axis=1).dropna()
    if frame.empty:
        return {"estimated": False, "note": "no samples of memory and live sessions"}
    spread = frame["sessions"].max() - frame["sessions"].min()
    if spread < settings.min_session_spread:
        return {
            "estimated": False,
            "note": f"live sessions varied by {spread:g} only (at least "
            f"{settings.min_session_spread} needed to separate them from the baseline)",
        }
    x, y = frame["sessions"].to_numpy(float), frame["memory"].to_numpy(float)
    slope, intercept = np.polyfit(x, y, 1)
    residuals = y - (slope * x + intercept)
    n = len(x)
    sxx = float(((x - x.mean()) ** 2).sum())
    stderr = float(np.sqrt((residuals**2).sum() / max(1, n - 2) / sxx)) if n > 2 else 0.0
    total = float(((y - y.mean()) ** 2).sum())
    return {
        "estimated": True,
        "mb": round(float(slope), 4),
        "stderr_mb": round(stderr, 4),
        "low_mb": round(float(slope) - Z95 * stderr, 4),
        "high_mb": round(float(slope) + Z95 * stderr, 4),
        "baseline_mb": round(float(intercept), 1),
        "r2": round(1 - float((residuals**2).sum()) / total, 3) if total else None,
        "samples": n,
        "sessions_range": [float(frame["sessions"].min()), float(frame["sessions"].max())],
        "memory_source": source,
        "sessions_source": sessions_source,
    }


def load_figures(run: RunData) -> list[str]:
    """The load figures a run measured that can hold memory: `EXPLAINING`, and caches."""
    caches = sorted(str(c) for c in run.gateway.columns if CACHE_KEY.fullmatch(str(c)))
    sessions, _ = sessions_series(run)
    named = [sessions or EXPLAINING[0], *EXPLAINING[1:], *caches]
    return [name for name in named if not run.column(name).empty]


def _not_judged(note: str) -> dict[str, Any]:
    return {"judged": False, "detected": False, "note": note}


def _residual(design: np.ndarray, values: np.ndarray) -> np.ndarray:
    beta, *_ = np.linalg.lstsq(design, values, rcond=None)
    return values - design @ beta


def leak(run: RunData, settings: AnalysisSettings) -> dict[str, Any]:
    """The leak verdict: on the JS heap of an inspected Node.js gateway (`leak_series`), with
    its processes' memory judged beside it; on that memory alone otherwise."""
    source, memory, floors = leak_series(run, settings.warmup_fraction)
    result = judge_growth(run, settings, source, memory)
    if floors is None or "memory_source" not in result:  # not inspected, or too few samples
        return result
    result["floors_after_warmup"] = floors
    result["floors_needed"] = MIN_LEAK_SAMPLES
    process_source, process = memory_series(run)
    whole = judge_growth(run, settings, process_source, process)
    if not whole.get("judged"):
        return result
    result["process_memory"] = {
        key: whole.get(key)
        for key in ("memory_source", "mb_per_hour", "low_mb_per_hour", "high_mb_per_hour",
                    "late_mb_per_hour", "late_low_mb_per_hour", "detected")
    }  # fmt: skip
    if not whole["detected"] or result.get("detected") or not result.get("judged"):
        return result
    # The heap held while the processes' memory kept growing: native memory (a module's
    # buffers, the allocator), or V8 and the allocator warming up, which a fresh Node.js
    # process does for minutes. Only a long run tells them apart.
    span = float(result["to_unix"] - result["from_unix"])
    if span >= NATIVE_LEAK_MIN_S:
        return {**result, "detected": True, "reason": "outside_heap"}
    return {
        **result,
        "judged": False,
        "reason": "outside_heap",
        "run_s_needed": round(NATIVE_LEAK_MIN_S / (1 - settings.warmup_fraction)),
        "note": f"not enough data to judge a leak: the JS heap held ({result['mb_per_hour']:+.0f}"
        f" MB/h) while {process_source} grew {whole['mb_per_hour']:+.0f} MB/h and still did "
        "in the last third: memory outside the heap (native modules, the allocator) and a "
        "fresh process's warm-up look alike until about "
        f"{round(NATIVE_LEAK_MIN_S / (1 - settings.warmup_fraction))} s of run",
    }


def judge_growth(
    run: RunData, settings: AnalysisSettings, source: str, memory: pd.Series
) -> dict[str, Any]:
    """Whether `memory` grows after the warm-up beyond what the load explains (the module's
    text says how)."""
    if len(memory) < MIN_LEAK_SAMPLES:
        return _not_judged("too few memory samples to judge")
    start, end = float(memory.index.min()), float(memory.index.max())
    if source in ("heap_after_gc_mb", "heap_js_mb"):  # the run's span, not the floors'
        whole = run.column("heap_used_mb")
        if not whole.empty:
            start, end = float(whole.index.min()), float(whole.index.max())
    after = start + settings.warmup_fraction * (end - start)
    figures = load_figures(run)
    frame = pd.concat({"memory": memory, **{name: run.column(name) for name in figures}}, axis=1)
    frame = frame.sort_index()
    frame[figures] = frame[figures].ffill().fillna(0.0)
    frame = frame[frame.index >= after].dropna(subset=["memory"])
    if len(frame) < MIN_LEAK_SAMPLES:
        return _not_judged("too few samples after the warm-up")
    t = frame.index.to_numpy(float) - float(frame.index[0])
    y = frame["memory"].to_numpy(float)
    varying = [n for n in figures if frame[n].std() > 0]
    steady_caches = [
        n
        for n in varying
        if CACHE_KEY.fullmatch(n) and np.corrcoef(frame[n], t)[0, 1] > CACHE_TIME_CORRELATION
    ]
    used = [n for n in varying if n not in steady_caches]
    design = np.column_stack([np.ones_like(y), *(frame[n].to_numpy(float) for n in used)])
    # Time and memory, each less what the load figures explain: their slope is memory's
    # trend with the load held fixed, and time's residual is what is left of steady load.
    t_left, y_left = _residual(design, t), _residual(design, y)
    steady_share = float(t_left.std() / t.std()) if t.std() > 0 else 0.0
    slope, low, high = theil_sen(thinned(list(zip(t_left, y_left, strict=True)), LEAK_GROUPS))
    beta, *_ = np.linalg.lstsq(design, y - slope * t, rcond=None)
    coefficients = {n: round(float(b), 5) for n, b in zip(used, beta[1:], strict=True)}
    explained = design[:, 1:] @ beta[1:]
    per_hour, low_h, high_h = slope * 3600, low * 3600, high * 3600
    raw_slope, _, _ = theil_sen(thinned(list(zip(t, y, strict=True)), LEAK_GROUPS))
    threshold = settings.leak_mb_per_hour
    result: dict[str, Any] = {
        "judged": True,
        "detected": False,
        "mb_per_hour": round(per_hour, 2),
        "low_mb_per_hour": round(low_h, 2),
        "high_mb_per_hour": round(high_h, 2),
        "raw_mb_per_hour": round(raw_slope * 3600, 2),
        "threshold_mb_per_hour": threshold,
        "from_unix": float(frame.index[0]),
        "to_unix": float(frame.index[-1]),
        "samples": len(t),
        "load_figures": [n for n in figures if n not in steady_caches],
        "explained_by": coefficients,
        # Caches that grew at one pace throughout: their memory is counted in the trend.
        "caches_counted": [
            {"figure": n, "from": float(frame[n].iloc[0]), "to": float(frame[n].iloc[-1])}
            for n in steady_caches
        ],
        "steady_share": round(steady_share, 3),
        "growth_mb": round(slope * (t[-1] - t[0]), 2),
        "memory_source": source,
    }
    significant = low_h > 0 and per_hour > threshold
    cannot_rule_out = not significant and high_h > threshold
    if cannot_rule_out and steady_share >= STEADY_SHARE:
        # Steady load, but too short or too noisy a run: the interval still holds leaks
        # over the threshold, and "no leak" would be a guess.
        noise = float(np.std(y_left - slope * t_left))
        rate = len(t) / max(1.0, float(t[-1] - t[0]))
        needed = round(steady_seconds_needed(noise, threshold, rate))
        return {
            **result,
            "judged": False,
            "reason": "noisy",
            "steady_s_needed": needed,
            "note": f"not enough data to judge a leak: the trend is {per_hour:+.0f} MB/h, 95 % "
            f"interval {low_h:+.0f} to {high_h:+.0f}, which holds growth over the "
            f"{threshold:g} MB/h threshold; about {needed} s at a steady load would narrow it",
        }
    uncertain = cannot_rule_out and steady_share < STEADY_SHARE
    if uncertain or steady_share < LEAST_STEADY_SHARE:
        noise = float(np.std(y_left - slope * t_left))
        # Some figure varied (with none, time's residual is all of time): the one most like it.
        ramped = max(used, key=lambda n: abs(np.corrcoef(frame[n], t)[0, 1]))
        ramp = frame[ramped]
        needed = round(steady_seconds_needed(noise, threshold))
        return {
            **result,
            "judged": False,
            "reason": "ramped",
            "ramped_figure": ramped,
            "ramp_from": round(float(ramp.iloc[0]), 1),
            "ramp_to": round(float(ramp.iloc[-1]), 1),
            "steady_s_needed": needed,
            "note": "not enough steady load to judge a leak: the load ramped with time "
            f"throughout ({ramped} {ramp.iloc[0]:.0f} to {ramp.iloc[-1]:.0f}), so memory that "
            f"follows it cannot be told from a leak (the trend is {per_hour:+.0f} MB/h, 95 % "
            f"interval {low_h:+.0f} to {high_h:+.0f}); about {needed} s at a steady load "
            "would be enough",
        }
    if significant:
        late = t >= t[-1] * (1 - LATE_FRACTION)
        left = y - explained
        points = list(zip(t[late].tolist(), left[late].tolist(), strict=True))
        late_slope, late_low, late_high = theil_sen(thinned(points, LEAK_GROUPS))
        result["late_mb_per_hour"] = round(late_slope * 3600, 2)
        result["late_low_mb_per_hour"] = round(late_low * 3600, 2)
        result["late_high_mb_per_hour"] = round(late_high * 3600, 2)
        result["levels_off"] = bool(late_high * 3600 < threshold)
        keeps_on = late_low > 0 and late_slope * 3600 > threshold
        if not result["levels_off"] and not keeps_on:
            return _too_short(result, t, left - slope * t, late, settings)
        result["detected"] = keeps_on
    return result


def _too_short(
    result: dict[str, Any],
    t: np.ndarray,
    noise: np.ndarray,
    late: np.ndarray,
    settings: AnalysisSettings,
) -> dict[str, Any]:
    """Growth after the warm-up that its last third cannot place: a warm-up that flattens (a
    fresh Node.js heap, a JIT, caches filling) and growth that keeps on look alike until the
    run is long enough for the last third alone to tell them apart."""
    rate = len(t) / max(1.0, float(t[-1] - t[0]))  # samples a second: sparse for the floor
    late_needed = steady_seconds_needed(float(np.std(noise[late])), settings.leak_mb_per_hour, rate)
    needed = round(late_needed / LATE_FRACTION / (1 - settings.warmup_fraction))
    span = round(float(t[-1] - t[0]))
    return {
        **result,
        "judged": False,
        "reason": "too_short",
        "run_s_needed": needed,
        "note": "not enough data to judge a leak: memory grew "
        f"{result['mb_per_hour']:+.0f} MB/h over the {span} s after the warm-up, but in "
        f"its last third at {result['late_mb_per_hour']:+.0f} MB/h (95 % interval "
        f"{result['late_low_mb_per_hour']:+.0f} to {result['late_high_mb_per_hour']:+.0f}), "
        "which cannot tell a warm-up that flattens from growth that keeps on; a run of about "
        f"{needed} s at this noise would",
    }


def steady_seconds_needed(
    noise_mb: float, threshold_mb_per_hour: float, samples_per_s: float = 1.0
) -> float:
    """Roughly how long a stretch of steady load gives a Theil-Sen interval narrower than the
    threshold at this noise: the slope's standard error over D seconds of r samples a second
    is noise * sqrt(12 / r) / D^1.5."""
    per_second = threshold_mb_per_hour / 3600  # positive: AnalysisSettings says so
    spread = Z95 * max(noise_mb, 1e-3) * (12 / max(samples_per_s, 1e-3)) ** 0.5
    return max(float(MIN_LEAK_SAMPLES), (spread / per_second) ** (2 / 3))
