"""End to end: the plan's scenarios as real Locust runs (subprocesses) against a real gateway.

Each scenario runs time-compressed against a gateway the test starts, so that afterwards the
gateway's own counters (/metrics) can be held against the run's summary.json: both sides of
the wire must agree to 1 %. Then the faults (injected errors, throttling), the embedded gateway
and `make stress` (bad usage and phone numbers: test_usage.py).
Every load goes to loopback and every run is bounded by a timeout.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from gateway.process import GatewayProcess
from shapes.scenario import load_scenario
from suite.target import is_loopback_url
from tests.e2e.conftest import (
    GatewayCounts,
    Run,
    agrees,
    refuses,
    route_key,
    run_command,
    run_locust,
    summary_by_route,
)

WEBHOOK = "POST /api/webhook"
SEND = "POST /api/sessions/{session_id}/messages"
# Endurance is 24 h: compressed to about 15 s.
ENDURANCE_SCALE = 15 / 86_400
# Locust's own log lines ("[2026-...] host/INFO/locust.main: Starting Locust 2.47.0").
LOCUST_LOG_LINE = re.compile(r"^\[\d{4}-\d\d-\d\d [\d:,]+\] \S+/[A-Z]+/locust[\w.]*: ")


# --- checks shared by the scenario runs ------------------------------------------------------


def check_clean_run(run: Run, scenario: str, time_scale: float = 1.0) -> dict[str, Any]:
    """Approved (exit code 0, report written), no traceback, and a summary whose own fields
    are consistent."""
    assert run.returncode == 0, run.explain()
    assert "Traceback" not in run.stderr, run.explain()
    assert run.verdict == "approved", run.report.get("verdict")
    assert "verdict: APPROVED" in run.stderr
    for name in ("report.html", "report.md", "report.json", "timeline.json"):
        assert (run.report_dir / name).is_file(), name
    summary = run.summary
    assert summary, f"no summary.json in {run.report_dir}; " + run.explain()
    assert summary["scenario"] == scenario
    assert summary["time_scale"] == pytest.approx(time_scale)
    assert summary["partial"] is False
    assert summary["peak_users"] > 0
    totals = summary["totals"]
    assert totals["requests"] > 0
    assert totals["failures"] == 0, summary["errors"]
    assert totals["error_rate_pct"] == 0
    for kind in ("latency", "service"):
        described = totals[kind]
        assert described["count"] == totals["requests"], kind
        assert 0 < described["p50_ms"] <= described["p95_ms"] <= described["p99_ms"], described
        assert described["p99_ms"] <= described["max_ms"]
    planned = load_scenario(scenario, time_scale=time_scale).duration_s()
    if planned is not None:  # a burst has no planned length: it ends when all have answered
        assert planned - 0.5 <= summary["duration_s"] <= planned + 15, (
            summary["duration_s"],
            planned,
        )
    else:
        assert summary["duration_s"] > 0
    return summary


def check_arrivals(summary: dict[str, Any]) -> None:
    """Open model: every due arrival started or was dropped, none dropped, all finished."""
    arrivals = summary["arrivals"]
    assert arrivals["due"] == arrivals["started"] + arrivals["dropped"], arrivals
    assert arrivals["dropped"] == 0, arrivals
    assert arrivals["completed"] == arrivals["started"], arrivals
    assert arrivals["in_flight"] == 0, arrivals
    # One POST /api/sessions per arrival.
    assert arrivals["due"] == summary["totals"]["requests"] == summary["sessions"]["attempted"]


def webhooks_ok(summary: dict[str, Any]) -> int:
    entry = summary["requests"].get(WEBHOOK)
    return entry["requests"] - entry["failures"] if entry else 0


def check_agreement(
    summary: dict[str, Any], gateway: GatewayCounts, routes: bool = True
) -> dict[str, tuple]:
    """summary.json against the gateway's /metrics, to 1 %; returns the pairs compared.

    `routes`: route by route too (the gateway counts the 500s of its --error-rate switch,
    answered before routing, under the route "unmatched")."""
    # The deletes of the suite's sessions after the load are not recorded (not part of the
    # load); the gateway saw them, and summary.json counts them.
    cleanup = (summary["sessions"]["deleted"] or 0) + (summary["sessions"]["delete_failed"] or 0)
    pairs = {
        "HTTP requests": (summary["totals"]["requests"] + cleanup, gateway.http_requests()),
        "sessions created": (summary["sessions"]["created"], gateway.sessions_created),
        "messages accepted": (summary["messages"]["accepted"], gateway.messages["accepted"]),
        "messages delivered": (summary["messages"]["delivered"], gateway.messages["delivered"]),
        "webhook events processed": (webhooks_ok(summary), gateway.webhook_events["processed"]),
    }
    if routes:
        ours, theirs = summary_by_route(summary), gateway.by_route()
        if cleanup:
            delete = route_key("DELETE", "/api/sessions/{session_id}")
            ours[delete] = ours.get(delete, 0) + cleanup
        for route in sorted(set(ours) | set(theirs)):
            pairs[route] = (ours.get(route, 0), theirs.get(route, 0))
    wrong = {name: pair for name, pair in pairs.items() if not agrees(*pair)}
    assert not wrong, f"summary vs gateway (ours, theirs) disagree: {wrong}"
    return pairs


def report(name: str, run: Run, pairs: dict[str, tuple], **extra: Any) -> None:
    """What was measured, for `pytest -rP` (and the curious)."""
    shown = ", ".join(f"{k} {a:g}/{b:g}" for k, (a, b) in pairs.items() if a or b)
    more = "".join(f", {k} {v}" for k, v in extra.items())
    print(f"[e2e] {name}: {run.elapsed_s:.1f} s; summary/gateway: {shown}{more}")


def run_scenario(
    start_gateway, tmp_path: Path, scenario: str, time_scale: float | None, *gateway_args: str
) -> tuple[Run, GatewayCounts]:
    gateway = start_gateway(*gateway_args)
    run = run_locust(scenario, tmp_path / "run", time_scale=time_scale, host=gateway.url)
    return run, GatewayCounts.of(gateway.url)


# --- the plan's numbers, as the scenario files say them ----------------------------------


def test_scenario_files_hold_the_plans_numbers():
    sessions = load_scenario("sessions")
    assert sessions.model == "arrivals"
    assert [(p.duration_s, p.arrival_rate, p.ramp_to) for p in sessions.timetable().phases] == [
        (60, 10, None),
        (60, 50, None),
        (60, 100, None),
    ]
    assert list(sessions.users) == ["SessionCreator"]

    webhooks = load_scenario("webhooks")
    assert webhooks.model == "stages"
    assert [(s.duration_s, s.target) for s in webhooks.stages().stages] == [
        (120, 100),
        (120, 500),
        (120, 1000),
    ]
    assert list(webhooks.users) == ["WebhookSender"]

    messages = load_scenario("messages")
    assert messages.model == "burst"
    assert (messages.load.users, messages.load.iterations_per_user) == (10, 50)
    assert list(messages.users) == ["MessageSender"]

    stress = load_scenario("stress")
    assert [(p.duration_s, p.arrival_rate, p.ramp_to) for p in stress.timetable().phases] == [
        (30, rate, None) for rate in (1, 10, 50, 100, 500, 1000)
    ]
    assert stress.users["SessionCreator"].options["api_key"] == "stress-test-key"

    endurance = load_scenario("endurance")
    assert endurance.load.model == "endurance"
    assert endurance.load.duration == 24 * 3600
    assert endurance.duration_s() == pytest.approx(24 * 3600)


def test_time_scale_compresses_the_phases():
    sessions = load_scenario("sessions", time_scale=0.1)
    phases = sessions.timetable().phases
    assert [p.duration_s for p in phases] == pytest.approx([6, 6, 6])
    assert [p.arrival_rate for p in phases] == [10, 50, 100]  # rates are not scaled
    assert sessions.duration_s() == pytest.approx(18)
    assert load_scenario("endurance", time_scale=ENDURANCE_SCALE).duration_s() == pytest.approx(15)


# --- one run per scenario, summary against the gateway's counters --------------------------


@pytest.mark.exclusive
def test_sessions_scenario(start_gateway, tmp_path):
    run, gateway = run_scenario(start_gateway, tmp_path, "sessions", 0.05)  # 3 x 3 s
    summary = check_clean_run(run, "sessions", 0.05)
    check_arrivals(summary)
    assert summary["arrivals"]["due"] == 480  # 0.05 x 60 s x (10 + 50 + 100)
    assert summary["sessions"]["created"] == 480
    assert summary["sessions"]["success_rate_pct"] == 100
    pairs = check_agreement(summary, gateway)
    report("sessions", run, pairs, not_load=gateway.not_load())


@pytest.mark.exclusive
def test_webhooks_scenario(start_gateway, tmp_path):
    run, gateway = run_scenario(start_gateway, tmp_path, "webhooks", 0.03)  # 3 x 3.6 s
    summary = check_clean_run(run, "webhooks", 0.03)
    assert summary["arrivals"] is None  # a closed model
    assert summary["totals"]["requests"] >= 1000
    check = summary["checks"]["webhook status 200 and under 500 ms"]
    assert check["passed"] + check["failed"] == summary["totals"]["requests"]
    assert gateway.webhook_events.get("duplicate", 0) == 0  # every event id is unique
    # A ramp, headless: the suite's progress lines, none of Locust's per-tick INFO lines.
    assert "[webhooks] stage 3/3" in run.stderr, run.stderr
    assert not locust_info_lines(run.stderr), run.stderr
    pairs = check_agreement(summary, gateway)
    report("webhooks", run, pairs, peak_users=summary["peak_users"])


def locust_info_lines(stderr: str) -> list[str]:
    return [
        line for line in stderr.splitlines() if LOCUST_LOG_LINE.match(line) and "/INFO/" in line
    ]


@pytest.mark.slow  # ~6 s
def test_loglevel_info_brings_locusts_own_lines_back(start_gateway, tmp_path):
    gateway = start_gateway()
    run = run_locust(
        "webhooks", tmp_path / "run", "--loglevel", "INFO", time_scale=0.005, host=gateway.url
    )
    assert run.returncode == 0, run.explain()
    lines = locust_info_lines(run.stderr)
    assert any("Shape test updating to" in line for line in lines), run.stderr
    assert any("Starting Locust" in line for line in lines), run.stderr


@pytest.fixture(scope="module")
def messages_run(tmp_path_factory) -> Iterator[tuple[Run, GatewayCounts]]:
    """The messages burst (not time-scaled) against a default gateway, for two tests."""
    with GatewayProcess() as gateway:
        run = run_locust("messages", tmp_path_factory.mktemp("messages"), host=gateway.url)
        yield run, GatewayCounts.of(gateway.url)


def test_messages_scenario(messages_run):
    run, gateway = messages_run
    summary = check_clean_run(run, "messages")
    messages = summary["messages"]
    assert messages["accepted"] == 500  # 10 sessions x 50 messages
    assert messages["delivered"] == 500
    assert messages["delivery_rate_pct"] == 100
    assert messages["failed"] == messages["undelivered"] == 0
    assert messages["delivery_latency"]["count"] == 500
    assert summary["sessions"]["created"] == 10
    assert summary["peak_users"] == 10
    assert summary["websocket"]["connected"] == 10
    # Every user stopped cleanly before the run ended: its session deleted (on_stop), as the
    # gateway counted it too; after the load, so not among the measured requests.
    assert "DELETE /api/sessions/{session_id}" not in summary["requests"]
    assert summary["sessions"]["deleted"] == gateway.sessions_deleted == 10
    pairs = check_agreement(summary, gateway)
    report("messages", run, pairs, throttled=messages["throttled"])


@pytest.mark.slow  # ~10 s
def test_keep_sessions_leaves_the_senders_sessions_on_the_gateway(start_gateway, tmp_path):
    gateway = start_gateway()
    run = run_locust("messages", tmp_path / "run", "--keep-sessions", host=gateway.url)
    assert run.returncode == 0, run.explain()
    assert run.summary["sessions"]["created"] == 10
    assert not run.summary["sessions"]["deleted"]
    assert "DELETE /api/sessions/{session_id}" not in run.summary["requests"]
    counts = GatewayCounts.of(gateway.url)
    assert counts.sessions_deleted == 0 and counts.sessions_created == 10


def test_messages_throttling_is_visible_and_not_a_failure(messages_run):
    run, gateway = messages_run
    summary = run.summary
    throttled = summary["messages"]["throttled"]
    assert throttled > 0  # 50 at once on a 10/s bucket
    entry = summary["requests"][f"{SEND} (throttled)"]
    assert entry["requests"] == throttled
    assert entry["failures"] == 0
    assert summary["requests"][SEND]["requests"] == 500
    assert summary["totals"]["failures"] == 0
    # The gateway answered exactly those 429s.
    route = "POST /api/sessions/{}/messages"
    assert agrees(throttled, gateway.http_requests(status="429", route=route))
    assert agrees(500, gateway.http_requests(status="202", route=route))


@pytest.mark.exclusive
def test_stress_scenario(start_gateway, tmp_path):
    # 0.04: 6 x 1.2 s, 1,994 arrivals, fewer than the 2,000 users of the pool: each arrival gets
    # a fresh connection. (At 0.05 a user's kept-alive connection is reused after ~5 s idle, just
    # as the saturated gateway's keep-alive timer closes it: now and then "connection closed".)
    run, gateway = run_scenario(start_gateway, tmp_path, "stress", 0.04)
    summary = check_clean_run(run, "stress", 0.04)
    check_arrivals(summary)
    # 0.04 x 30 s x (1 + 10 + 50 + 100 + 500 + 1000) = 1,993.2: arrivals 0 to 1,993 are due.
    assert summary["arrivals"]["due"] == 1994
    pairs = check_agreement(summary, gateway)
    report("stress", run, pairs, max_in_flight=summary["arrivals"]["max_in_flight"])


@pytest.mark.slow  # ~18 s
def test_endurance_scenario(start_gateway, tmp_path):
    run, gateway = run_scenario(start_gateway, tmp_path, "endurance", ENDURANCE_SCALE)
    summary = check_clean_run(run, "endurance", ENDURANCE_SCALE)
    assert summary["sessions"]["created"] == 20  # half of the 40 users send messages
    assert summary["messages"]["accepted"] > 0
    assert summary["messages"]["delivery_rate_pct"] == 100
    assert webhooks_ok(summary) > 0
    assert summary["peak_users"] == 40
    pairs = check_agreement(summary, gateway)
    report("endurance", run, pairs)


# --- faults --------------------------------------------------------------------------------


@pytest.mark.slow  # ~27 s
def test_injected_error_rate_is_measured(start_gateway, tmp_path):
    # About 10,000 requests (3 x 8.4 s up to 1,000 users): the measured rate's standard deviation
    # is 0.3 points, so the 1-point margin is more than three of them.
    run, gateway = run_scenario(start_gateway, tmp_path, "webhooks", 0.07, "--error-rate", "0.1")
    assert "Traceback" not in run.stderr, run.explain()
    totals = run.summary["totals"]
    assert totals["requests"] >= 2000
    assert abs(totals["error_rate_pct"] - 10) <= 1, totals["error_rate_pct"]
    # Every failure is one of the gateway's injected 500s, and every injected 500 is a failure.
    # Requests in flight when the users are stopped are answered (and counted) by the gateway
    # but never by their killed users: with 1000 users, a dozen or so, more on a busy machine.
    assert agrees(totals["failures"], gateway.faults["error"], 0.02)
    assert agrees(totals["failures"], gateway.http_requests(status="500"), 0.02)
    assert {e["error"] for e in run.summary["errors"]} == {"HTTP 500"}
    # Failed, naming the error-rate criterion, exit code 1.
    assert run.returncode == 1, run.explain()
    assert run.verdict == "failed" and "error rate" in run.reasons(), run.report["verdict"]
    pairs = check_agreement(run.summary, gateway, routes=False)
    pairs["failures"] = (totals["failures"], gateway.faults["error"])
    report("error rate", run, pairs, error_rate_pct=totals["error_rate_pct"])


# --- the embedded gateway and `make stress` -------------------------------------------------


def test_embedded_gateway_is_started_and_stopped(tmp_path):
    run = run_locust("sessions", tmp_path / "run", time_scale=0.02)
    summary = check_clean_run(run, "sessions", 0.02)
    check_arrivals(summary)
    assert summary["embedded_target"] is True
    target = summary["target"]
    assert is_loopback_url(target), target
    assert f"embedded reference gateway at {target}" in run.stderr
    parts = urlsplit(target)
    assert parts.port and refuses(parts.hostname, parts.port), f"{target} still answers"
    print(f"[e2e] embedded: {run.elapsed_s:.1f} s; {target} gone after the run")


@pytest.mark.exclusive
def test_make_stress(tmp_path):
    if not shutil.which("make"):
        pytest.skip("no make on this machine")
    # With PROCESSES=2: Locust's --processes forks a master and two workers on this machine.
    out = tmp_path / "make-stress"
    command = [
        "make", "stress", "TIME_SCALE=0.02", "PROCESSES=2", f"LOCUST_ARGS=--report-dir {out}"
    ]  # fmt: skip
    run = run_command(command, out, timeout=120)
    assert run.returncode == 0, run.explain()
    assert (out / "summary.json").is_file()
    assert run.summary["scenario"] == "stress"
    assert run.summary["embedded_target"] is True
    assert run.summary["time_scale"] == pytest.approx(0.02)
    assert run.summary["workers"] == 2
    assert run.summary["arrivals"]["dropped"] == 0
    assert run.summary["arrivals"]["due"] == run.summary["totals"]["requests"] > 0
    assert run.verdict == "approved", run.report.get("verdict")
    print(f"[e2e] make stress: {run.elapsed_s:.1f} s, {run.summary['totals']['requests']} requests")
