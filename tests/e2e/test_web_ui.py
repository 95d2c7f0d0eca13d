"""`make ui` serves Locust's web UI; a run is started, watched and stopped over its HTTP API.

The UI is started exactly as the Makefile's `ui` target starts it (on a free port, against a
real reference gateway), then driven like a browser would: the scenario options are in the
form, POST /swarm starts the scenario's shape, /stats/requests counts requests, POST /stop
stops it and the run's summary.json is written. A second run from the same UI picks up the
other scenario chosen in the form.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.process import PROJECT_ROOT, GatewayProcess

pytestmark = pytest.mark.slow

LOCUST = PROJECT_ROOT / ".venv" / "bin" / "locust"
START_TIMEOUT_S = 20.0
RUN_TIMEOUT_S = 20.0
EXIT_TIMEOUT_S = 10.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(check: Callable[[], Any], timeout_s: float, what: str, output: Path) -> Any:
    """Poll `check` until it returns something truthy; fail with the UI's output otherwise."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            result = check()
        except (httpx.HTTPError, OSError, ValueError):
            result = None
        if result:
            return result
        time.sleep(0.2)
    tail = "\n".join(output.read_text(errors="replace").splitlines()[-40:])
    pytest.fail(f"{what}: not within {timeout_s:.0f} s; locust output:\n{tail}")


class WebUI:
    """The suite's web UI as a subprocess, as `make ui` starts it."""

    def __init__(self, gateway_url: str, report_dir: Path, output: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.report_dir = report_dir
        self.output = output
        command = [
            str(LOCUST),
            "-f",
            "locustfile.py",
            "--web-host",
            "127.0.0.1",
            "--web-port",
            str(self.port),
            "-H",
            gateway_url,
            "--report-dir",
            str(report_dir),
        ]
        self._log = output.open("w")
        self.proc = subprocess.Popen(
            command, cwd=PROJECT_ROOT, stdout=self._log, stderr=subprocess.STDOUT
        )
        self.http = httpx.Client(base_url=self.url, timeout=5)

    def wait(self, check: Callable[[], Any], timeout_s: float, what: str) -> Any:
        def guarded() -> Any:
            if self.proc.poll() is not None:
                pytest.fail(f"locust exited with {self.proc.returncode} while waiting: {what}")
            return check()

        return wait_for(guarded, timeout_s, what, self.output)

    def stats(self) -> dict[str, Any]:
        return self.http.get("/stats/requests").raise_for_status().json()

    def counted(self, endpoint: str) -> bool:
        """Requests counted in this run: running, the total and the scenario's endpoint > 0.

        /stats/requests is cached for up to two seconds, so right after a start it can still
        answer the previous run's figures: those are `stopped` and name other endpoints.
        """
        report = self.stats()
        rows = {row["name"]: row["num_requests"] for row in report["stats"]}
        return (
            report["state"] in ("spawning", "running")
            and rows.get("Aggregated", 0) > 0
            and any(endpoint in name and count > 0 for name, count in rows.items())
        )

    def template_args(self) -> dict[str, Any]:
        """What Locust puts in the index page for its form (fresh at every request)."""
        page = self.http.get("/locust").raise_for_status().text  # the suite's page is at /
        marker = "window.templateArgs = "
        assert marker in page
        return json.loads(page.split(marker, 1)[1].split("\n", 1)[0].rstrip().rstrip(";"))

    def summary(self) -> dict[str, Any] | None:
        path = self.report_dir / "summary.json"
        return json.loads(path.read_text()) if path.exists() else None

    def close(self) -> None:
        self.http.close()
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self._log.close()


@pytest.fixture
def web_ui(start_gateway, tmp_path: Path) -> Iterator[WebUI]:
    gateway: GatewayProcess = start_gateway("--pairing-delay-s", "0.2")
    ui = WebUI(gateway.url, tmp_path / "run", tmp_path / "locust.log")
    try:
        ui.wait(lambda: ui.http.get("/").status_code == 200, START_TIMEOUT_S, "GET / answers 200")
        yield ui
    finally:
        ui.close()


def swarm_and_stop(ui: WebUI, scenario: str, time_scale: str, endpoint: str) -> dict[str, Any]:
    """Start the scenario from the form, see requests counted, stop it; its summary."""
    answer = ui.http.post("/swarm", data={"scenario": scenario, "time_scale": time_scale})
    assert answer.status_code == 200
    body = answer.json()
    assert body["success"], body
    assert "ScenarioShape" in body["message"]

    ui.wait(lambda: ui.counted(endpoint), RUN_TIMEOUT_S, f"{scenario}: {endpoint} counted")
    # While it runs, summary.json is still the previous run's (or absent): a run's summary is
    # written when it stops, never while the next one runs.
    during = ui.summary()
    assert during is None or during["scenario"] != scenario, during

    assert ui.http.post("/stop").json()["success"]
    # The index page's state is not cached (/stats/requests is, for up to two seconds).
    ui.wait(lambda: ui.template_args()["state"] == "stopped", 10, f"{scenario}: state stopped")

    def fresh_summary() -> dict[str, Any] | None:
        summary = ui.summary()
        if summary and summary["scenario"] == scenario and summary["ended_at"]:
            return summary
        return None

    summary = ui.wait(fresh_summary, 10, f"{scenario}: summary.json written")
    assert summary["totals"]["requests"] > 0
    assert summary["time_scale"] == pytest.approx(float(time_scale))
    assert summary["target"].startswith("http://127.0.0.1:")
    assert summary["embedded_target"] is False
    assert summary["duration_s"] > 0
    return summary


def test_web_ui_runs_scenarios_over_its_http_api(web_ui: WebUI) -> None:
    ui = web_ui

    # The suite's options are in the UI's form (Locust puts the template args in the page).
    extra = ui.template_args()["extra_options"]
    assert {"scenario", "time_scale"} <= set(extra), extra
    assert extra["scenario"]["default_value"] == "sessions"
    assert "webhooks" in extra["scenario"]["help_text"]
    assert not {"target_pid", "gateway_args", "allow_remote"} & set(extra)

    first = swarm_and_stop(ui, "webhooks", "0.05", "/api/webhook")
    assert first["model"] == "stages"
    assert any("webhook" in key for key in first["requests"]), first["requests"].keys()

    # The same UI, another scenario chosen in the form: the shape and users follow it.
    second = swarm_and_stop(ui, "sessions", "0.2", "/api/sessions")
    assert second["model"] == "arrivals"
    assert any("sessions" in key for key in second["requests"]), second["requests"].keys()
    assert not any("webhook" in key for key in second["requests"])
    # The last run's report, judged and rendered, is served by the UI.
    page = ui.http.get("/report")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "Performance report" in page.text and 'id="verdict"' in page.text

    ui.proc.send_signal(signal.SIGTERM)
    try:
        ui.proc.wait(EXIT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"locust did not exit within {EXIT_TIMEOUT_S:.0f} s of SIGTERM")
    assert ui.proc.returncode == 0
    # Written once more at exit: still the last run's.
    last = ui.summary()
    assert last is not None and last["scenario"] == "sessions"
    assert last["totals"]["requests"] >= second["totals"]["requests"]
