"""The metrics criteria can name, computed from a run's data for a scope.

Scopes: `overall` (every HTTP request of the run), a request ("POST /api/webhook", as in the
summary), or a stage (`stage:<name or number>`). Overall and per-request latency percentiles
come from the lossless histograms; a stage's from its windows (within 1 %: `approximate`).
Each function returns `None` when the run did not measure the thing: "not measured".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from analysis.criteria import RUN_METRICS, STAGE_METRICS, AnalysisSettings, is_metric
from analysis.latency import percentile
from analysis.memory import leak, memory_per_session, memory_series
from analysis.node import node_inside
from analysis.run_data import RunData
from analysis.timeline import Windows

SUSTAIN_S = 3
LATENCY = {"p50_ms": 50.0, "p90_ms": 90.0, "p95_ms": 95.0, "p99_ms": 99.0, "max_ms": 100.0}


@dataclass
class Value:
    value: float | None
    unit: str = ""
    approximate: bool = False
    note: str = ""
    tolerance_pct: float = 0.0  # the measurement's precision: within it of a limit is a pass
    demand: float | None = None  # what the run asked for, for a capacity (`min`) criterion


class RunMetrics:
    """Metric values of one run; the memory analyses are computed once and kept."""

    def __init__(self, run: RunData, settings: AnalysisSettings) -> None:
        self.run = run
        self.settings = settings
        self.memory_per_session = memory_per_session(run, settings)
        self.leak = leak(run, settings)
        self.node = node_inside(run)  # a Node.js gateway's inspector's recordings, or None

    # -- scopes ---------------------------------------------------------------------------
    def stage(self, scope: str) -> dict[str, Any] | None:
        wanted = scope.split(":", 1)[1].strip()
        for stage in self.run.stages:
            if wanted in (stage["name"], str(stage["index"] + 1)):
                return stage
        return None

    def window_total(self, start: float, end: float):
        return Windows.total(w for _, w in self.run.windows.between(start, end))

    # -- metrics --------------------------------------------------------------------------
    def value(self, metric: str, scope: str = "overall") -> Value:
        if scope.startswith("stage:"):
            stage = self.stage(scope)
            if stage is None:
                return Value(None, note=f"no stage {scope[6:]!r} in this run")
            return self.stage_value(metric, stage["started"], stage["ended"])
        compute = OVERALL.get(metric)
        if compute is None:
            return self.stage_value(metric, *self._span()) if metric in STAGE else Value(None)
        return compute(self, scope)

    def _span(self) -> tuple[float, float]:
        return self.run.span() or (0.0, 0.0)

    def stage_value(self, metric: str, start: float, end: float) -> Value:
        if metric in LATENCY or metric in ("error_rate_pct", "requests_per_s"):
            total = self.window_total(start, end)
            if metric == "requests_per_s":
                return Value(
                    round(total.requests / (end - start), 3) if end > start else None, "/s"
                )
            if not total.requests:
                return Value(None, note="no requests in this stage")
            if metric == "error_rate_pct":
                return Value(round(100.0 * total.failures / total.requests, 3), "%")
            ms = percentile(total.histogram, LATENCY[metric]) / 1000
            return Value(ms, "ms", approximate=True, tolerance_pct=1.0)
        if metric == "cpu_pct":
            return self.cpu(start, end)
        if metric == "queue_growth_per_s":
            return self.queue_growth(start, end)
        return Value(None, note=f"{metric} is not judged per stage")

    def http(self, scope: str) -> dict[str, Any] | None:
        summary = self.run.summary
        if scope == "overall":
            return summary.get("totals")
        return summary.get("requests", {}).get(scope)

    def error_rate(self, scope: str) -> Value:
        entry = self.http(scope)
        if not entry or not entry.get("requests"):
            return Value(None, "%", note="no requests")
        return Value(entry.get("error_rate_pct"), "%")

    def latency(self, metric: str, scope: str) -> Value:
        entry = self.http(scope)
        described = (entry or {}).get("latency") or {}
        if not described.get("count"):
            return Value(None, "ms", note="no requests")
        return Value(described.get(metric), "ms")

    def requests_per_s(self, scope: str) -> Value:
        entry = self.http(scope)
        return Value(entry.get("requests_per_s") if entry else None, "/s")

    def session_failure_pct(self, _: str) -> Value:
        sessions = self.run.summary.get("sessions") or {}
        if not sessions.get("attempted"):
            return Value(None, "%", note="no sessions created")
        return Value(round(100.0 - (sessions.get("success_rate_pct") or 0.0), 3), "%")

    def cpu(self, start: float | None = None, end: float | None = None) -> Value:
        """The highest mean of `cpu_window_s` consecutive seconds: CPU sustained, not one tick."""
        cpu = self.run.column("cpu_pct")
        if start is not None and end is not None:
            cpu = cpu[(cpu.index >= start) & (cpu.index < end)]
        if cpu.empty:
            return Value(None, "%", note="the gateway's CPU was not sampled")
        window = max(1, round(self.settings.cpu_window_s))
        sustained = cpu.rolling(window, min_periods=1).mean().max()
        return Value(round(float(sustained), 2), "%")

    def queue_growth(self, start: float, end: float) -> Value:
        queue = self.run.column("queue_depth")
        queue = queue[(queue.index >= start) & (queue.index < end)]
        if len(queue) < 2:
            return Value(None, "/s")
        return Value(round(float(queue.iloc[-1] - queue.iloc[0]) / (end - start), 3), "/s")

    def memory_mb(self, _: str) -> Value:
        _, rss = memory_series(self.run)
        return Value(round(float(rss.max()), 1) if not rss.empty else None, "MB")

    def per_session(self, _: str) -> Value:
        estimate = self.memory_per_session
        if not estimate.get("estimated"):
            return Value(None, "MB", note=estimate.get("note", ""))
        margin = 1.96 * estimate["stderr_mb"]
        return Value(estimate["mb"], "MB", note=f"± {margin:.3g} MB (95 %)")

    def memory_leak(self, _: str) -> Value:
        if not self.leak.get("judged"):
            return Value(None, note=self.leak.get("note", ""))
        note = f"{self.leak['mb_per_hour']:+.1f} MB/h after the warm-up"
        return Value(1.0 if self.leak["detected"] else 0.0, note=note)

    def memory_growth(self, _: str) -> Value:
        if not self.leak.get("judged"):
            return Value(None, "MB/h", note=self.leak.get("note", ""))
        return Value(self.leak["mb_per_hour"], "MB/h")

    def max_sessions(self, _: str) -> Value:
        sessions = self.run.column("sessions_active")
        attempted = (self.run.summary.get("sessions") or {}).get("attempted")
        return Value(float(sessions.max()) if not sessions.empty else None, demand=attempted)

    def messages_per_session(self, _: str) -> Value:
        """Messages the gateway accepted per second per live session, at its best sustained
        pace: the highest mean over `SUSTAIN_S` seconds of its own accepted-messages counter,
        divided by its live sessions. This is the gateway's rate, not the client's: a client
        that backs off for whole seconds on a 429 would otherwise be measured instead.
        Without the gateway's metrics: accepted / sessions / the sending window (the client's)."""
        accepted = self.run.column("messages_accepted")
        sessions = self.run.column("sessions_active")
        if len(accepted) > SUSTAIN_S and not sessions.empty and accepted.iloc[-1] > 0:
            frame = pd.concat({"accepted": accepted, "sessions": sessions}, axis=1).dropna()
            elapsed = frame.index.to_series().diff()
            rate = (
                frame["accepted"].diff() / elapsed / frame["sessions"].where(frame["sessions"] > 0)
            )
            sustained = rate.rolling(SUSTAIN_S, min_periods=SUSTAIN_S).mean().max()
            if pd.notna(sustained) and sustained > 0:
                # Sample times jitter by some ms over the SUSTAIN_S seconds: about 1 %.
                return Value(
                    round(float(sustained), 3),
                    "/s",
                    approximate=True,
                    note="gateway's counter, ± 1 %",
                    tolerance_pct=1.0,
                )
        messages = self.run.summary.get("messages") or {}
        created = (self.run.summary.get("sessions") or {}).get("created") or 0
        sends = [
            entry
            for key, entry in (self.run.summary.get("requests") or {}).items()
            if key.endswith("/messages") and entry.get("requests")
        ]
        if not messages.get("accepted") or not created or not sends:
            return Value(None, "/s", note="no messages sent")
        rates = [e["requests"] / e["requests_per_s"] for e in sends if e.get("requests_per_s")]
        if not rates:
            return Value(None, "/s")
        return Value(
            round(messages["accepted"] / created / max(rates), 3), "/s", note="client's window"
        )


OVERALL: dict[str, Callable[[RunMetrics, str], Value]] = {
    "error_rate_pct": RunMetrics.error_rate,
    "requests_per_s": RunMetrics.requests_per_s,
    "session_failure_pct": RunMetrics.session_failure_pct,
    "cpu_pct": lambda m, _: m.cpu(),
    "memory_mb": RunMetrics.memory_mb,
    "memory_per_session_mb": RunMetrics.per_session,
    "memory_leak": RunMetrics.memory_leak,
    "memory_growth_mb_per_h": RunMetrics.memory_growth,
    "max_concurrent_sessions": RunMetrics.max_sessions,
    "messages_per_s_per_session": RunMetrics.messages_per_session,
    **{name: (lambda m, scope, name=name: m.latency(name, scope)) for name in LATENCY},
}
STAGE = STAGE_METRICS
METRICS = frozenset({*OVERALL, *STAGE})

assert set(OVERALL) == RUN_METRICS, "analysis.criteria.RUN_METRICS names what OVERALL computes"
__all__ = ["METRICS", "OVERALL", "STAGE", "RunMetrics", "Value", "is_metric"]
