"""The report of a run: the verdict, the tables and the analyses, as one model.

`build_report(run, criteria)` turns a run's files (`analysis.run_data`) into one JSON-ready
model (`report.json`, schema in docs/report-schema.md); `write_report(folder)` writes it and
its renderings (`analysis.render`: `report.html`, self-contained, and `report.md`, in English
or Brazilian Portuguese). The same function serves the end of a run and
`make report RUN=...` (`python -m analysis.report`), which re-renders a saved run without
rerunning it.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.bottlenecks import find_bottlenecks
from analysis.breaking_point import breaking_point, judge_stages
from analysis.cpu_profile import flame_graph_svg
from analysis.criteria import (
    CRITERIA_COPY,
    CriteriaError,
    CriteriaFile,
    Judgement,
    judge,
    load_criteria,
    verdict_of,
)
from analysis.files import write_atomically
from analysis.memory import memory_basis, memory_series
from analysis.metrics import RunMetrics, Value, is_metric
from analysis.render import LANGUAGES, render
from analysis.run_data import RunData, load_run
from monitors.node_profiling import CPU_PROFILE_FILE

SCHEMA_VERSION = 1
ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CRITERIA = ROOT / "conf" / "criteria.yaml"
MB = 2**20


def criteria_for(folder: Path, override: Path | None = None) -> CriteriaFile:
    """The criteria a run was judged by: its own copy, unless another file is named."""
    path = override or (folder / CRITERIA_COPY)
    if not path.is_file():
        path = DEFAULT_CRITERIA
    return load_criteria(path, is_metric)


def judge_run(metrics: RunMetrics, criteria: CriteriaFile) -> tuple[list[Judgement], list[str]]:
    """Every criterion that applies to the scenario, judged; and the criteria that did not."""
    judgements: list[Judgement] = []
    skipped: list[str] = []
    scenario = metrics.run.scenario
    for criterion in criteria.criteria:
        if not criterion.applies_to(scenario):
            skipped.append(criterion.name)
            continue
        if criterion.scope == "each stage":
            for stage in metrics.run.stages:
                value = metrics.stage_value(criterion.metric, stage["started"], stage["ended"])
                scope = f"stage {stage['index'] + 1} ({stage['name']})"
                judgements.append(
                    judge(
                        criterion,
                        scope,
                        value.value,
                        value.tolerance_pct,
                        unit=value.unit,
                        approximate=value.approximate,
                        note=value.note,
                    )
                )
            continue
        value = metrics.value(criterion.metric, criterion.scope)
        if (
            criterion.min is not None
            and value.demand is not None
            and value.demand < criterion.min
            and (value.value is None or value.value < criterion.min)
        ):
            # A capacity the run never asked for (29 sessions against "at least 100") is not
            # shown to be missing: it was not probed.
            note = f"the run asked for {value.demand:g} only"
            value = Value(None, value.unit, note=note)
        judgements.append(
            judge(
                criterion,
                criterion.scope,
                value.value,
                value.tolerance_pct,
                unit=value.unit,
                approximate=value.approximate,
                note=value.note,
            )
        )
    return judgements, skipped


def _iso_to_unix(text: str | None) -> float | None:
    return dt.datetime.fromisoformat(text).timestamp() if text else None


def _relative(evidence: dict[str, Any], start: float) -> dict[str, Any]:
    out = dict(evidence)
    for key, value in evidence.items():
        if key.endswith("_unix") and value is not None:
            out[key.removesuffix("_unix") + "_s"] = round(value - start, 1)
    return out


def _figure(series, *, scale: float = 1.0) -> dict[str, float] | None:
    if series.empty:
        return None
    return {
        "peak": round(float(series.max()) * scale, 3),
        "mean": round(float(series.mean()) * scale, 3),
    }


def resource_rows(run: RunData, judgements: list[Judgement], criteria: CriteriaFile):
    """The plan's resource table: peak, mean, limit and status of each sampled figure."""
    cpu_limit = next(
        (j for j in judgements if j.metric == "cpu_pct" and j.scope == "overall"), None
    )
    memory_limit = criteria.alerts.get("memory_mb", 1024.0)
    memory_figure, memory = memory_series(run)
    disk = run.column("disk_read_bytes_per_s").add(
        run.column("disk_write_bytes_per_s"), fill_value=0
    )
    net = run.column("host_net_sent_bytes_per_s").add(
        run.column("host_net_recv_bytes_per_s"), fill_value=0
    )
    rows = [
        ("memory_mb", _figure(memory), memory_limit, "max"),
        ("heap_used_mb", _figure(run.column("heap_used_mb")), None, None),
        ("cpu_pct", _figure(run.column("cpu_pct")), cpu_limit.limit if cpu_limit else None, "max"),
        ("disk_io_mb_per_s", _figure(disk, scale=1 / MB), None, None),
        ("host_network_mb_per_s", _figure(net, scale=1 / MB), None, None),
        ("connections", _figure(run.column("connections")), None, None),
        ("threads", _figure(run.column("threads")), None, None),
        ("open_files", _figure(run.column("open_files")), None, None),
        ("sessions_active", _figure(run.column("sessions_active")), None, None),
        ("queue_depth", _figure(run.column("queue_depth")), None, None),
        ("websocket_connections", _figure(run.column("websocket_connections")), None, None),
    ]
    table = []
    for key, figure, limit, op in rows:
        if figure is None:
            continue
        status = None
        if limit is not None:
            # CPU is judged on its sustained level (the criterion); the peak second is shown.
            if key == "cpu_pct" and cpu_limit is not None:
                status = cpu_limit.status
            else:
                status = "pass" if figure["peak"] <= limit else "degrade"
        row = {"resource": key, **figure, "limit": limit, "op": op, "status": status}
        if key == "memory_mb":
            row["source"] = memory_figure  # pss_mb, rss_mb, ...: the label says which
        table.append(row)
    return table


def performance_rows(run: RunData, judgements: list[Judgement]) -> list[dict[str, Any]]:
    totals = run.summary.get("totals") or {}
    latency = totals.get("latency") or {}
    overall = {j.metric: j for j in judgements if j.scope == "overall"}

    def row(key: str, value: Any, unit: str, metric: str | None = None) -> dict[str, Any]:
        judged = overall.get(metric or key)
        return {
            "metric": key,
            "value": value,
            "unit": unit,
            "limit": judged.limit if judged else None,
            "op": judged.op if judged else None,
            "status": judged.status if judged else None,
        }

    rows = [row("requests_per_s", totals.get("requests_per_s"), "/s")]
    messages = run.summary.get("messages") or {}
    if messages.get("accepted"):
        judged = overall.get("messages_per_s_per_session")
        rows.append(row("messages_per_s_per_session", judged.value if judged else None, "/s"))
    for p in ("p50_ms", "p95_ms", "p99_ms"):
        rows.append(row(p, latency.get(p), "ms"))
    rows.append(row("error_rate_pct", totals.get("error_rate_pct"), "%"))
    sessions = overall.get("max_concurrent_sessions")
    if sessions is not None or not run.column("sessions_active").empty:
        peak = run.column("sessions_active")
        rows.append(
            row("max_concurrent_sessions", float(peak.max()) if not peak.empty else None, "")
        )
    return rows


def peak_load(run: RunData) -> dict[str, Any]:
    offered = [max(s["start"], s["end"]) for s in run.stages if s.get("unit") == "arrivals/s"]
    windows = run.windows
    # Over at least a second: a rate over a tenth of a second is mostly noise.
    span = max(1, math.ceil(1.0 / windows.width_s - 1e-9))
    counts = pd.Series(
        {i: w.requests for i, w in windows.windows.items()}, dtype=float
    ).sort_index()
    if not counts.empty:
        counts = counts.reindex(range(int(counts.index.min()), int(counts.index.max()) + 1))
    best = counts.fillna(0).rolling(span, min_periods=1).sum().max() if not counts.empty else 0
    return {
        # In an open model the users are the arrival engine's idle pool, not load.
        "users": None if offered else run.summary.get("peak_users", 0),
        "arrivals_per_s": max(offered) if offered else None,
        "requests_per_s": round(float(best) / (span * windows.width_s), 1),
        "requests_per_s_window_s": round(span * windows.width_s, 3),
    }


NO_ANSWER = "no answer"  # users.base.ScenarioUser.failure_reason: no HTTP answer at all
MIN_UNREACHABLE_REQUESTS = 5


def unreachable_from(run: RunData) -> float | None:
    """When the target stopped answering for good: the start of the run's last stretch of
    windows in which every request failed, if requests there got no HTTP answer at all
    (connection refused or reset, timeouts) and there were a few of them."""
    errors = run.summary.get("errors") or []
    if not any(NO_ANSWER in str(e.get("error", "")) for e in errors):
        return None
    stretch, failed = None, 0
    for index, window in sorted(run.windows.windows.items(), reverse=True):
        if not window.requests:
            continue
        if window.failures < window.requests:
            break
        stretch, failed = index, failed + window.failures
    if stretch is None or failed < MIN_UNREACHABLE_REQUESTS:
        return None
    return stretch * run.windows.width_s


def lost_workers(run: RunData, start: float) -> list[dict[str, Any]]:
    """Workers the master lost during the run (`suite.workers`), with when and how."""
    lost = (run.extra.get("workers") or {}).get("lost") or []
    redealt = bool((run.summary.get("arrivals") or {}).get("lost_workers"))
    return [
        {
            "worker": w["worker"],
            "at_s": round(w["at_unix"] - start, 1),
            "how": w.get("how", ""),
            "arrivals_dealt_again": redealt,
        }
        for w in lost
    ]


def build_report(run: RunData, criteria: CriteriaFile) -> dict[str, Any]:
    metrics = RunMetrics(run, criteria.analysis)
    judgements, skipped = judge_run(metrics, criteria)
    summary = run.summary
    extra_failures = []
    totals = summary.get("totals") or {}
    if not totals.get("requests"):
        extra_failures.append("no_requests")
    aborted = run.extra.get("aborted")
    if aborted:
        extra_failures.append("aborted")
    stopped = summary.get("stopped_because")
    if stopped:
        extra_failures.append(stopped["reason"])
    span = run.span()
    start = span[0] if span else (_iso_to_unix(summary.get("started_at")) or 0.0)
    unreachable = unreachable_from(run)
    if unreachable is not None:
        extra_failures.append("target_unreachable")
    verdict = verdict_of(judgements, extra_failures)
    stages = judge_stages(metrics, list(criteria.criteria))
    for stage in stages:
        stage["from_s"] = round(stage["started"] - start, 1)
        stage["to_s"] = round(stage["ended"] - start, 1)
    breaking = breaking_point(metrics, stages, list(criteria.criteria))
    for signal in breaking.get("broke_first", []):
        signal["at_s"] = round(signal["at_unix"] - start, 1)
    findings = [
        {**f, "evidence": _relative(f["evidence"], start)}
        for f in find_bottlenecks(metrics, judgements)
    ]
    leak = _relative(dict(metrics.leak), start)
    return {
        "schema_version": SCHEMA_VERSION,
        "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "run": {
            key: summary.get(key)
            for key in (
                "scenario",
                "description",
                "model",
                "target",
                "embedded_target",
                "started_at",
                "ended_at",
                "duration_s",
                "partial",
                "workers",
                "time_scale",
                "peak_users",
            )
        }
        | {
            "peak_load": peak_load(run),
            "aborted": aborted,
            "stopped_because": stopped,
            "folder": str(run.folder),
            "workers_lost": lost_workers(run, start),
            "target_unreachable_from_s": (
                round(unreachable - start, 1) if unreachable is not None else None
            ),
        },
        "verdict": {
            "status": verdict.status,
            "exit_code": verdict.exit_code,
            "reasons": [j.as_dict() for j in verdict.reasons],
            "failures": verdict.notes,
        },
        "criteria": [j.as_dict() for j in judgements],
        "not_applicable": skipped,
        "performance": performance_rows(run, judgements),
        "resources": resource_rows(run, judgements, criteria),
        "gateway_memory": memory_basis(run),
        "stages": [{k: v for k, v in s.items() if k != "judgements"} for s in stages],
        "analysis": {
            "memory_per_session": metrics.memory_per_session,
            "leak": leak,
            "breaking_point": breaking,
            "window_s": run.windows.width_s,
            "percentiles": summary.get("percentiles"),
        },
        "bottlenecks": findings,
        "node": node_report(metrics.node, start),
        "latency": totals.get("latency"),
        "service": totals.get("service"),
        "requests": summary.get("requests"),
        "arrivals": summary.get("arrivals"),
        "resource_alerts": (summary.get("resources") or {}).get("alerts", []),
        "notes": [*(summary.get("resources") or {}).get("notes", []), *numbers_notes(summary)],
    }


def node_report(node: dict[str, Any] | None, start: float) -> dict[str, Any] | None:
    """What a Node.js gateway's inspector recorded, its times relative to the run's start."""
    if node is None:
        return None
    loop = node.get("event_loop")
    if loop and loop.get("max_at_unix") is not None:
        loop = {**loop, "max_at_s": round(loop["max_at_unix"] - start, 1)}
    return {**node, "event_loop": loop}


def numbers_notes(summary: dict[str, Any]) -> list[str]:
    """Said in the report when the run made phone numbers up for a target that is not the
    embedded gateway: the user accepted that with --synthetic-numbers."""
    numbers = summary.get("numbers") or {}
    if numbers.get("synthetic") and not summary.get("embedded_target"):
        return [
            f"made-up phone numbers were sent to {summary.get('target')}: --synthetic-numbers "
            "was given (for a gateway with no real phones behind it)"
        ]
    return []


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON: {type(value).__name__}")


def write_report(
    folder: Path, criteria_path: Path | None = None, lang: str = "en"
) -> dict[str, Any]:
    """Judge and render the run in `folder`; returns the report model (with its verdict)."""
    folder = Path(folder)
    run = load_run(folder)
    criteria = criteria_for(folder, criteria_path)
    model = build_report(run, criteria)
    model["lang"] = lang
    write_flame_graph(folder, model)
    write_atomically(folder / "report.json", json.dumps(model, indent=2, default=_jsonable) + "\n")
    for name, text in render(model, run, lang).items():
        write_atomically(folder / name, text)
    return model


def write_flame_graph(folder: Path, model: dict[str, Any]) -> None:
    """The CPU profile of a Node.js gateway as a flame graph, beside the report (which embeds
    it); a profile that cannot be drawn is a note."""
    node = model.get("node") or {}
    if not node.get("flame_graph"):
        return
    try:
        svg = flame_graph_svg(folder / CPU_PROFILE_FILE, "Gateway CPU (V8 profile)")
    except (OSError, ValueError, KeyError) as exc:
        node["flame_graph"] = None
        node["notes"] = [*node.get("notes", []), f"the flame graph could not be drawn: {exc}"]
        return
    write_atomically(folder / node["flame_graph"], svg)


def main(argv: list[str] | None = None) -> int:
    """`make report RUN=reports/<dir> [LANG=pt-BR]`: judge and render a saved run again."""
    import argparse
    import sys

    from analysis.run_data import RunDataError

    parser = argparse.ArgumentParser(
        prog="python -m analysis.report",
        description="Judge a saved run and render its report (report.json, .md, .html) again.",
    )
    parser.add_argument("run", type=Path, help="the run's folder, e.g. reports/stress-<UTC>")
    parser.add_argument("--lang", choices=LANGUAGES, default="en", help="report language")
    parser.add_argument(
        "--criteria", type=Path, help="judge by this criteria file (default: the run's copy)"
    )
    args = parser.parse_args(argv)
    try:
        model = write_report(args.run, args.criteria, args.lang)
    except (RunDataError, CriteriaError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    verdict = model["verdict"]
    print(f"{verdict['status'].upper()}: {args.run / 'report.html'}")
    for reason in verdict["reasons"]:
        limit = f"{reason['op']} {reason['limit']}"
        print(f"  {reason['name']} ({reason['scope']}): {reason['value']} vs {limit}")
    for failure in verdict["failures"]:
        print(f"  {failure}")
    return int(verdict["exit_code"])


if __name__ == "__main__":
    raise SystemExit(main())
