"""The verdict and the report, end to end: real runs against gateways with their fault switches.

- latency pushing the webhook p95 over 100 ms: Degraded (the criteria file says `degrade`),
  exit code 3;
- a stress ramp against a gateway capped at 300 sessions: it breaks at the first phase whose
  arrivals pass the cap, by refusals that say when to come back (503 + Retry-After), and it
  recovers; `make report` renders the same run again, in Portuguese, with the same verdict;
- a criterion with `abort_on_fail` stops a run early, and the report says which and when;
- the HTML report in headless Chromium: no console error, no request leaving the file, the
  summary and the charts on screen (a screenshot is kept beside the report).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from typing import Any

import pytest
import yaml
from playwright.sync_api import sync_playwright

from shapes.scenario import CONF_DIR, load_scenario
from tests.e2e.conftest import ROOT, Run, run_locust
from tests.e2e.test_browser import CHROMIUM, CHROMIUM_ARGS, PAGE_TIMEOUT_MS

STRESS_SCALE = 0.04  # 6 phases of 1.2 s
SESSION_CAP = 300


def stage_summary(run: Run) -> str:
    return "; ".join(
        f"{s['label']}: {s['requests']} req, {s['error_rate_pct']} % errors"
        for s in run.report["stages"]
    )


@pytest.mark.slow  # ~12 s
@pytest.mark.exclusive  # its latency limit: three workers beside it read 696 ms for 400
def test_webhook_latency_over_its_limit_degrades_the_run(start_gateway, tmp_path):
    gateway = start_gateway("--latency-ms", "150")
    run = run_locust("webhooks", tmp_path / "run", time_scale=0.02, host=gateway.url)
    assert run.returncode == 3, run.explain()
    assert run.verdict == "degraded", run.report["verdict"]
    assert run.reasons() == ["webhook p95"], run.report["verdict"]
    webhook = next(c for c in run.report["criteria"] if c["name"] == "webhook p95")
    assert 150 <= webhook["value"] < 400, webhook
    assert "verdict: DEGRADED: webhook p95" in run.stderr


@pytest.fixture(scope="module")
def capped_stress(tmp_path_factory) -> Run:
    """The stress ramp against a gateway that refuses sessions past 300."""
    from gateway.process import GatewayProcess

    folder = tmp_path_factory.mktemp("stress-capped")
    with GatewayProcess(["--max-sessions", str(SESSION_CAP)]) as gateway:
        return run_locust(
            "stress", folder / "run", time_scale=STRESS_SCALE, host=gateway.url, timeout=90
        )


@pytest.mark.slow  # ~15 s
def test_stress_reports_the_breaking_point_of_the_session_cap(capped_stress):
    run = capped_stress
    assert run.returncode == 1, run.explain()
    assert run.verdict == "failed"
    phases = load_scenario("stress", time_scale=STRESS_SCALE).timetable().phases
    # Sessions outlive this run (idle expiry is 30 s): the cap is passed in the first phase
    # whose cumulative arrivals exceed it.
    due = 0.0
    for index, phase in enumerate(phases):
        due += phase.expected_arrivals
        if due > SESSION_CAP:
            breaks_at = index
            break
    bp = run.report["analysis"]["breaking_point"]
    assert bp["applicable"] and not bp["held_every_stage"], bp
    assert bp["first_bad_stage"]["index"] == breaks_at, stage_summary(run)
    assert bp["last_good_stage"]["index"] == breaks_at - 1, stage_summary(run)
    assert bp["first_bad_stage"]["broken"] == ["error rate"]
    # What broke first: live sessions at the cap, then the errors it caused.
    first, then = bp["broke_first"][:2]
    assert (first["signal"], first["figure"]) == ("ceiling", "sessions_active"), bp["broke_first"]
    assert first["limit"] == SESSION_CAP and first["value"] >= 0.98 * SESSION_CAP, first
    assert then["signal"] == "errors", bp["broke_first"]
    # The bottlenecks name the cap, and the errors' advice points to it, not to the logs.
    cap = run.report["bottlenecks"][0]
    assert cap["kind"] == "ceiling" and cap["evidence"]["figure"] == "sessions_active", cap
    assert cap["evidence"]["limit"] == SESSION_CAP, cap
    assert cap["evidence"]["level"] >= 0.98 * SESSION_CAP, cap
    errors = next(f for f in run.report["bottlenecks"] if f["kind"] == "errors")
    assert errors["evidence"]["explained_by"] == "sessions_active", errors
    markdown = (run.report_dir / "report.md").read_text(encoding="utf-8")
    assert f"the gateway's session cap of {SESSION_CAP}" in markdown, markdown
    # Refused the way a client can act on: 503 with Retry-After, no timeout, no other 5xx.
    graceful = bp["graceful"]
    assert graceful["graceful"] and graceful["other_failures"] == 0, graceful
    assert graceful["refusals_with_instructions"] == run.summary["totals"]["failures"] > 0
    assert bp["recovery"]["probe"]["recovered"], bp["recovery"]
    # The stages that held have no failures at all; the report lists all six.
    stages = run.report["stages"]
    assert len(stages) == len(phases)
    assert all(s["failures"] == 0 for s in stages[:breaks_at]), stage_summary(run)
    assert sum(s["requests"] for s in stages) == run.summary["totals"]["requests"]
    print(f"\nstress capped at {SESSION_CAP}: {stage_summary(run)}")


def test_make_report_renders_a_saved_run_again_in_portuguese(capped_stress, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(capped_stress.report_dir, copy)
    for name in ("report.json", "report.md", "report.html"):
        (copy / name).unlink()
    result = subprocess.run(
        ["make", "--no-print-directory", "report", f"RUN={copy}", "REPORT_LANG=pt-BR"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr  # make's own code for a failing command
    assert "FAILED" in result.stdout, result.stdout + result.stderr
    again = json.loads((copy / "report.json").read_text())
    assert again["verdict"] == capped_stress.report["verdict"]
    assert again["lang"] == "pt-BR"
    markdown = (copy / "report.md").read_text()
    assert "# Relatório de Performance" in markdown
    assert "Ponto de ruptura" in markdown and "❌ Falha" in markdown
    direct = subprocess.run(
        [sys.executable, "-m", "analysis.report", str(copy)], cwd=ROOT, capture_output=True,
        text=True, timeout=60,
    )  # fmt: skip
    assert direct.returncode == 1, direct.stderr  # the verdict's exit code: Failed


def test_a_criterion_with_abort_on_fail_stops_the_run(start_gateway, tmp_path):
    criteria = yaml.safe_load((CONF_DIR / "criteria.yaml").read_text())
    criteria["criteria"][0].update(abort_on_fail=True, abort_after="2s")  # error rate
    criteria_file = tmp_path / "criteria.yaml"
    criteria_file.write_text(yaml.safe_dump(criteria))
    scenario = yaml.safe_load((CONF_DIR / "scenarios" / "webhooks.yaml").read_text())
    scenario["criteria"] = str(criteria_file)
    scenario["load"]["stages"] = [{"duration": "40s", "target": 20}]
    scenario_file = tmp_path / "webhooks-abort.yaml"
    scenario_file.write_text(yaml.safe_dump(scenario))
    gateway = start_gateway("--error-rate", "0.5")
    run = run_locust(str(scenario_file), tmp_path / "run", host=gateway.url, timeout=60)
    assert run.returncode == 1, run.explain()
    aborted = run.report["run"]["aborted"]
    assert aborted["criterion"] == "error rate" and aborted["value"] > 5, aborted
    assert 2 <= aborted["at_s"] <= 10, aborted
    assert run.summary["duration_s"] < 20  # not the planned 40 s
    assert "aborted" in run.report["verdict"]["failures"]
    assert "aborting the run: error rate" in run.stderr


def test_html_report_in_headless_chromium(capped_stress, tmp_path):
    report = capped_stress.report_dir / "report.html"
    html = report.read_text(encoding="utf-8")
    assert "<script" not in html and "<link" not in html  # nothing to fetch: opens offline
    errors: list[str] = []
    outside: list[str] = []
    shot = capped_stress.report_dir / "report.png"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        page.set_default_timeout(PAGE_TIMEOUT_MS)
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("request", lambda r: None if r.url.startswith("file:") else outside.append(r.url))
        page.goto(report.as_uri())
        verdict = page.locator("#verdict")
        assert verdict.is_visible() and "Failed" in verdict.inner_text()
        charts: list[dict[str, Any]] = page.eval_on_selector_all(
            "figure.chart-figure",
            """figs => figs.map(f => ({
                key: f.dataset.chart,
                lines: f.querySelectorAll('polyline').length,
                points: Math.max(0, ...Array.from(f.querySelectorAll('polyline'),
                                  p => p.getAttribute('points').split(' ').length)),
                height: f.getBoundingClientRect().height,
            }))""",
        )
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    assert not errors, errors
    assert not outside, outside
    keys = {c["key"] for c in charts}
    assert {"throughput", "latency", "load", "cpu", "memory", "queue"} <= keys, charts
    assert all(c["lines"] >= 1 and c["points"] >= 5 and c["height"] > 100 for c in charts), charts
    assert shot.stat().st_size > 20_000
