"""The run, live: the suite's page in Locust's web UI, a 1 Hz push stream, a "Resources" tab.

**The suite's page** (`GET /`; Locust's own page moves to `GET /locust`): a form to start a run
(the scenarios and target profiles of `conf/`, the time scale, the target) and, while a run
goes, what the report will judge: the stage, offered and achieved load, latency from the due
time and service time, the live verdict, charts over time with the stages marked, alerts, and
at the end the verdict and a link to the report. Its data is `LiveView`'s: one payload built
once a second by whoever owns the run (`suite.live_run`, or `python -m monitors` for a gateway
watched without load) and pushed to every viewer (`GET /suite/stream`, Server-Sent Events; the
first event of each stream carries the charts' history, the next ones a point each). The page
is static files (`monitors/web/`, uPlot vendored): it displays, and judges nothing.

**The Resources tab** of Locust's own page, with Locust's extension points for its React UI:

- the index page's template args get `extended_tabs` (a "Resources" tab) and
  `extended_tables` (its columns); `WebUI.update_template_args` merges into the args it has,
  so keys set once stay for every page load;
- the JSON of `/stats/requests`, which the UI polls every 2 s while a run is spawning or
  running, gets `extended_stats: [{"key": "resources", "data": rows}]` from an `after_request`
  hook: one row per alert fired, per figure of the latest sample (current, peak and mean of the
  run) and per monitoring note.

For external dashboards, the same figures as JSON: `GET /resources` once, and
`GET /resources/stream`, one `data: <json>` event a second.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gevent
from flask import Response, request, send_from_directory

from monitors.feed import Feed, stream
from monitors.figures import COLUMNS
from monitors.figures import about as about_figure
from monitors.process import memory_column, names_text
from monitors.resources import ResourceMonitor

if TYPE_CHECKING:
    from locust.env import Environment

TAB_KEY = "resources"
TAB = {"title": "Resources", "key": TAB_KEY}
TABLE = {
    "key": TAB_KEY,
    "structure": [
        {"key": "figure", "title": "Figure"},
        {"key": "value", "title": "Current"},
        {"key": "peak", "title": "Peak"},
        {"key": "mean", "title": "Mean"},
        {"key": "about", "title": "What"},
    ],
}
# Locust's table sorts its rows by their `name` until a column header is clicked: `name` is the
# rows' order here (alerts, then the figures as monitors.resources lists them, then notes).
STATS_ENDPOINT = "locust.request_stats"  # Locust's blueprint is named "locust"
INDEX_ENDPOINT = "locust.index"
WEB_DIR = Path(__file__).resolve().parent / "web"
HISTORY_POINTS = 3600  # chart points kept; a longer run keeps every other one, and so on
log = logging.getLogger("monitors")

ABOUT = {"t": "seconds since the run started, at this sample"}
ORDER = {key: index for index, key in enumerate(["t", *COLUMNS])}


def _finite(value: Any) -> Any:
    """Numbers as JSON can carry them (a NaN from a metrics endpoint becomes null)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def live_rows(
    live: dict[str, Any], figures: dict[str, dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """The Resources tab's rows: alerts first, then every figure of the sample, then notes."""
    figures = figures or {}
    rows: list[dict[str, Any]] = []
    for alert in live.get("alerts", []):
        rows.append(
            {
                "figure": f"ALERT {alert['kind']}",
                "value": alert["message"],
                "peak": "",
                "mean": "",
                "about": f"fired at t = {alert['t']} s",
            }
        )
    sample = live.get("sample", {})
    tree = live.get("process_tree") or {}
    for key in sorted(sample, key=lambda k: (ORDER.get(k, len(ORDER)), k)):
        figure = figures.get(key, {})
        about = ABOUT.get(key) or about_figure(key)
        if key == "processes" and tree.get("names_latest"):
            about = f"gateway processes counted: {names_text(tree['names_latest'])}"
        rows.append(
            {
                "figure": key,
                "value": _finite(sample[key]),
                "peak": _finite(figure.get("peak", "")),
                "mean": _finite(figure.get("mean", "")),
                "about": about,
            }
        )
    if not sample:
        rows.append(
            {
                "figure": "no sample yet",
                "value": "",
                "peak": "",
                "mean": "",
                "about": "the gateway is sampled once a second while a run is on",
            }
        )
    for note in live.get("notes", []):
        rows.append({"figure": "note", "value": note, "peak": "", "mean": "", "about": ""})
    return [{"name": f"{index:03d}", **row} for index, row in enumerate(rows)]


def live_payload(environment: Environment, monitor: Any) -> dict[str, Any]:
    """What /resources answers and /resources/stream pushes: the live figures and their rows."""
    live = monitor.live()
    runner = environment.runner
    sample = {key: _finite(value) for key, value in live["sample"].items()}
    return {
        "time": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
        "state": runner.state if runner is not None else "missing",
        "user_count": runner.user_count if runner is not None else 0,
        "sample": sample,
        "alerts": live["alerts"],
        "notes": live["notes"],
        "rows": live_rows({**live, "sample": sample}, monitor.summary()["figures"]),
    }


def _add_once(args: dict[str, Any], key: str, entry: dict[str, Any]) -> None:
    entries = [e for e in args.get(key) or [] if e.get("key") != entry["key"]]
    args[key] = [*entries, entry]


def install_live_view(
    environment: Environment, monitor: ResourceMonitor | Callable[[], ResourceMonitor]
) -> None:
    """The Resources tab, `/resources` and `/resources/stream` on the environment's web UI;
    `monitor` may be a callable, for a monitor that a start from the form replaces."""
    web_ui = environment.web_ui
    monitor_now = monitor if callable(monitor) else lambda: monitor
    if web_ui is None:
        return
    _add_once(web_ui.template_args, "extended_tabs", TAB)
    _add_once(web_ui.template_args, "extended_tables", TABLE)
    app = web_ui.app
    options = environment.parsed_options
    base = (getattr(options, "web_base_path", "") or "").rstrip("/")

    @app.after_request
    def _add_resources(response: Response) -> Response:
        # /stats/requests is memoized: the same Response object may come back for up to 2 s.
        # Its extended_stats is replaced here at every request, so it is never stale.
        if request.endpoint != STATS_ENDPOINT or response.status_code != 200:
            return response
        report = response.get_json(silent=True)
        if not isinstance(report, dict):
            return response
        rows = live_rows(monitor_now().live(), monitor_now().summary()["figures"])
        others = [e for e in report.get("extended_stats") or [] if e.get("key") != TAB_KEY]
        report["extended_stats"] = [*others, {"key": TAB_KEY, "data": rows}]
        response.set_data(json.dumps(report, default=str))
        return response

    @app.route(f"{base}/resources")
    @web_ui.auth_required_if_enabled
    def resources() -> Response:
        payload = live_payload(environment, monitor_now())
        return Response(json.dumps(payload), mimetype="application/json")

    @app.route(f"{base}/resources/stream")
    @web_ui.auth_required_if_enabled
    def resources_stream() -> Response:
        return _event_stream(stream(resources_feed))

    resources_feed = Feed()

    def publish_resources() -> None:
        while True:
            resources_feed.publish(live_payload(environment, monitor_now()))
            gevent.sleep(1.0)

    gevent.spawn(publish_resources)


def _event_stream(events: Any) -> Response:
    return Response(
        events,
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


# --- the suite's page ------------------------------------------------------------------------


def gateway_point(sample: dict[str, Any]) -> dict[str, Any]:
    """The gateway's figures of one sample that the charts draw: memory as the report counts
    it (RSS for one process, PSS for a tree), the JS heap when known, CPU, queue, sessions and
    the event loop's delay."""
    column = memory_column(sample.get("processes"))
    return {
        "rss_mb": _finite(sample.get(column, sample.get("rss_mb"))),
        "heap_mb": _finite(sample.get("heap_used_mb")),
        "cpu_pct": _finite(sample.get("cpu_pct")),
        "queue_depth": _finite(sample.get("queue_depth")),
        "sessions_active": _finite(sample.get("sessions_active")),
        "eventloop_delay_p99_ms": _finite(sample.get("eventloop_delay_p99_ms")),
    }


class History:
    """The charts' points of one run, at most `most`: when full, every other point goes and
    the next points are kept at half the rate (a day at 1 Hz is 86,400 points; the charts
    draw a few thousand)."""

    def __init__(self, most: int = HISTORY_POINTS) -> None:
        self.most = most
        self.points: list[dict[str, Any]] = []
        self.every = 1
        self._seen = 0

    def add(self, point: dict[str, Any]) -> None:
        self._seen += 1
        if (self._seen - 1) % self.every:
            return
        self.points.append(point)
        if len(self.points) >= self.most:
            self.points = self.points[::2]
            self.every *= 2

    def clear(self) -> None:
        self.points, self.every, self._seen = [], 1, 0


class LiveView:
    """`build()` once every `interval_s`, published to every viewer; each payload's `point`
    (one figure each for the charts) is kept in the run's history, which a new viewer gets
    with its first payload. A payload whose `run_id` differs from the last starts a new
    history. `build` runs on the event loop: it must read, not compute (the verdict comes from
    `analysis.live_report`, off the loop)."""

    def __init__(self, build: Callable[[], dict[str, Any]], interval_s: float = 1.0) -> None:
        self.build = build
        self.interval_s = interval_s
        self.feed = Feed()
        self.history = History()
        self.run_id: str | None = None
        self.build_ms_max = 0.0  # what building a payload held the event loop, at most
        self.listeners: list[Callable[[dict[str, Any]], None]] = []
        self._greenlet: gevent.Greenlet | None = None

    def start(self) -> None:
        if self._greenlet is None:
            self._greenlet = gevent.spawn(self._loop)

    def stop(self) -> None:
        if self._greenlet is not None:
            self._greenlet.kill(block=False)
            self._greenlet = None
        self.feed.close()

    def _loop(self) -> None:
        next_tick = time.monotonic()
        while True:
            try:
                self.tick()
            except Exception:  # the live view must never stop the run
                log.exception("the live view's payload failed")
            # On a fixed beat: a viewer is never more than `interval_s` behind.
            next_tick = max(next_tick + self.interval_s, time.monotonic())
            gevent.sleep(next_tick - time.monotonic())

    def tick(self) -> dict[str, Any]:
        began = time.perf_counter()
        payload = self.build()
        if payload.get("run_id") != self.run_id:
            self.run_id = payload.get("run_id")
            self.history.clear()
            self.build_ms_max = 0.0
        took_ms = (time.perf_counter() - began) * 1000
        self.build_ms_max = max(self.build_ms_max, took_ms)
        payload["view_ms"] = {"last": round(took_ms, 3), "max": round(self.build_ms_max, 3)}
        point = payload.get("point")
        if point:
            self.history.add(point)
        self.feed.publish(payload)
        for listener in self.listeners:
            listener(payload)
        return payload

    def with_history(self, payload: dict[str, Any]) -> dict[str, Any]:
        return {**payload, "history": list(self.history.points)}

    def current(self) -> dict[str, Any]:
        """The latest payload with the history (one built now if none was yet)."""
        payload = self.feed.payload if self.feed.payload is not None else self.tick()
        return self.with_history(payload)

    def events(self) -> Any:
        return stream(self.feed, first=self.with_history)


def suite_page() -> Response:
    return send_from_directory(WEB_DIR, "suite.html", max_age=0)


def install_suite_page(
    environment: Environment,
    view: LiveView,
    options: Callable[[], dict[str, Any]],
) -> None:
    """The suite's page at the web UI's root, Locust's own at `locust`, and their data."""
    web_ui = environment.web_ui
    if web_ui is None:
        return
    app = web_ui.app
    base = (getattr(environment.parsed_options, "web_base_path", "") or "").rstrip("/")
    locust_index = app.view_functions[INDEX_ENDPOINT]
    app.view_functions[INDEX_ENDPOINT] = web_ui.auth_required_if_enabled(suite_page)
    app.add_url_rule(f"{base}/locust", "suite_locust_index", locust_index)

    @app.route(f"{base}/suite/static/<path:name>")
    def suite_static(name: str) -> Response:
        return send_from_directory(WEB_DIR, name, max_age=0)

    @app.route(f"{base}/suite/options")
    @web_ui.auth_required_if_enabled
    def suite_options() -> Response:
        return Response(json.dumps(options()), mimetype="application/json")

    @app.route(f"{base}/suite/live")
    @web_ui.auth_required_if_enabled
    def suite_live() -> Response:
        return Response(json.dumps(view.current(), default=str), mimetype="application/json")

    @app.route(f"{base}/suite/stream")
    @web_ui.auth_required_if_enabled
    def suite_stream() -> Response:
        return _event_stream(view.events())
