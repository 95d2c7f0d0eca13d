"""Where a staged run broke: each stage judged on its own, and what gave way first.

Every stage is judged by the criteria that can be read per stage (error rate, latency
percentiles, CPU, throughput; see `analysis.metrics.STAGE`). The breaking point is the last
stage that met all of them with every stage before it; above it, the first failing stage is
searched window by window (and sample by sample for CPU and the queue) for the moment each
signal crossed its limit: errors, latency, queue growth, CPU; and the figures that had reached
a ceiling when errors or latency first crossed (`analysis.ceilings`: the session cap, a full
queue...), at the time each reached it. The earliest is what broke first.

Graceful failure: the refusals were answers that tell the client what to do (4xx, or 503 with
`Retry-After`), not timeouts, connection errors or other 5xx. Recovery: after the load the
gateway answered its health probe (`recovery` in the run's timeline) and its queue drained.
"""

from __future__ import annotations

import re
from typing import Any

from analysis.ceilings import Onset, ceilings
from analysis.criteria import Criterion, Judgement, judge
from analysis.latency import percentile
from analysis.metrics import STAGE, RunMetrics

QUEUE_FLOOR = 50  # a queue this short is not "growing", whatever its ratio
# Searched, not matched: a master's errors arrive from workers as reprs,
# "CatchResponseError('HTTP 503 with Retry-After')".
GRACEFUL = re.compile(r"\bHTTP (4\d\d|503 with Retry-After)\b")


def stage_criteria(criteria: list[Criterion], scenario: str | None = None) -> list[Criterion]:
    """The criteria a stage can be judged by (for `scenario`, when given)."""
    return [
        c
        for c in criteria
        if c.metric in STAGE
        and c.scope in ("overall", "each stage")
        and (scenario is None or c.applies_to(scenario))
    ]


def judge_stages(metrics: RunMetrics, criteria: list[Criterion]) -> list[dict[str, Any]]:
    """Each stage with its traffic, latency, resources and the criteria it broke."""
    judged = []
    for stage in metrics.run.stages:
        start, end = stage["started"], stage["ended"]
        total = metrics.window_total(start, end)
        judgements: list[Judgement] = []
        for criterion in stage_criteria(criteria, metrics.run.scenario):
            value = metrics.stage_value(criterion.metric, start, end)
            judgements.append(
                judge(
                    criterion,
                    f"stage {stage['index'] + 1}",
                    value.value,
                    value.tolerance_pct,
                    unit=value.unit,
                )
            )
        percentiles = {
            f"p{p}_ms": percentile(total.histogram, p) / 1000 if total.requests else None
            for p in (50, 95, 99)
        }
        cpu = metrics.cpu(start, end).value
        queue = metrics.run.column("queue_depth")
        queue = queue[(queue.index >= start) & (queue.index < end)]
        judged.append(
            {
                **stage,
                "duration_s": round(end - start, 3),
                "requests": total.requests,
                "failures": total.failures,
                "error_rate_pct": round(100 * total.failures / total.requests, 3)
                if total.requests
                else None,
                "requests_per_s": round(total.requests / (end - start), 3) if end > start else None,
                **percentiles,
                "cpu_pct": cpu,
                "queue_depth_peak": float(queue.max()) if not queue.empty else None,
                "broken": [j.name for j in judgements if j.status in ("fail", "degrade")],
                "judgements": [j.as_dict() for j in judgements],
            }
        )
    return judged


def breaking_point(
    metrics: RunMetrics, stages: list[dict[str, Any]], criteria: list[Criterion]
) -> dict[str, Any]:
    if len(stages) < 2:
        return {"applicable": False, "note": "one stage only: no ramp to break"}
    last_good = None
    for stage in stages:
        if stage["broken"]:
            break
        last_good = stage
    first_bad = next((s for s in stages if s["broken"]), None)
    result: dict[str, Any] = {
        "applicable": True,
        "held_every_stage": first_bad is None,
        "last_good_stage": _brief(last_good),
        "first_bad_stage": _brief(first_bad),
        "broke_first": [],
        "graceful": graceful(metrics.run.summary),
        "recovery": recovery(metrics),
    }
    if first_bad is not None:
        result["broke_first"] = first_crossings(metrics, first_bad, criteria)
    return result


def _brief(stage: dict[str, Any] | None) -> dict[str, Any] | None:
    if stage is None:
        return None
    keys = ("index", "name", "label", "unit", "start", "end", "requests_per_s", "broken")
    return {k: stage[k] for k in keys}


def _limit(criteria: list[Criterion], metric: str, default: float, scenario: str) -> float:
    for criterion in stage_criteria(criteria, scenario):
        if criterion.metric == metric and criterion.max is not None:
            return criterion.max
    return default


def first_crossings(
    metrics: RunMetrics, stage: dict[str, Any], criteria: list[Criterion]
) -> list[dict[str, Any]]:
    """Signals in the stage ordered by when each first crossed its limit."""
    start, end = stage["started"], stage["ended"]
    run = metrics.run
    width = run.windows.width_s
    found: list[dict[str, Any]] = []
    error_limit = _limit(criteria, "error_rate_pct", 5.0, run.scenario)
    latency_limits = [
        (c.metric, c.max)
        for c in stage_criteria(criteria, run.scenario)
        if c.metric.startswith("p") and c.max is not None
    ]
    seen: set[str] = set()
    for index, window in run.windows.between(start, end):
        at = index * width
        if not window.requests:
            continue
        rate = 100 * window.failures / window.requests
        if "errors" not in seen and rate > error_limit:
            seen.add("errors")
            found.append(_signal("errors", at, start, round(rate, 2), error_limit, "%"))
        for metric, limit in latency_limits:
            value = percentile(window.histogram, float(metric[1:3])) / 1000
            if "latency" not in seen and value > limit:
                seen.add("latency")
                found.append(_signal("latency", at, start, value, limit, "ms", metric=metric))
    cpu_limit = _limit(criteria, "cpu_pct", 80.0, run.scenario)
    cpu = run.column("cpu_pct")
    cpu = cpu[(cpu.index >= start) & (cpu.index < end)]
    hot = cpu[cpu > cpu_limit]
    if not hot.empty:
        found.append(_signal("cpu", float(hot.index[0]), start, float(hot.iloc[0]), cpu_limit, "%"))
    queue = run.column("queue_depth")
    before = queue[queue.index < start]
    base = float(before.iloc[-1]) if not before.empty else 0.0
    queue = queue[(queue.index >= start) & (queue.index < end)]
    growing = queue[queue > max(QUEUE_FLOOR, 2 * base)]
    if not growing.empty:
        at = float(growing.index[0])
        found.append(
            _signal("queue", at, start, float(growing.iloc[0]), max(QUEUE_FLOOR, 2 * base))
        )
    trouble = [s for s in found if s["signal"] in ("errors", "latency")]
    if trouble:
        first = min(trouble, key=lambda s: s["at_unix"])
        began = Onset(first["signal"], first["at_unix"], end, first["value"], first["limit"], "")
        limits = {"cpu_pct": cpu_limit}
        for reached in ceilings(run, began, limits):
            if reached.figure == "cpu_pct" and any(s["signal"] == "cpu" for s in found):
                continue  # said already, as the CPU crossing its limit
            found.append(
                _signal("ceiling", reached.reached_unix, start, reached.level, reached.limit)
                | {"figure": reached.figure}
            )
    # A figure at its ceiling in the same sample as the errors it explains comes first.
    return sorted(found, key=lambda s: (s["at_unix"], s["signal"] != "ceiling"))


def _signal(
    kind: str,
    at: float,
    stage_start: float,
    value: float,
    limit: float | None,
    unit: str = "",
    **kw: Any,
) -> dict[str, Any]:
    return {
        "signal": kind,
        "at_unix": at,
        "after_s": round(max(0.0, at - stage_start), 1),
        "value": value,
        "limit": limit,
        "unit": unit,
        **kw,
    }


# The suite's own findings about a session (one that never got ready, one the gateway would
# not authenticate), recorded as failures: not how the gateway answered a request.
NOT_ANSWERS = frozenset({"session ready", "auth"})


def graceful(summary: dict[str, Any]) -> dict[str, Any]:
    """The run's failures sorted into answers that tell the client what to do, and the rest."""
    told, untold = 0, 0
    kinds: dict[str, int] = {}
    for error in summary.get("errors") or []:
        if error.get("method") == "WS" and error.get("name") in NOT_ANSWERS:
            continue
        text, count = str(error.get("error", "")), int(error.get("occurrences", 0))
        if GRACEFUL.search(text):
            told += count
        else:
            untold += count
            kinds[text[:80]] = kinds.get(text[:80], 0) + count
    worst = sorted(kinds.items(), key=lambda kv: -kv[1])[:3]
    return {
        "failures": told + untold,
        "refusals_with_instructions": told,
        "other_failures": untold,
        "graceful": untold == 0,
        "other_kinds": [{"error": k, "occurrences": n} for k, n in worst],
    }


def recovery(metrics: RunMetrics) -> dict[str, Any]:
    probe = metrics.run.extra.get("recovery")
    queue = metrics.run.column("queue_depth")
    drained = None
    span = metrics.run.span()
    if not queue.empty and span is not None:
        after = queue[queue.index >= span[1] - 1]
        drained = bool(after.iloc[-1] <= QUEUE_FLOOR) if not after.empty else None
    return {"probe": probe, "queue_drained": drained}
