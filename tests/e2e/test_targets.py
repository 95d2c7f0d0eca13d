"""Target profiles end to end: acks by webhook against the reference gateway, held against
its WebSocket measurement of the same messages."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gateway.process import GatewayProcess
from tests.e2e.conftest import run_locust
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


# Five senders at about 4 messages/s each: under the reference gateway's webhook posting
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
    - {duration: 10s, target: 5}
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
    assert accepted >= 100
    assert ws["requests"] == hook["requests"] == accepted  # the same messages
    assert ws["failures"] == hook["failures"] == 0
    assert abs(ws["latency"]["p50_ms"] - hook["latency"]["p50_ms"]) <= 5.0
