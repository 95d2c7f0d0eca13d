"""Target profiles end to end: acks by webhook against the reference gateway, held against
its WebSocket measurement of the same messages."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import yaml

from gateway.process import GatewayProcess
from tests.e2e.conftest import run_locust
from tests.standins.process import start_standin
from users.profile import CONF_DIR

WS_DELIVERED = "WS message delivered"
HOOK_DELIVERED = "WS message delivered (webhook)"


def plan_with_webhook_acks(folder: Path) -> Path:
    """The plan's profile, its sessions created with the suite's webhook URL (the reference
    gateway POSTs every event of a session to its webhookUrl), acks read from both."""
    data = yaml.safe_load((CONF_DIR / "targets" / "plan.yaml").read_text(encoding="utf-8"))
    data["name"] = "plan-webhook-acks"
    data["requests"]["create_session"]["json"]["webhookUrl"] = "{webhook_url}"
    data["acks"]["channels"].append({"kind": "webhook"})
    path = folder / "plan-webhook-acks.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


# Five senders at about 4 messages/s each for 5 s: under the reference gateway's webhook posting
# capacity (8 workers of httpx, about 600 POSTs/s on an idle machine), which a burst exceeds:
# the plan's burst reads its webhooks hundreds of ms behind its WebSocket, a true finding
# about that gateway, not a difference of the two channels.
STEADY_SENDS = """
name: acks-by-webhook
criteria: criteria.yaml
load:
  model: stages
  stages:
    - {duration: 1s, target: 5}
    - {duration: 5s, target: 5}
think_time: {min: 0.25, max: 0.25}
users:
  MessageSender:
    options: {track_delivery: true, delivery_timeout_s: 10}
"""


@pytest.mark.slow  # ~20 s
def test_webhook_acks_agree_with_the_websocket_on_the_same_messages(tmp_path):
    profile = plan_with_webhook_acks(tmp_path)
    scenario = tmp_path / "acks.yaml"
    scenario.write_text(STEADY_SENDS, encoding="utf-8")
    with GatewayProcess() as gateway:
        run = run_locust(
            str(scenario), tmp_path / "run", "--target-profile", str(profile), host=gateway.url
        )
    assert run.returncode == 0, run.explain()
    requests = run.summary["requests"]
    ws, hook = requests[WS_DELIVERED], requests[HOOK_DELIVERED]
    print(
        f"delivered over WebSocket {ws['requests'] - ws['failures']} of {ws['requests']}, p50 "
        f"{ws['latency']['p50_ms']} ms; by webhook {hook['requests'] - hook['failures']} of "
        f"{hook['requests']}, p50 {hook['latency']['p50_ms']} ms"
    )
    accepted = run.summary["messages"]["accepted"]
    assert accepted >= 60
    assert ws["requests"] == hook["requests"] == accepted  # the same messages
    assert ws["failures"] == hook["failures"] == 0
    assert abs(ws["latency"]["p50_ms"] - hook["latency"]["p50_ms"]) <= 5.0


# --- the shipped profiles against stand-ins of the real gateways (tests/standins) ------------

RECIPIENTS = ("5511999990001", "5511999990002")
SECRETS = ("stand-in-global-key", "stand-in-secret-key")


@pytest.fixture
def standin():
    started = []

    def start(kind: str, **options):
        started.append(start_standin(kind, **options))
        return started[-1]

    yield start
    for process in started:
        process.stop()


def messages_against(standin_process, tmp_path: Path, *extra: str, scenario: str = "messages"):
    return run_locust(
        scenario, tmp_path / "run", "--recipients", ",".join(RECIPIENTS), *extra,
        host=standin_process.url, timeout=120,
    )  # fmt: skip


def check_nothing_secret_was_written(run, *secrets: str) -> None:
    """No key, token or secret in the run's output or any file it wrote."""
    texts = {"stdout": run.stdout, "stderr": run.stderr}
    for path in run.report_dir.rglob("*"):
        if path.is_file():
            texts[path.name] = path.read_text(encoding="utf-8", errors="replace")
    for secret in secrets:
        leaked = [name for name, text in texts.items() if secret in text]
        assert not leaked, f"{secret[:4]}... written to {leaked}"


def start_default_session(waha, key: str) -> None:
    """WAHA core's one session, as a user starts it before pairing it by hand."""
    body = {"name": "default", "start": True}
    answer = httpx.post(f"{waha.url}/api/sessions", json=body, headers={"X-Api-Key": key})
    assert answer.status_code == 201, answer.text


def check_only_recipients(record: dict) -> None:
    sent = set(record["messages"]["recipients"]) | set(record["messages"]["refused"])
    assert sent <= set(RECIPIENTS), sent


@pytest.mark.slow  # ~15 s
def test_evolution_sessions_compressed_creates_counts_and_deletes(standin, tmp_path):
    evolution = standin("evolution", api_key=SECRETS[0])
    run = run_locust(
        "sessions", tmp_path / "run", "--target-profile", "evolution", "--api-key", SECRETS[0],
        time_scale=0.02, host=evolution.url, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.explain()
    summary, record = run.summary, evolution.record()
    created = summary["sessions"]["created"]
    print(f"evolution stand-in: created {created}, gateway {record['sessions']['created']}, "
          f"deleted {summary['sessions']['deleted']}")  # fmt: skip
    assert created >= 150 and summary["sessions"]["attempted"] == created
    assert record["sessions"]["created"] == created
    assert summary["sessions"]["deleted"] == record["sessions"]["deleted"] == created
    assert record["sessions"]["count"] == 0  # the gateway left as found
    assert summary["totals"]["failures"] == 0
    # Live instances from the gateway's own evolution_instances_total, not the suite's count.
    estimate = run.report["analysis"]["memory_per_session"]
    assert estimate["estimated"], estimate
    assert estimate["sessions_source"] == "sessions_active", estimate
    check_nothing_secret_was_written(run, SECRETS[0])


@pytest.mark.slow  # ~15 s
def test_wppconnect_messages_with_a_token_per_session_and_webhook_acks(standin, tmp_path):
    wpp = standin("wppconnect", secret_key=SECRETS[1], paired=True)
    run = messages_against(
        wpp, tmp_path, "--target-profile", "wppconnect", "--profile-var",
        f"secret_key={SECRETS[1]}",
    )  # fmt: skip
    assert run.returncode == 0, run.explain()
    summary, record = run.summary, wpp.record()
    messages = summary["messages"]
    assert messages["accepted"] == record["messages"]["accepted"] == 500
    assert messages["delivered"] == 500, messages
    check_only_recipients(record)
    assert summary["sessions"]["created"] == summary["sessions"]["deleted"] == 10
    # wppconnect exports no session count: memory per session uses the suite's own.
    estimate = run.report["analysis"]["memory_per_session"]
    assert estimate.get("sessions_source", "suite_sessions_open") == "suite_sessions_open"
    assert "suite_sessions_open" in (run.report_dir / "samples.csv").read_text(encoding="utf-8")
    token_request = "POST /api/{session_name}/{secret_key}/generate-token"
    assert summary["requests"][token_request]["requests"] == 10
    check_nothing_secret_was_written(run, SECRETS[1], "Bearer ")


def waha_with_websocket_acks(folder: Path) -> Path:
    """The WAHA profile plus the plain WebSocket of WAHA versions whose /ws carries acks."""
    data = yaml.safe_load((CONF_DIR / "targets" / "waha.yaml").read_text(encoding="utf-8"))
    websocket = {"kind": "websocket", "url": "/ws?session=*&events=message.ack"}
    data["acks"]["channels"].insert(0, websocket)
    path = folder / "waha-ws.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


@pytest.mark.slow  # ~20 s
def test_waha_messages_on_a_named_session(standin, tmp_path):
    """Sent, never to a number outside --recipients, the session neither created nor deleted;
    delivery untracked with the shipped profile (a named session keeps its webhook config),
    tracked over the WebSocket of a WAHA whose /ws carries acks."""
    waha = standin(
        "waha", paired=True, require_api_key=True, api_key=SECRETS[0], ws_all_events=True
    )
    start_default_session(waha, SECRETS[0])
    named = ("--api-key", SECRETS[0], "--sessions", "default")
    run = messages_against(waha, tmp_path / "shipped", "--target-profile", "waha", *named)
    assert run.returncode == 0, run.explain()
    summary, record = run.summary, waha.record(clear=True)
    assert summary["messages"]["accepted"] == record["messages"]["accepted"] == 500
    assert summary["messages"]["delivery_rate_pct"] is None
    assert summary["messages"]["untracked_sessions"] == 10
    check_only_recipients(record)
    assert record["sessions"]["created"] == 1 and record["sessions"]["deleted"] == 0
    assert not summary["sessions"]["created"] and not summary["sessions"]["deleted"]
    check_nothing_secret_was_written(run, SECRETS[0])

    profile = str(waha_with_websocket_acks(tmp_path))
    run = messages_against(waha, tmp_path / "ws", "--target-profile", profile, *named)
    assert run.returncode == 0, run.explain()
    summary, record = run.summary, waha.record()
    assert summary["messages"]["delivered"] == record["messages"]["accepted"] == 500
    check_only_recipients(record)


@pytest.mark.slow  # ~10 s
def test_a_named_session_that_is_not_ready_ends_the_run_naming_its_state(standin, tmp_path):
    waha = standin("waha")  # unpaired: its session stays STARTING
    start_default_session(waha, "k")
    scenario = tmp_path / "messages.yaml"
    text = (CONF_DIR / "scenarios" / "messages.yaml").read_text(encoding="utf-8")
    scenario.write_text(text.replace("delivery_timeout_s: 30", "ready_timeout_s: 3"), "utf-8")
    run = messages_against(
        waha, tmp_path, "--target-profile", "waha", "--api-key", "k", "--sessions", "default",
        scenario=str(scenario),
    )  # fmt: skip
    assert run.returncode == 1, run.explain()  # the verdict: Failed, with the reason
    assert "Traceback" not in run.stderr
    errors = [line for line in run.stderr.splitlines() if line.startswith("error: ")]
    assert errors and "'default' is STARTING, not WORKING" in errors[0], run.stderr
    assert "session_not_ready" in run.report["verdict"]["failures"], run.report["verdict"]
    record = waha.record()
    assert record["messages"]["accepted"] == 0 and not record["messages"]["refused"]
    assert run.summary["stopped_because"]["state"] == "STARTING"


def evolution_with_socketio_acks(folder: Path) -> Path:
    """The Evolution profile with its socket.io events (namespace per instance) for acks."""
    data = yaml.safe_load((CONF_DIR / "targets" / "evolution.yaml").read_text(encoding="utf-8"))
    data["acks"]["channels"] = [
        {"kind": "socketio", "namespace": "/{session_id}", "query": {"apikey": "{api_key}"}}
    ]
    # No webhook channel: the create request asks for socket.io events instead (the
    # instance's namespace exists from its first event: INSTANCE_CREATE, at once).
    create = data["requests"]["create_session"]["json"]
    del create["webhook"]
    create["websocket"] = {"enabled": True, "events": ["INSTANCE_CREATE", "MESSAGES_UPDATE"]}
    del data["requests"]["set_webhook"]
    path = folder / "evolution-socketio.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


@pytest.mark.slow  # ~15 s
def test_evolution_messages_with_socketio_acks(standin, tmp_path):
    evolution = standin("evolution", api_key=SECRETS[0], paired=True)
    profile = str(evolution_with_socketio_acks(tmp_path))
    run = messages_against(
        evolution, tmp_path, "--target-profile", profile, "--api-key", SECRETS[0]
    )
    assert run.returncode == 0, run.explain()
    summary, record = run.summary, evolution.record()
    assert summary["messages"]["accepted"] == record["messages"]["accepted"] == 500
    assert summary["messages"]["delivered"] == 500, summary["messages"]
    assert summary["websocket"]["connected"] == 10
    assert "WS socket.io connect" in summary["requests"]
    check_only_recipients(record)
    assert summary["sessions"]["deleted"] == 10 and record["sessions"]["count"] == 0
    check_nothing_secret_was_written(run, SECRETS[0])


@pytest.mark.slow  # ~10 s
def test_a_failed_state_ends_the_wait_at_once_and_is_named(tmp_path):
    """A profile whose failed states include the reference gateway's first one: each sender
    stops waiting at its first status answer, names the state, sends nothing."""
    data = yaml.safe_load((CONF_DIR / "targets" / "plan.yaml").read_text(encoding="utf-8"))
    data["requests"]["session_status"].update(pending=[], failed=["initializing"])
    profile = tmp_path / "plan-failing.yaml"
    profile.write_text(yaml.safe_dump(data), encoding="utf-8")
    with GatewayProcess() as gateway:
        run = run_locust(
            "messages", tmp_path / "run", "--target-profile", str(profile), host=gateway.url
        )
    summary = run.summary
    assert summary["requests"]["GET /api/sessions/{session_id}"]["requests"] == 10  # one each
    ready = summary["requests"]["WS session ready"]
    assert ready["failures"] == 10
    errors = [e["error"] for e in summary["errors"] if e["name"] == "session ready"]
    assert errors and "failed: initializing" in errors[0], errors
    assert not summary["messages"]["accepted"]
    assert summary["sessions"]["deleted"] == 10  # created, so cleaned up
