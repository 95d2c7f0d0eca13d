"""What the live view shows of a run, once a second (`monitors.live.LiveView` publishes it).

Every figure is read from where the report's own come from, never from Locust's rounded
statistics:

- latency from the due time and service time: the run's lossless histograms
  (`analysis.latency.Recent`: what they recorded over the last `WINDOW_S` seconds, and all of
  the run), HTTP requests only, as the summary's totals;
- requests, errors and arrivals per second: counters over the same window;
- the stage: the scenario's shape; the gateway: the monitor's latest sample;
- the live verdict: the report itself (`analysis.live_report`, in a child process), judged on
  the run's files after each checkpoint; its time says how old it is;
- alerts: the monitor's (memory, CPU), and the report's own leak analysis, so that the live
  and the final judgement of a leak are one: growth the load explains is no alert.

`build()` only reads; it runs on the event loop once a second, in two holds with a yield to
the requests in flight between them: about a millisecond in all on these 2-core machines
(`view_ms` in the payload, wall clock, the yield included; `make ui`, stress at 1,000 arrivals/s).
"""

from __future__ import annotations

import datetime as dt
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gevent
from locust.runners import MasterRunner

from analysis.latency import Recent
from analysis.live_report import LiveReport
from analysis.recorder import WS
from monitors.live import gateway_point

if TYPE_CHECKING:
    from locust.env import Environment

    from analysis.criteria import Criterion
    from analysis.latency import LatencyBook
    from analysis.run_record import RunRecord
    from monitors.resources import ResourceMonitor
    from shapes.scenario import Scenario
    from shapes.scenario_shape import ScenarioShape

WINDOW_S = 5  # the "last seconds" of latency and rates: a worker reports every 3 s
STATES = ("pass", "degrade", "fail", "not measured")


def _latency(summary: dict[str, Any]) -> dict[str, Any] | None:
    if not summary.get("count"):
        return None
    return {key: summary.get(key) for key in ("count", "p50_ms", "p95_ms", "p99_ms", "max_ms")}


class RunLive:
    def __init__(
        self,
        environment: Environment,
        shape: ScenarioShape,
        scenario: Callable[[], Scenario],
        record: RunRecord,
        book: LatencyBook,
        monitor: Callable[[], ResourceMonitor],
        abort_criteria: Callable[[], list[Criterion]],
        partial: Callable[[], bool] = lambda: False,
        lang: Callable[[], str] = lambda: "en",
        report: LiveReport | None = None,
    ) -> None:
        self.environment = environment
        self.shape = shape
        self.scenario = scenario
        self.record = record
        self.book = book
        self.monitor = monitor
        self.abort_criteria = abort_criteria
        self.partial = partial
        self.lang = lang
        self.report = report or LiveReport()
        self.report.start()
        self._judging: gevent.Greenlet | None = None
        self.reset()

    def reset(self) -> None:
        """A new run: nothing judged, nothing counted."""
        self.latency = Recent(WINDOW_S)
        self.service = Recent(WINDOW_S)
        self.counts: deque[tuple[float, int, int, float]] = deque(maxlen=WINDOW_S + 1)
        self.judged: dict[str, Any] | None = None
        self.judged_at: float | None = None
        self.leak_alerted = False
        self.judged_end: dict[str, Any] | None = None  # the ended run's verdict, judged again
        if self._judging is not None:
            self._judging.kill(block=False)
            self._judging = None

    # --- the verdict, off the loop ------------------------------------------------------------

    def judge_soon(self) -> None:
        """After a checkpoint: the report's judgement of the run's files, unless one is still
        being made (a long run's judgement can take longer than a checkpoint's interval)."""
        folder = self.record.folder
        if folder is None or (self._judging is not None and not self._judging.dead):
            return
        self._judging = gevent.spawn(self._judge, folder)

    def judge_the_end(self) -> None:
        """Once the report of the ended run is written: its judgement, after any still being
        made, so that the criteria shown are the report's final ones."""
        folder, before = self.record.folder, self._judging
        if folder is not None:
            self._judging = gevent.spawn(self._judge, folder, before)

    def _judge(self, folder: Path, after: gevent.Greenlet | None = None) -> None:
        if after is not None:
            after.join()
        answer = self.report.judge(folder)
        if self.record.folder is not folder:
            return  # a new run started meanwhile
        if answer.get("ok"):
            self.judged, self.judged_at = answer, time.time()
            self._alert_leak(answer.get("leak") or {})
        elif self.judged is None:
            self.judged = answer

    def _alert_leak(self, leak: dict[str, Any]) -> None:
        if leak.get("detected") and not self.leak_alerted:
            self.leak_alerted = True
            self.monitor().alert(
                "possible_leak",
                f"memory growing {leak.get('mb_per_hour', 0):+.0f} MB/h beyond what the load "
                "explains (the report's leak analysis of the run so far)",
            )

    def render(self, folder: Path) -> dict[str, Any]:
        """The report of the run so far, drawn by the child process (`GET /report`)."""
        return self.report.render(folder, self.lang())

    def close(self) -> None:
        if self._judging is not None:
            self._judging.kill(block=False)
        self.report.close()

    # --- the payload --------------------------------------------------------------------------

    def build(self) -> dict[str, Any]:
        runner = self.environment.runner
        now = time.time()
        record = self.record
        running = runner is not None and runner.state in ("spawning", "running")
        if record.ended_at is not None and record.verdict not in (None, self.judged_end):
            self.judged_end = record.verdict
            self.judge_the_end()
        http = [pair for key, pair in self.book.histograms.items() if not key.startswith(f"{WS} ")]
        started = record.started_at
        if started:  # after the end too: the whole run's figures are then its last ones
            self.latency.update(pair["latency"] for pair in http)
            gevent.sleep(0)  # the requests in flight go first: two short holds, not one
            self.service.update(pair["service"] for pair in http)
        elapsed = (record.ended_at or now) - started if started else None
        stats = runner.stats.total if runner is not None else None
        arrivals = self.arrivals()
        if running and stats is not None:
            self.counts.append(
                (now, stats.num_requests, stats.num_failures, arrivals.get("started", 0))
            )
        throughput = self.throughput(stats)
        last = _latency(self.latency.describe() or {})
        service_last = _latency(self.service.describe() or {})
        sample = self.monitor().latest if started else {}
        point = None
        if running and elapsed is not None:
            point = {
                "t": round(elapsed, 1),
                "requests_per_s": throughput["requests_per_s"],
                "errors_per_s": throughput["errors_per_s"],
                "p50_ms": (last or {}).get("p50_ms"),
                "p95_ms": (last or {}).get("p95_ms"),
                "p99_ms": (last or {}).get("p99_ms"),
                "service_p95_ms": (service_last or {}).get("p95_ms"),
                **gateway_point(sample),
                "users": runner.user_count,
                "offered_per_s": arrivals.get("offered_per_s"),
            }
        return {
            "mode": "run",
            "time": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
            "run_id": _iso(started),
            "state": runner.state if runner is not None else "missing",
            "run": self.run_facts(elapsed) if started else None,
            "stage": self.stage() if running else None,
            "load": self.load(runner, arrivals, throughput),
            "throughput": throughput,
            "latency": {
                "window_s": WINDOW_S,
                "last": last,
                "overall": _latency(self.latency.describe_all() or {}),
                "service_last": service_last,
                "service_overall": _latency(self.service.describe_all() or {}),
            },
            "verdict": self.verdict(stats),
            "point": point,
            "stages": self.stage_marks(),
            "alerts": [a.as_dict() for a in self.monitor().watch.fired] if started else [],
            "notes": list(self.monitor().notes),
            "ended": self.ended(),
        }

    def throughput(self, stats: Any) -> dict[str, Any]:
        requests = stats.num_requests if stats is not None else 0
        failures = stats.num_failures if stats is not None else 0
        per_s = errors_per_s = 0.0
        if len(self.counts) >= 2:
            (t0, n0, f0, _), (t1, n1, f1, _) = self.counts[0], self.counts[-1]
            if t1 > t0:
                per_s, errors_per_s = (n1 - n0) / (t1 - t0), (f1 - f0) / (t1 - t0)
        return {
            "requests_per_s": round(per_s, 2),
            "errors_per_s": round(errors_per_s, 2),
            "requests": requests,
            "failures": failures,
            "error_rate_pct": round(100.0 * failures / requests, 3) if requests else 0.0,
        }

    def arrivals(self) -> dict[str, Any]:
        """The open model's arrivals: offered now, and the run's counters so far."""
        delegate = self.shape.delegate
        counters = getattr(delegate, "counters", None)
        if counters is None:
            return {}
        offered = None
        timetable = getattr(delegate, "timetable", None)
        if timetable is not None and delegate.started_at is not None:
            offered = round(timetable.rate_at(delegate.elapsed()), 2)
        return {**counters().as_dict(), "offered_per_s": offered}

    def load(self, runner: Any, arrivals: dict[str, Any], throughput: dict[str, Any]) -> Any:
        users = runner.user_count if runner is not None else 0
        if not arrivals:
            stages = getattr(self.shape.delegate, "stages", None)
            target = None
            if stages is not None and runner is not None and runner.state == "running":
                target = round(stages.users_at(self.shape.delegate.get_run_time()))
            return {"open_model": False, "users": users, "target_users": target}
        achieved = None
        if len(self.counts) >= 2:
            (t0, _, _, s0), (t1, _, _, s1) = self.counts[0], self.counts[-1]
            achieved = round((s1 - s0) / (t1 - t0), 2) if t1 > t0 else None
        return {
            "open_model": True,
            "offered_per_s": arrivals.get("offered_per_s"),
            "achieved_per_s": achieved,
            "dropped": arrivals.get("dropped"),
            "due": arrivals.get("due"),
            "in_flight": arrivals.get("in_flight"),
            "users": users,
            "target_users": None,
        }

    def run_facts(self, elapsed: float | None) -> dict[str, Any]:
        scenario = self.scenario()
        runner = self.environment.runner
        return {
            "scenario": scenario.name,
            "description": scenario.description,
            "model": scenario.model,
            "open_model": scenario.model == "arrivals",
            "target": self.environment.host,
            "profile": self.environment.target_profile.name,
            "time_scale": scenario.time_scale,
            "elapsed_s": round(elapsed, 1) if elapsed is not None else None,
            "planned_s": scenario.duration_s(),
            "workers": len(runner.clients) if isinstance(runner, MasterRunner) else 1,
        }

    def stage(self) -> dict[str, Any] | None:
        """The stage now: which, how far into it, and how far the whole plan is."""
        delegate = self.shape.delegate
        mark = self.shape.current_stage() if delegate is not None else None
        if mark is None:
            return None
        durations = _durations(delegate)
        if not durations:  # a burst: no plan in time
            return {
                "index": mark.index, "count": 1, "name": mark.name, "unit": mark.unit,
                "target": mark.start, "end_target": mark.end, "into_s": round(mark.into_s, 1),
                "duration_s": None, "left_s": None, "progress": None,
            }  # fmt: skip
        planned = sum(durations)
        done = min(planned, sum(durations[: mark.index]) + mark.into_s)
        return {
            "index": mark.index,
            "count": len(durations),
            "name": mark.name,
            "unit": mark.unit,
            "target": mark.start,
            "end_target": mark.end,
            "into_s": round(mark.into_s, 1),
            "duration_s": durations[mark.index],
            "left_s": round(planned - done, 1),
            "progress": round(done / planned, 4) if planned else None,
        }

    def stage_marks(self) -> list[dict[str, Any]]:
        started = self.record.started_at
        timeline = self.record.stages
        if not started or timeline is None:
            return []
        return [
            {
                "index": s["index"],
                "name": s["name"],
                "started_s": round(s["started"] - started, 1),
                "ended_s": round(s["ended"] - started, 1) if s.get("ended") else None,
            }
            for s in timeline.stages
        ]

    def verdict(self, stats: Any) -> dict[str, Any]:
        """The report's judgement of the run so far, with the criteria that would abort it."""
        aborting = {c.name: c.abort_after for c in self.abort_criteria()}
        judged = self.judged or {}
        if not judged.get("ok"):
            note = judged.get("error") or "judged as the report judges, after each checkpoint"
            return {"status": None, "worst": None, "as_of_s": None, "note": note, "criteria": []}
        criteria = []
        for j in judged["criteria"]:
            state = j["status"]
            criteria.append(
                {
                    "name": j["name"],
                    "metric": j["metric"],
                    "scope": j["scope"],
                    "value": j["value"],
                    "unit": j.get("unit", ""),
                    "op": j["op"],
                    "limit": j["limit"],
                    "severity": j["severity"],
                    "state": state,
                    "note": j.get("note", ""),
                    "aborts": j["name"] in aborting,
                    "abort_after_s": aborting.get(j["name"]),
                }
            )
        measured = [c["state"] for c in criteria if c["state"] != "not measured"]
        worst = max(measured, key=("pass", "degrade", "fail").index) if measured else None
        status = judged["verdict"]["status"]
        failures = judged["verdict"].get("failures") or []
        note = "judged as the report judges, on the run's data as of its last checkpoint"
        if not (stats and stats.num_requests):
            status, note = None, "not enough data yet: no request has been answered"
        elif failures:
            note = "failed: " + ", ".join(f.replace("_", " ") for f in failures)
        started = self.record.started_at or 0.0
        return {
            "status": status,
            "worst": worst,
            "as_of_s": round(self.judged_at - started, 1) if self.judged_at else None,
            "note": note,
            "criteria": criteria,
            "aborted": self.record.extra.get("aborted"),
        }

    def ended(self) -> dict[str, Any] | None:
        record = self.record
        verdict = record.verdict
        if record.ended_at is None or verdict is None:
            return None
        reasons = "; ".join(
            f"{r['name']} {r['value']} {r.get('unit', '')} (limit {r['op']} {r['limit']:g})"
            for r in verdict["reasons"]
        )
        failures = ", ".join(f.replace("_", " ") for f in verdict.get("failures", []))
        return {
            "status": verdict["status"],
            "reasons": "; ".join(filter(None, [reasons, failures])),
            "partial": self.partial(),
            "report": "report",
        }


def _durations(shape: Any) -> list[float]:
    """The planned length of each stage of a shape (none for a burst)."""
    if hasattr(shape, "timetable"):
        return [phase.duration_s for phase in shape.timetable.phases]
    if hasattr(shape, "stages"):
        return [stage.duration_s for stage in shape.stages.stages]
    return []


def _iso(unix: float | None) -> str | None:
    if not unix:
        return None
    return dt.datetime.fromtimestamp(unix, dt.UTC).isoformat(timespec="milliseconds")
