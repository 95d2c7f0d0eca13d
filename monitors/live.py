"""The gateway's resources, live: a "Resources" tab in Locust's web UI and a 1 Hz push stream.

Installed on the master (or local runner) when the web UI runs, with Locust's own extension
points for its React UI:

- the index page's template args get `extended_tabs` (a "Resources" tab) and
  `extended_tables` (its columns); `WebUI.update_template_args` merges into the args it has,
  so keys set once stay for every page load;
- the JSON of `/stats/requests`, which the UI polls every 2 s while a run is spawning or
  running, gets `extended_stats: [{"key": "resources", "data": rows}]` from an `after_request`
  hook: one row per alert fired, per figure of the latest sample (current, peak and mean of the
  run) and per monitoring note.

For external dashboards, the same figures as JSON: `GET /resources` once, and
`GET /resources/stream`, Server-Sent Events with one `data: <json>` event a second for as long
as the client stays connected (each connection is one greenlet asleep between events).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import gevent
from flask import Response, request

from monitors.figures import COLUMNS
from monitors.figures import about as about_figure
from monitors.process import names_text
from monitors.resources import INTERVAL_S, ResourceMonitor

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


def live_payload(environment: Environment, monitor: ResourceMonitor) -> dict[str, Any]:
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


def install_live_view(environment: Environment, monitor: ResourceMonitor) -> None:
    """The Resources tab, `/resources` and `/resources/stream` on the environment's web UI."""
    web_ui = environment.web_ui
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
        rows = live_rows(monitor.live(), monitor.summary()["figures"])
        others = [e for e in report.get("extended_stats") or [] if e.get("key") != TAB_KEY]
        report["extended_stats"] = [*others, {"key": TAB_KEY, "data": rows}]
        response.set_data(json.dumps(report, default=str))
        return response

    @app.route(f"{base}/resources")
    @web_ui.auth_required_if_enabled
    def resources() -> Response:
        return Response(json.dumps(live_payload(environment, monitor)), mimetype="application/json")

    @app.route(f"{base}/resources/stream")
    @web_ui.auth_required_if_enabled
    def resources_stream() -> Response:
        def events() -> Iterator[str]:
            next_tick = time.monotonic()
            while True:
                yield f"data: {json.dumps(live_payload(environment, monitor))}\n\n"
                next_tick += INTERVAL_S
                gevent.sleep(max(0.0, next_tick - time.monotonic()))

        return Response(
            events(),
            mimetype="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
