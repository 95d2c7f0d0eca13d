"""The live view's publisher and page, in process: one payload a second for every viewer, the
charts' history, and the suite's page at the web UI's root with Locust's own beside it."""

from __future__ import annotations

import itertools
import json
import sys
from typing import Any

import pytest
from locust import HttpUser, task
from locust.env import Environment

from monitors.feed import Feed, stream
from monitors.live import WEB_DIR, History, LiveView, gateway_point, install_suite_page


def test_history_keeps_a_long_run_at_half_the_rate_each_time_it_fills():
    history = History(most=8)
    for t in range(40):
        history.add({"t": t})
    ts = [p["t"] for p in history.points]
    assert len(ts) < 8 and ts[0] == 0
    steps = {b - a for a, b in itertools.pairwise(ts)}
    assert steps == {8}, ts  # filled at 8, 16 (every 2nd), 32 (every 4th): every 8th now
    history.clear()
    assert history.points == [] and history.every == 1


def test_live_view_publishes_one_payload_for_every_viewer_and_starts_a_new_history_per_run():
    runs = iter(["a", "a", "a", "b"])
    ticks = iter(range(100))
    view = LiveView(lambda: {"run_id": next(runs), "point": {"t": next(ticks)}})
    seen: list[dict[str, Any]] = []
    view.listeners.append(seen.append)
    for _ in range(3):
        view.tick()
    assert [p["t"] for p in view.current()["history"]] == [0, 1, 2]
    viewer = stream(view.feed, first=view.with_history)
    first = json.loads(next(viewer).removeprefix(b"data: "))
    assert [p["t"] for p in first["history"]] == [0, 1, 2]  # a new viewer gets the charts so far
    view.tick()  # run "b": its history starts again
    later = json.loads(next(viewer).removeprefix(b"data: "))
    assert later["run_id"] == "b" and "history" not in later and later["point"] == {"t": 3}
    assert [p["t"] for p in view.history.points] == [3]
    assert len(seen) == 4


def test_a_viewer_before_the_first_payload_waits_and_a_closed_feed_ends_its_stream():
    feed = Feed()
    viewer = stream(feed, keepalive_s=0.01)
    assert next(viewer).startswith(b":")  # waiting: a comment, not an event
    assert next(viewer) == b": keep-alive\n\n"
    feed.publish({"n": 1})
    assert json.loads(next(viewer).removeprefix(b"data: ")) == {"n": 1}
    feed.close()
    assert list(viewer) == []


def test_gateway_point_counts_memory_as_the_report_does():
    one = gateway_point({"rss_mb": 70.0, "pss_mb": 50.0, "processes": 1, "cpu_pct": float("nan")})
    tree = gateway_point({"rss_mb": 900.0, "pss_mb": 400.0, "processes": 12})
    assert one["rss_mb"] == 70.0 and one["cpu_pct"] is None  # NaN is no JSON
    assert tree["rss_mb"] == 400.0  # a tree's memory is its PSS
    assert one["heap_mb"] is None and one["eventloop_delay_p99_ms"] is None


class _Idle(HttpUser):
    host = "http://127.0.0.1:9"

    @task
    def nothing(self) -> None:
        pass


def test_the_suite_page_is_the_web_uis_root_and_locusts_own_is_beside_it(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["locust"])  # Locust reads its UI's options from argv
    environment = Environment(user_classes=[_Idle])
    environment.create_local_runner()
    web_ui = environment.create_web_ui("127.0.0.1", 0, delayed_start=True)
    view = LiveView(lambda: {"mode": "run", "run_id": None, "state": "ready", "point": None})
    install_suite_page(environment, view, lambda: {"scenarios": [{"name": "stress"}]})
    http = web_ui.app.test_client()

    page = http.get("/")
    assert page.status_code == 200
    assert page.get_data() == (WEB_DIR / "suite.html").read_bytes()
    locust_page = http.get("/locust").get_data(as_text=True)
    assert "window.templateArgs = " in locust_page
    for src in ("suite/static/suite.js", "suite/static/vendor/uPlot.iife.min.js"):
        assert src in page.get_data(as_text=True)
        assert http.get("/" + src).status_code == 200, src
    assert http.get("/suite/static/../live.py").status_code == 404
    assert http.get("/suite/options").get_json() == {"scenarios": [{"name": "stress"}]}
    live = http.get("/suite/live").get_json()
    assert live["state"] == "ready" and live["history"] == []
    response = http.get("/suite/stream")
    assert response.mimetype == "text/event-stream"
    first = next(response.response)
    assert json.loads(first.removeprefix(b"data: "))["mode"] == "run"
    response.close()
    environment.runner.quit()


@pytest.mark.parametrize("name", ["suite.html", "suite.js", "suite.css"])
def test_the_page_asks_for_nothing_beyond_its_own_server(name):
    """No external asset: every URL in the page's files is relative (the web UI's base path,
    the monitor's port), none absolute, none off this machine."""
    text = (WEB_DIR / name).read_text(encoding="utf-8")
    for scheme in ("http://", "https://", "//cdn", 'src="/', 'href="/'):
        assert scheme not in text, (name, scheme)


def test_the_live_verdict_and_leak_alert_are_the_reports_judgement(monkeypatch, tmp_path):
    """What the child process answers (the report's own model of the run so far) is what the
    view shows: each criterion's state, the worst of them, and a leak the report's analysis
    detected as the one leak alert (the monitor's own leak watch is off during a run)."""
    from types import SimpleNamespace

    from analysis.live_report import LiveReport
    from monitors.resources import ResourceMonitor
    from suite.live_run import RunLive

    monkeypatch.setattr(LiveReport, "start", lambda self: None)
    monitor = ResourceMonitor(pid=None, metrics_url=None, watch_leak=False)
    record = SimpleNamespace(folder=tmp_path, started_at=100.0, extra={})
    live = RunLive(None, None, None, record, None, lambda: monitor, lambda: [])  # type: ignore[arg-type]
    judgement = {"name": "memory leak", "metric": "memory_leak", "scope": "overall"}
    judgement |= {"op": "<=", "limit": 0, "severity": "fail", "value": 1.0, "unit": ""}
    answers = iter(
        [
            {"ok": True, "verdict": {"status": "approved"}, "criteria": [], "leak": {}},
            {
                "ok": True,
                "verdict": {"status": "failed", "failures": []},
                "criteria": [{**judgement, "status": "fail"}],
                "leak": {"detected": True, "mb_per_hour": 90.0},
            },
        ]
    )
    live.report = SimpleNamespace(judge=lambda folder: next(answers))  # type: ignore[assignment]
    live._judge(tmp_path)
    assert monitor.watch.fired == []
    live._judge(tmp_path)
    (alert,) = monitor.watch.fired
    assert alert.kind == "possible_leak" and "+90 MB/h" in alert.message
    verdict = live.verdict(SimpleNamespace(num_requests=10))
    assert verdict["status"] == "failed" and verdict["worst"] == "fail"
    assert verdict["criteria"][0]["state"] == "fail" and verdict["criteria"][0]["aborts"] is False
    assert live.verdict(SimpleNamespace(num_requests=0))["status"] is None  # nothing answered yet
