"""The live view in a real browser, as a person uses it, and Locust's own page beside it.

Headless Chromium (Debian's /usr/bin/chromium, driven by Playwright for Python; Playwright's own
browser downloads are never used) opens `make ui`'s page, picks a scenario from the list, sets
the time scale, clicks Start, sees the stage advance, the live verdict come and the charts
grow, opens Locust's own page and its Resources tab, stops the run and follows the link to
the report. The page may reach loopback only (anything else is aborted and fails the test) and
must log no console error. Screenshots are kept (`ARTIFACTS`, printed). Meanwhile
`GET /resources/stream` must push an event a second. A quick in-process check of the same
endpoints (no browser, no load) runs in `make test-fast` too. A missing Chromium or Playwright
is a failure, not a skip: `.ci/run` installs Chromium, requirements.txt pins Playwright.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from locust import HttpUser, task
from locust.env import Environment
from playwright.sync_api import ConsoleMessage, Page, Route, sync_playwright

from gateway.process import PROJECT_ROOT
from monitors.alerts import Alert
from monitors.live import install_live_view
from tests.e2e.test_web_ui import START_TIMEOUT_S, WebUI

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Screenshots a person can look at after the run (CI keeps the clone's folder).
ARTIFACTS = Path(
    os.environ.get("SUITE_TEST_ARTIFACTS", PROJECT_ROOT / "reports" / "test-artifacts")
)
PAGE_TIMEOUT_MS = 20_000
CHANGE_TIMEOUT_S = 12.0  # the UI polls /stats/requests every 2 s; the gateway is sampled at 1 Hz
STREAM_S = 3.2
# Figures that move while load runs: the users ramp, the gateway works and grows.
MOVING = ("users", "rss_mb", "cpu_pct", "connections", "sessions_active")
# Every uPlot chart the page makes, to read what it holds.
RECORD_CHARTS = """
window.__charts = [];
let real;
Object.defineProperty(window, 'uPlot', {configurable: true, get() { return real; },
  set(v) { real = new Proxy(v, {construct(t, a) {
    const u = new t(...a); window.__charts.push(u); return u; }}); }});
"""
CHART_POINTS = """() => Object.fromEntries(window.__charts.filter(u => u.root.isConnected)
  .map(u => [u.root.closest('.chart-card').id, u.data[0].length]))"""


def read_table(page: Page) -> dict[str, list[str]]:
    """The Resources table as {figure: [current, peak, mean, what]} (only that tab's table is
    rendered while it is selected)."""
    cells: list[list[str]] = page.eval_on_selector_all(
        "table tbody tr", "rows => rows.map(r => Array.from(r.cells, c => c.innerText.trim()))"
    )
    return {row[0]: row[1:] for row in cells if row}


def read_stream(url: str, seconds: float) -> tuple[str, list[dict[str, Any]]]:
    """The content type and the events `GET /resources/stream` pushed within `seconds`."""
    events: list[dict[str, Any]] = []
    deadline = time.monotonic() + seconds
    with (
        httpx.Client(timeout=httpx.Timeout(5.0)) as http,
        http.stream("GET", url + "/resources/stream") as response,
    ):
        assert response.status_code == 200
        content_type = response.headers.get("content-type", "")
        for line in response.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line.removeprefix("data: ")))
            if time.monotonic() >= deadline:
                break
    return content_type, events


def shot(page: Page, name: str, shots: list[Path]) -> None:
    path = ARTIFACTS / f"live-view-{name}.png"
    page.screenshot(path=str(path), full_page=True)
    shots.append(path)


def check_resources_tab(page: Page, url: str) -> None:
    """Locust's own page, one click away: its Resources tab has the gateway's figures, in the
    suite's order, and they move."""
    page.goto(url + "/locust", wait_until="domcontentloaded")
    page.get_by_role("tab", name="Resources").click()
    page.get_by_role("cell", name="rss_mb", exact=True).wait_for()
    headers = page.eval_on_selector_all(
        "table thead th", "cells => cells.map(c => c.innerText.trim())"
    )
    assert headers[:2] == ["Figure", "Current"], headers
    first = read_table(page)
    assert {"rss_mb", "cpu_pct", "users"} <= set(first), first
    assert float(first["rss_mb"][0]) > 0, first["rss_mb"]
    order = list(first)  # the suite's order (memory, CPU, ..., users), not A-Z
    assert order.index("rss_mb") < order.index("cpu_pct") < order.index("users")
    deadline = time.monotonic() + CHANGE_TIMEOUT_S
    changed: list[str] = []
    while not changed and time.monotonic() < deadline:
        page.wait_for_timeout(1000)
        second = read_table(page)
        changed = [k for k in MOVING if k in first and second.get(k) != first[k]]
    assert changed, f"no figure moved in {CHANGE_TIMEOUT_S:.0f} s"


def check_resources_stream(ui: WebUI) -> None:
    """For external dashboards: the tab's table in Locust's template args, and the gateway's
    figures pushed once a second."""
    args = ui.template_args()
    assert {"key": "resources", "title": "Resources"} in args["extended_tabs"]
    table = next(t for t in args["extended_tables"] if t["key"] == "resources")
    assert [c["title"] for c in table["structure"]][:2] == ["Figure", "Current"]
    content_type, events = read_stream(ui.url, STREAM_S)
    assert content_type.startswith("text/event-stream"), content_type
    assert len(events) >= 2, events
    assert all(e["state"] in ("spawning", "running") for e in events), events
    assert {"sample", "alerts", "rows"} <= set(events[-1]), events[-1].keys()
    assert events[-1]["sample"]["t"] > events[0]["sample"]["t"], events


@pytest.mark.slow
def test_a_person_runs_a_scenario_from_the_live_view(start_gateway, tmp_path: Path) -> None:
    assert CHROMIUM.is_file(), f"{CHROMIUM} is missing: apt-get install -y chromium"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    gateway = start_gateway("--pairing-delay-s", "0.2")
    ui = WebUI(gateway.url, tmp_path / "run", tmp_path / "locust.log")
    console_errors: list[str] = []
    off_loopback: list[str] = []
    shots: list[Path] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            console_errors.append(f"{message.text} ({message.location.get('url', '')})")

    def loopback_only(route: Route) -> None:
        if urlsplit(route.request.url).hostname in ("127.0.0.1", "localhost"):
            route.continue_()
        else:
            off_loopback.append(route.request.url)
            route.abort()

    try:
        ui.wait(lambda: ui.http.get("/").status_code == 200, START_TIMEOUT_S, "GET / answers 200")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
            )
            try:
                context = browser.new_context(viewport={"width": 1400, "height": 1000})
                context.route("**/*", loopback_only)
                context.add_init_script(RECORD_CHARTS)
                page = context.new_page()
                page.set_default_timeout(PAGE_TIMEOUT_MS)
                page.on("console", on_console)
                page.on("pageerror", lambda error: console_errors.append(f"page error: {error}"))
                page.goto(ui.url + "/", wait_until="domcontentloaded")

                # The form: the scenarios of conf/scenarios/, each with its steps.
                page.locator("#form-view").wait_for()
                page.wait_for_function("document.querySelectorAll('#scenario option').length")
                names = page.eval_on_selector_all(
                    "#scenario option", "options => options.map(o => o.value)"
                )
                assert names == ["endurance", "messages", "sessions", "stress", "webhooks"]
                page.select_option("#scenario", "sessions")
                page.fill("#time_scale", "0.15")
                steps = page.eval_on_selector_all(
                    "#steps tbody tr", "rows => rows.map(r => r.innerText.replace(/\\s+/g, ' '))"
                )
                assert len(steps) == 3 and all("9 s" in row for row in steps), steps
                assert "10 arrivals/s" in steps[0] and "100 arrivals/s" in steps[2], steps
                page.select_option("#target_profile", "waha")
                assert "not available" in page.inner_text("#scenario-why-not")  # webhooks
                page.select_option("#target_profile", "plan")
                shot(page, "1-form", shots)
                page.click("#start")

                # The run: the stage advances, the verdict comes, the charts grow.
                page.locator("#dashboard").wait_for()
                page.wait_for_function("document.querySelector('#stage').innerText.includes('1/3')")
                first_charts = page.evaluate(CHART_POINTS)
                page.wait_for_function(
                    "document.querySelector('#stage').innerText.includes('2/3')", timeout=20_000
                )
                page.wait_for_function(
                    "['approved', 'degraded', 'failed'].includes("
                    "document.querySelector('#verdict-status').innerText.trim())",
                    timeout=20_000,
                )
                states = page.eval_on_selector_all(
                    "#verdict tbody tr",
                    "rows => rows.map(r => Array.from(r.cells, c => c.innerText.trim()))",
                )
                by_name = {row[0]: row for row in states}
                assert "error rate" in by_name and "pass" in by_name["error rate"], states
                webhook = [row for row in states if row[0].startswith("webhook p95")]
                assert webhook and "not measured" in webhook[0], states
                latency = page.inner_text("#latency")
                assert "from the due time" in latency and "service time" in latency, latency
                later_charts = page.evaluate(CHART_POINTS)
                assert {"chart-throughput", "chart-latency", "chart-memory"} <= set(later_charts)
                grew = [k for k, n in later_charts.items() if n > first_charts.get(k, 0)]
                assert "chart-latency" in grew, (first_charts, later_charts)
                shot(page, "2-running", shots)

                other = context.new_page()
                other.set_default_timeout(PAGE_TIMEOUT_MS)
                other.on("console", on_console)
                check_resources_tab(other, ui.url)
                shot(other, "3-locust-resources", shots)
                other.close()
                check_resources_stream(ui)

                # Stopped: the verdict, and the report one click away.
                page.click("#stop")
                page.locator("#ended").wait_for(timeout=20_000)
                page.wait_for_function(  # "run stopped" until the report's verdict is in
                    "['approved', 'degraded', 'failed'].includes("
                    "document.querySelector('#ended-status').innerText.trim().toLowerCase())",
                    timeout=20_000,
                )
                status = page.inner_text("#ended-status").strip().lower()
                assert status in ("approved", "degraded", "failed"), status
                page.wait_for_function(  # and the criteria shown are the report's last word
                    "document.querySelector('#verdict-status').innerText.trim().toLowerCase()"
                    " === document.querySelector('#ended-status').innerText.trim().toLowerCase()",
                    timeout=10_000,
                )
                shot(page, "4-ended", shots)
                page.click("#report-link")
                page.wait_for_load_state("domcontentloaded")
                assert "Performance report" in page.content()
                shot(page, "5-report", shots)
            finally:
                browser.close()
        print("\nscreenshots: " + ", ".join(str(p) for p in shots))
        assert not off_loopback, f"the page reached beyond loopback: {off_loopback}"
        assert not console_errors, f"console errors: {console_errors}"
        summary = json.loads((tmp_path / "run" / "summary.json").read_text())
        assert summary["scenario"] == "sessions" and summary["time_scale"] == 0.15
        assert summary["partial"] is True  # stopped from the page before its plan ended
    finally:
        ui.close()


class _Idle(HttpUser):
    host = "http://127.0.0.1:9"

    @task
    def nothing(self) -> None:
        pass


class _FakeMonitor:
    """What install_live_view reads of a ResourceMonitor, with figures the test sets."""

    def __init__(self) -> None:
        self.sample: dict[str, Any] = {}
        self.alerts: list[Alert] = []

    def live(self) -> dict[str, Any]:
        return {
            "sample": dict(self.sample),
            "alerts": [a.as_dict() for a in self.alerts],
            "notes": ["a note"],
        }

    def summary(self) -> dict[str, Any]:
        figures = {k: {"peak": v, "mean": v} for k, v in self.sample.items() if k != "t"}
        return {"figures": figures}


def test_live_view_endpoints_in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["locust"])  # Locust reads its UI's options from argv
    environment = Environment(user_classes=[_Idle])
    environment.create_local_runner()
    web_ui = environment.create_web_ui("127.0.0.1", 0, delayed_start=True)
    monitor = _FakeMonitor()
    install_live_view(environment, monitor)  # type: ignore[arg-type]
    http = web_ui.app.test_client()

    page = http.get("/").get_data(as_text=True)
    args = json.loads(page.split("window.templateArgs = ", 1)[1].split("\n", 1)[0])
    assert args["extended_tabs"] == [{"title": "Resources", "key": "resources"}]
    assert args["extended_tables"][0]["structure"][0] == {"key": "figure", "title": "Figure"}

    def tab_rows() -> list[dict[str, Any]]:
        report = http.get("/stats/requests").get_json()
        (entry,) = [e for e in report["extended_stats"] if e["key"] == "resources"]
        return entry["data"]

    assert [row["figure"] for row in tab_rows()] == ["no sample yet", "note"]
    monitor.sample = {"t": 2.0, "users": 5, "rss_mb": 50.5, "cpu_pct": float("nan")}
    monitor.alerts = [Alert("high_cpu", "CPU 95 % above 80 %", 1.0)]
    # /stats/requests is memoized for 2 s: the resources in it are fresh all the same.
    rows = tab_rows()
    assert [row["figure"] for row in rows] == [
        "ALERT high_cpu", "t", "rss_mb", "cpu_pct", "users", "note",
    ]  # fmt: skip
    assert [row["name"] for row in rows] == sorted(row["name"] for row in rows)  # UI's order
    by_figure = {row["figure"]: row for row in rows}
    assert by_figure["rss_mb"]["value"] == 50.5 and by_figure["rss_mb"]["peak"] == 50.5
    assert by_figure["cpu_pct"]["value"] is None  # NaN is not JSON

    once = http.get("/resources").get_json()
    assert once["state"] == "ready" and once["sample"]["users"] == 5
    assert once["alerts"][0]["kind"] == "high_cpu" and once["rows"] == rows
    environment.runner.quit()
