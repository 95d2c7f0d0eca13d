"""Bottlenecks found in a run's data, each with its evidence and a recommendation.

Every finding is a rule over measured numbers; none is printed without the numbers that
triggered it. When errors or latency went over their limits, the figures that had reached a
ceiling at that moment (`analysis.ceilings`: the session cap, a full queue, CPU, ...) come
first, each with the recommendation that follows from it; the errors finding then points to
them, and gives general advice only when no figure explains the errors, saying so.

A finding has a `kind` (which names its text and recommendation in the report's message
catalogue, so that it can be rendered in any language, unless `text_key` and `advice_key` name
other entries of it) and the `evidence` (numbers, and the time range when there is one).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from analysis.ceilings import EVENT_LOOP_DELAY_MS, Ceiling, Onset, ceilings, onset
from analysis.criteria import LATENCY_METRICS, Judgement
from analysis.latency import percentile
from analysis.metrics import RunMetrics

CORRELATION = 0.7  # rank correlation of windowed p95 with queue depth
THROTTLED_SHARE = 0.2
GENERATOR_CPU = 90.0
GC_SHARE = 0.10  # of the run's time paused in a Node gateway's garbage collector
# Figures whose ceiling the CPU profile explains: its hottest functions are the advice.
HOT_PATH_FIGURES = frozenset(
    {"cpu_pct", "eventloop_delay_p99_ms", "eventloop_lag_p99_ms", "eventloop_lag_ms"}
)


def find_bottlenecks(metrics: RunMetrics, judgements: list[Judgement]) -> list[dict[str, Any]]:
    limits = trouble_limits(metrics, judgements)
    start = onset(metrics.run, limits)
    reached = ceilings(metrics.run, start, figure_limits(judgements)) if start else []
    at_ceiling = {c.figure for c in reached}
    found = [
        *(ceiling(metrics, start, c) for c in reached if start is not None),
        latency_with_queue(metrics),
        None if "cpu_pct" in at_ceiling else cpu_saturation(metrics, judgements),
        per_session_memory(metrics, judgements),
        memory_leak(metrics),
        gc_pressure(metrics),
        websocket_failures(metrics),
        throttling(metrics),
        errors(metrics, judgements, start, reached),
        unexplained_latency(start, reached),
        None
        if at_ceiling & {"eventloop_delay_p99_ms", "eventloop_lag_p99_ms", "eventloop_lag_ms"}
        else event_loop_lag(metrics),
        generator_limited(metrics),
    ]
    return [f for f in found if f is not None]


def trouble_limits(metrics: RunMetrics, judgements: list[Judgement]) -> dict[str, float]:
    """The limits whose crossing is trouble: the error rate's and the latency percentiles',
    from the criteria over the whole run (or over the run's one request, when it has one)."""
    requests = list((metrics.run.summary.get("requests") or {}).keys())
    scopes = {"overall", *(requests if len(requests) == 1 else ())}
    limits: dict[str, float] = {}
    for j in judgements:
        wanted = j.metric == "error_rate_pct" or j.metric in LATENCY_METRICS
        if wanted and j.op == "max" and j.scope in scopes:
            limits[j.metric] = min(j.limit, limits.get(j.metric, j.limit))
    return limits


def figure_limits(judgements: list[Judgement]) -> dict[str, float]:
    """The criteria's limits of figures that can be a ceiling (CPU, memory), over the run."""
    return {
        j.metric: j.limit
        for j in judgements
        if j.metric in ("cpu_pct", "memory_mb") and j.op == "max" and j.scope == "overall"
    }


def ceiling(metrics: RunMetrics, start: Onset, reached: Ceiling) -> dict[str, Any]:
    """A figure at its ceiling when the trouble began; evidence for the figure's own advice
    (for CPU and the event loop, the CPU profile's hottest functions when there is one)."""
    estimate = metrics.memory_per_session
    hot = hot_functions_text(metrics.node)
    return {
        **_finding(
            "ceiling",
            figure=reached.figure,
            level=reached.level,
            limit=reached.limit,
            reached_unix=reached.reached_unix,
            held_s=reached.held_s,
            signal=start.signal,
            metric=start.metric,
            onset_unix=start.at_unix,
            value=start.value,
            signal_limit=start.limit,
            mb_per_session=estimate["mb"] if estimate.get("estimated") else None,
            hot=hot,
        ),
        "text_key": f"ceilings.{reached.figure}."
        + ("at_limit" if reached.limit is not None else "plateau"),
        # The session cap's advice weighs raising it against the memory each session held.
        "advice_key": f"ceilings.{reached.figure}.advice"
        + ("_memory" if reached.figure == "sessions_active" and estimate.get("estimated") else "")
        + ("_hot" if reached.figure in HOT_PATH_FIGURES and hot else ""),
    }


def _finding(kind: str, **evidence: Any) -> dict[str, Any]:
    return {"kind": kind, "evidence": evidence}


def _violated(judgements: list[Judgement], metric: str) -> Judgement | None:
    return next(
        (j for j in judgements if j.metric == metric and j.status in ("fail", "degrade")), None
    )


def latency_with_queue(metrics: RunMetrics) -> dict[str, Any] | None:
    run = metrics.run
    queue = run.column("queue_depth")
    if queue.empty or queue.max() < 10:
        return None
    width = run.windows.width_s
    rows = []
    for index, window in sorted(run.windows.windows.items()):
        if window.requests < 5:
            continue
        start = index * width
        depth = queue[(queue.index >= start - 1) & (queue.index < start + width + 1)]
        if depth.empty:
            continue
        p95 = percentile(window.histogram, 95) / 1000
        rows.append((start, float(depth.mean()), p95))
    if len(rows) < 8:
        return None
    frame = pd.DataFrame(rows, columns=["t", "queue", "p95"])
    rho = frame["queue"].rank().corr(frame["p95"].rank())
    if not np.isfinite(rho) or rho < CORRELATION:
        return None
    low = frame[frame["queue"] <= frame["queue"].quantile(0.25)]
    high = frame[frame["queue"] >= frame["queue"].quantile(0.75)]
    if high["p95"].median() < 2 * max(low["p95"].median(), 0.001):
        return None
    return _finding(
        "latency_with_queue",
        correlation=round(float(rho), 2),
        queue_low=round(float(low["queue"].median()), 1),
        p95_low_ms=round(float(low["p95"].median()), 1),
        queue_high=round(float(high["queue"].median()), 1),
        p95_high_ms=round(float(high["p95"].median()), 1),
        from_unix=float(high["t"].min()),
        to_unix=float(high["t"].max() + width),
    )


def cpu_saturation(metrics: RunMetrics, judgements: list[Judgement]) -> dict[str, Any] | None:
    violated = _violated(judgements, "cpu_pct")
    if violated is None or violated.value is None:
        return None
    cpu = metrics.run.column("cpu_pct")
    hot = cpu[cpu > violated.limit]
    return _finding(
        "cpu_saturation",
        sustained_pct=violated.value,
        limit_pct=violated.limit,
        seconds_above=len(hot),
        from_unix=float(hot.index.min()) if not hot.empty else None,
        to_unix=float(hot.index.max()) if not hot.empty else None,
    )


def per_session_memory(metrics: RunMetrics, judgements: list[Judgement]) -> dict[str, Any] | None:
    violated = _violated(judgements, "memory_per_session_mb")
    estimate = metrics.memory_per_session
    if violated is None or not estimate.get("estimated"):
        return None
    return _finding(
        "memory_per_session",
        mb=estimate["mb"],
        low_mb=estimate["low_mb"],
        high_mb=estimate["high_mb"],
        limit_mb=violated.limit,
        sessions_low=estimate["sessions_range"][0],
        sessions_high=estimate["sessions_range"][1],
    )


def memory_leak(metrics: RunMetrics) -> dict[str, Any] | None:
    """A leak; its advice names where the live memory was allocated and what grew between
    the heap snapshots when the inspector recorded them, and asks for them when not."""
    leak = metrics.leak
    if not leak.get("detected"):
        return None
    finding = _finding(
        "memory_leak",
        mb_per_hour=leak["mb_per_hour"],
        low_mb_per_hour=leak["low_mb_per_hour"],
        growth_mb=leak["growth_mb"],
        from_unix=leak["from_unix"],
        to_unix=leak["to_unix"],
        memory=leak.get("memory_source", ""),
        sites=allocation_sites_text(metrics.node),
        grown=grown_text(metrics.node),
    )
    evidence = finding["evidence"]
    measured = "_".join(key for key in ("sites", "grown") if evidence[key])
    if measured:
        finding["advice_key"] = f"findings.memory_leak.advice_{measured}"
    elif metrics.node is not None:  # a Node gateway, inspected, but nothing recorded
        finding["advice_key"] = "findings.memory_leak.advice_node"
    return finding


def gc_pressure(metrics: RunMetrics) -> dict[str, Any] | None:
    """A Node gateway that spent more than `GC_SHARE` of the run paused in its collector."""
    gc = (metrics.node or {}).get("gc")
    if not gc or gc["pause_share"] < GC_SHARE:
        return None
    hot = hot_functions_text(metrics.node)
    cpu = (metrics.node or {}).get("cpu") or {}
    finding = _finding(
        "gc_pressure",
        share_pct=round(100 * gc["pause_share"], 1),
        limit_pct=round(100 * GC_SHARE),
        per_s=gc["per_s"],
        peak_ms=gc["pause_ms_peak_per_s"],
        profile_gc_pct=round(100 * cpu["gc_share"], 1) if cpu.get("gc_share") else None,
        hot=hot,
        sites=allocation_sites_text(metrics.node),
    )
    if hot:
        finding["advice_key"] = "findings.gc_pressure.advice_hot"
    return finding


def _site(site: dict[str, Any]) -> str:
    where = site.get("file") or site.get("url")
    if where and site.get("line"):
        where = f"{where}:{site['line']}"
    return f"{site.get('name') or '(anonymous)'} ({where or 'native'})"


def allocation_sites_text(node: dict[str, Any] | None, top: int = 3) -> str:
    """The top sites of live memory at the end: `name (file:line) 12.3 MB (61 %)`, ..."""
    sites = ((node or {}).get("allocations") or {}).get("sites") or []
    return "; ".join(
        f"{_site(s)} {s['bytes'] / 2**20:.1f} MB ({100 * s['share']:.0f} %)" for s in sites[:top]
    )


def grown_text(node: dict[str, Any] | None, top: int = 3) -> str:
    """What grew most between the heap snapshots: `LeakyEntry +50,000 (+3.1 MB)`, ..."""
    grown = (((node or {}).get("snapshots") or {}).get("grown") or {}).get("grown") or []
    return "; ".join(
        f"{g['name']} {g['count_delta']:+,} ({g['self_bytes_delta'] / 2**20:+.1f} MB)"
        for g in grown[:top]
        if g["self_bytes_delta"] > 0
    )


def hot_functions_text(node: dict[str, Any] | None, top: int = 3) -> str:
    """The gateway's hottest JavaScript functions in the CPU profile, by self time as shares
    of its busy time (idle left out): `name (file:line) 41 %`, ...; under 1 % is not hot.
    V8's builtins (`now`, `writev`: no file) are left out: their time is their callers' to
    spend less of, and a caller that busy-waits on `Date.now()` is the one to name."""
    cpu = (node or {}).get("cpu") or {}
    busy = cpu.get("busy_ms") or 0.0
    own = [f for f in cpu.get("functions") or [] if f.get("file") or f.get("url")]
    shares = [(f, 100 * f["self_ms"] / busy) for f in own if busy]
    return "; ".join(f"{_site(f)} {share:.0f} %" for f, share in shares[:top] if share >= 1)


def websocket_failures(metrics: RunMetrics) -> dict[str, Any] | None:
    websocket = metrics.run.summary.get("websocket") or {}
    failed = websocket.get("failed") or 0
    if not failed:
        return None
    open_now = metrics.run.column("websocket_connections")
    return _finding(
        "websocket_failures",
        failed=int(failed),
        connected=int(websocket.get("connected") or 0),
        peak_open=float(open_now.max()) if not open_now.empty else websocket.get("peak_open"),
    )


def throttling(metrics: RunMetrics) -> dict[str, Any] | None:
    messages = metrics.run.summary.get("messages") or {}
    throttled, accepted = messages.get("throttled") or 0, messages.get("accepted") or 0
    if not throttled or throttled / (throttled + accepted) < THROTTLED_SHARE:
        return None
    return _finding(
        "throttling",
        throttled=int(throttled),
        accepted=int(accepted),
        share_pct=round(100 * throttled / (throttled + accepted), 1),
    )


def errors(
    metrics: RunMetrics,
    judgements: list[Judgement],
    start: Onset | None = None,
    reached: list[Ceiling] = (),  # type: ignore[assignment]
) -> dict[str, Any] | None:
    """The error rate over its limit; its advice points to the figure at a ceiling when the
    errors began, and is general (saying so) only when none was."""
    violated = _violated(judgements, "error_rate_pct")
    if violated is None:
        return None
    top = sorted(
        metrics.run.summary.get("errors") or [], key=lambda e: -int(e.get("occurrences", 0))
    )
    first = top[0] if top else {}
    began = start if start is not None and start.signal == "errors" else None
    explained = reached[0].figure if began is not None and reached else ""
    finding = _finding(
        "errors",
        error_rate_pct=violated.value,
        limit_pct=violated.limit,
        top_error=str(first.get("error", "?")),
        top_request=f"{first.get('method', '')} {first.get('name', '')}".strip(),
        top_occurrences=int(first.get("occurrences", 0)),
        onset_unix=began.at_unix if began is not None else None,
        explained_by=explained,
    )
    if explained:
        finding["advice_key"] = "findings.errors.advice_explained"
    elif began is not None:
        finding["advice_key"] = "findings.errors.advice_unexplained"
    return finding


def unexplained_latency(start: Onset | None, reached: list[Ceiling]) -> dict[str, Any] | None:
    """Latency over its limit with no measured figure at a ceiling: said so, with its onset."""
    if start is None or start.signal != "latency" or reached:
        return None
    return _finding(
        "latency_unexplained",
        metric=start.metric,
        value=start.value,
        limit=start.limit,
        onset_unix=start.at_unix,
        until_unix=start.until_unix,
    )


def event_loop_lag(metrics: RunMetrics) -> dict[str, Any] | None:
    """The event loop late by more than `EVENT_LOOP_DELAY_MS`: the inspector's delay when it
    was sampled (and its advice names the CPU profile's hottest functions), else prom-client's
    lag."""
    loop = (metrics.node or {}).get("event_loop")
    if loop:
        if loop["seconds_over"] == 0 and (loop["max_ms"] or 0) <= EVENT_LOOP_DELAY_MS:
            return None
        hot = hot_functions_text(metrics.node)
        finding = _finding(
            "event_loop_delay",
            max_ms=loop["max_ms"],
            p99_peak_ms=loop["p99_ms_peak"],
            seconds_over=loop["seconds_over"],
            seconds=loop["seconds"],
            limit_ms=loop["limit_ms"],
            max_unix=loop["max_at_unix"],
            hot=hot,
        )
        finding["advice_key"] = "findings.event_loop_delay.advice_" + ("hot" if hot else "none")
        return finding
    for name in ("eventloop_lag_p99_ms", "eventloop_lag_ms"):
        lag = metrics.run.column(name)
        if not lag.empty and lag.max() > EVENT_LOOP_DELAY_MS:
            return _finding("event_loop_lag", peak_ms=round(float(lag.max()), 1), metric=name)
    return None


def generator_limited(metrics: RunMetrics) -> dict[str, Any] | None:
    arrivals = metrics.run.summary.get("arrivals") or {}
    dropped = int(arrivals.get("dropped") or 0)
    # Dropped late: the generator fell a second behind its timetable (shapes.arrivals); dropped
    # otherwise: no idle user, either the gateway held them all or the pool was too small.
    dropped_late = int(arrivals.get("dropped_late") or 0)
    generators = metrics.run.generators
    busiest = None
    if not generators.empty and "cpu_pct" in generators:
        busiest = float(pd.to_numeric(generators["cpu_pct"], errors="coerce").max())
    if dropped == 0 and (busiest is None or busiest < GENERATOR_CPU):
        return None
    return _finding(
        "generator_limited",
        dropped=dropped,
        dropped_late=dropped_late,
        due=int(arrivals.get("due") or 0),
        generator_cpu_pct=round(busiest, 1) if busiest is not None else None,
    )
