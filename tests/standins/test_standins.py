"""The stand-ins over real HTTP on loopback: contracts, pairing, acks by webhook, WebSocket and
socket.io, the record, and the loopback rules. Short delays keep each test to a second or so."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import socketio
import websocket

from gateway.process import PROJECT_ROOT
from tests.standins.process import StandinProcess
from tests.standins.receiver import Hook, WebhookReceiver

Start = Callable[..., StandinProcess]
NUMBER = "5511999999999"
EVOLUTION_KEY = "loadtest-global-key"
FAST = {"pair_delay_s": 0.1, "server_ack_ms": 5, "device_ack_ms": 20}


def wait_for(check: Callable[[], Any], timeout_s: float = 3.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (result := check()) and time.monotonic() < deadline:
        time.sleep(0.02)
    return result


def at_least(count: int) -> Callable[[list[Hook]], bool]:
    return lambda hooks: len(hooks) >= count


# --- WAHA ------------------------------------------------------------------------------------


def test_waha_unpaired_session_refuses_sends_as_the_real_one(start_standin: Start) -> None:
    waha = start_standin("waha", not_ready_delay_s=0.2)
    with httpx.Client(base_url=waha.url, timeout=5) as http:
        other = http.post("/api/sessions", json={"name": "other"})
        assert other.status_code == 422 and "only 'default'" in other.json()["message"]
        created = http.post("/api/sessions", json={"name": "default", "start": True})
        assert created.status_code == 201
        assert set(created.json()) == {"name", "status", "config", "me", "engine"}
        assert http.post("/api/sessions", json={"name": "default"}).status_code == 422
        assert http.get("/api/sessions/default").json()["status"] == "STARTING"
        started = time.monotonic()
        sent = http.post(
            "/api/sendText", json={"session": "default", "chatId": f"{NUMBER}@c.us", "text": "x"}
        )
        assert time.monotonic() - started >= 0.2  # it waits for WORKING first
        assert sent.status_code == 422
        assert sent.json() == {
            "error": "Session status is not as expected. Try again later or restart the session",
            "session": "default",
            "status": "STARTING",
            "expected": ["WORKING"],
        }
        deleted = http.delete("/api/sessions/default")
        assert deleted.status_code == 200 and deleted.content == b""
        assert http.get("/api/sessions/default").status_code == 404
        assert http.get("/ping").json() == {"message": "pong"}
        assert http.get("/metrics").status_code == 404
    record = waha.record()
    assert record["sessions"] == {"created": 1, "deleted": 1, "current": [], "count": 0}
    assert record["messages"]["accepted"] == 0
    assert record["messages"]["refused"] == {NUMBER: 1}


def test_waha_paired_acks_reach_the_webhook_with_the_send_answers_id(
    start_standin: Start, webhook_receiver: WebhookReceiver
) -> None:
    waha = start_standin("waha", paired=True, **FAST)
    hook = {"url": webhook_receiver.url + "/waha", "events": ["message.ack", "session.status"]}
    with httpx.Client(base_url=waha.url, timeout=5) as http:
        http.post("/api/sessions", json={"name": "default", "config": {"webhooks": [hook]}})
        assert wait_for(lambda: http.get("/api/sessions/default").json()["status"] == "WORKING")
        sent = http.post("/api/sendText", json={"chatId": f"{NUMBER}@c.us", "text": "x"})
    assert sent.status_code == 201
    key_id = sent.json()["key"]["id"]
    hooks = webhook_receiver.wait(
        lambda h: len([x for x in h if x.body["event"] == "message.ack"]) >= 2
    )
    statuses = [h.body["payload"]["status"] for h in hooks if h.body["event"] == "session.status"]
    assert statuses[:2] == ["STARTING", "WORKING"]
    acks = [h.body for h in hooks if h.body["event"] == "message.ack"]
    assert sorted(a["payload"]["ack"] for a in acks) == [1, 2]  # webhooks may overtake
    assert {a["payload"]["id"] for a in acks} == {f"true_{NUMBER}@c.us_{key_id}"}
    assert set(acks[0]) == {"event", "session", "me", "payload", "engine", "environment"}
    assert waha.record()["messages"]["recipients"] == {NUMBER: 1}


def test_waha_websocket_is_core_2024_10_unless_all_events_are_asked(start_standin: Start) -> None:
    core = start_standin("waha", paired=True, **FAST)
    ws_url = core.url.replace("http://", "ws://") + "/ws?session=*&events=message.ack"
    refused = websocket.create_connection(ws_url, timeout=3)
    try:
        opcode, frame = refused.recv_data_frame(True)[:2]
        assert opcode == websocket.ABNF.OPCODE_CLOSE
        assert int.from_bytes(frame.data[:2], "big") == 4001
    finally:
        refused.close()

    newer = start_standin("waha", paired=True, ws_all_events=True, **FAST)
    ws_url = newer.url.replace("http://", "ws://") + "/ws?session=*&events=message.ack"
    client = websocket.create_connection(ws_url, timeout=3)
    try:
        with httpx.Client(base_url=newer.url, timeout=5) as http:
            http.post("/api/sessions", json={"name": "default"})
            assert wait_for(lambda: http.get("/api/sessions/default").json()["status"] == "WORKING")
            key_id = http.post("/api/sendText", json={"chatId": NUMBER, "text": "x"}).json()["key"]
        frames = [json.loads(client.recv()) for _ in range(2)]
    finally:
        client.close()
    assert [f["event"] for f in frames] == ["message.ack", "message.ack"]
    assert [f["payload"]["ack"] for f in frames] == [1, 2]
    assert frames[0]["payload"]["id"] == f"true_{NUMBER}@c.us_{key_id['id']}"


def test_waha_api_key_is_checked_only_when_required(start_standin: Start) -> None:
    waha = start_standin("waha", require_api_key=True, api_key="k1")
    with httpx.Client(base_url=waha.url, timeout=5) as http:
        assert http.get("/api/sessions").status_code == 401
        assert http.get("/api/sessions", headers={"X-Api-Key": "no"}).status_code == 401
        assert http.get("/api/sessions", headers={"X-Api-Key": "k1"}).status_code == 200
        assert http.get("/api/sessions?x-api-key=k1").status_code == 200
        assert http.get("/ping").status_code == 200


# --- Evolution API ---------------------------------------------------------------------------


def evolution_client(url: str) -> httpx.Client:
    return httpx.Client(base_url=url, headers={"apikey": EVOLUTION_KEY}, timeout=5)


def create_instance(http: httpx.Client, name: str, **extra: Any) -> httpx.Response:
    body = {"instanceName": name, "integration": "WHATSAPP-BAILEYS", "qrcode": False, **extra}
    return http.post("/instance/create", json=body)


def test_evolution_contract_unpaired(start_standin: Start) -> None:
    evo = start_standin("evolution")
    with evolution_client(evo.url) as http:
        assert httpx.get(evo.url + "/instance/fetchInstances").status_code == 401
        wrong = http.get("/instance/fetchInstances", headers={"apikey": "wrong"})
        assert wrong.status_code == 401
        assert wrong.json() == {
            "status": 401, "error": "Unauthorized", "response": {"message": "Unauthorized"},
        }  # fmt: skip
        created = create_instance(http, "a")
        assert created.status_code == 201
        body = created.json()
        assert set(body["instance"]) >= {"instanceName", "instanceId", "status"}
        assert body["instance"]["status"] == "close" and isinstance(body["hash"], str)
        assert create_instance(http, "a").status_code == 403
        assert http.get("/instance/connectionState/a").json() == {
            "instance": {"instanceName": "a", "state": "close"}
        }
        # The instance's own hash is a key for its own routes.
        own = {"apikey": body["hash"]}
        assert http.get("/instance/connectionState/a", headers=own).status_code == 200
        sent = http.post("/message/sendText/a", json={"number": NUMBER, "text": "x"})
        assert sent.status_code == 500
        assert "onWhatsApp" in sent.json()["response"]["message"]
        connecting = create_instance(http, "b", qrcode=True)
        assert connecting.status_code == 201
        assert http.get("/instance/connectionState/b").json()["instance"]["state"] == "connecting"
        sent = http.post("/message/sendText/b", json={"number": NUMBER, "text": "x"})
        assert (sent.status_code, sent.json()["response"]) == (
            500,
            {"message": "Connection Closed"},
        )
        assert [i["name"] for i in http.get("/instance/fetchInstances").json()] == ["a", "b"]
        assert "evolution_instances_total 2" in http.get("/metrics").text
        assert http.delete("/instance/logout/a").status_code == 400
        assert http.delete("/instance/delete/a").status_code == 200
        assert http.get("/instance/connectionState/a").status_code == 404
    record = evo.record()
    assert record["sessions"]["current"] == ["b"]
    assert record["messages"]["refused"] == {NUMBER: 2}


def test_evolution_paired_acks_by_webhook_by_events(
    start_standin: Start, webhook_receiver: WebhookReceiver
) -> None:
    evo = start_standin("evolution", paired=True, **FAST)
    webhook = {
        "url": webhook_receiver.url + "/hook",
        "byEvents": True,
        "events": ["MESSAGES_UPDATE"],
    }
    with evolution_client(evo.url) as http:
        create_instance(http, "paired", webhook=webhook)
        assert wait_for(
            lambda: (
                http.get("/instance/connectionState/paired").json()["instance"]["state"] == "open"
            )
        )
        sent = http.post("/message/sendText/paired", json={"number": NUMBER, "text": "x"})
    assert sent.status_code == 201
    assert sent.json()["status"] == "PENDING"
    key = sent.json()["key"]
    assert key["remoteJid"] == f"{NUMBER}@s.whatsapp.net" and key["fromMe"] is True
    hooks = webhook_receiver.wait(at_least(2))
    assert {h.path for h in hooks} == {"/hook/messages-update"}  # only the events asked for
    statuses = sorted(h.body["data"]["status"] for h in hooks)  # webhooks may overtake
    assert statuses == ["DELIVERY_ACK", "SERVER_ACK"]
    assert {h.body["data"]["keyId"] for h in hooks} == {key["id"]}
    assert set(hooks[0].body) == {
        "event", "instance", "data", "destination", "date_time", "sender", "server_url", "apikey",
    }  # fmt: skip
    assert hooks[0].body["event"] == "messages.update"


def test_evolution_fail_ratio_acks_error(
    start_standin: Start, webhook_receiver: WebhookReceiver
) -> None:
    evo = start_standin("evolution", paired=True, fail_ratio=1.0, **FAST)
    with evolution_client(evo.url) as http:
        create_instance(http, "f", webhook={"url": webhook_receiver.url, "events": []})  # [] = all
        wait_for(
            lambda: http.get("/instance/connectionState/f").json()["instance"]["state"] == "open"
        )
        http.post("/message/sendText/f", json={"number": NUMBER, "text": "x"})
    hooks = webhook_receiver.wait(lambda h: any(x.body["event"] == "messages.update" for x in h))
    updates = [h.body["data"]["status"] for h in hooks if h.body["event"] == "messages.update"]
    assert updates == ["ERROR"]


def test_evolution_socketio_namespace_needs_the_key(start_standin: Start) -> None:
    evo = start_standin("evolution", paired=True, **FAST)
    with evolution_client(evo.url) as http:
        # Only a namespace that has had an event exists: INSTANCE_CREATE makes it at once.
        create_instance(http, "t", websocket={"enabled": True, "events": ["MESSAGES_UPDATE"]})
        early = socketio.Client(reconnection=False)
        with pytest.raises(socketio.exceptions.ConnectionError):
            early.connect(f"{evo.url}?apikey={EVOLUTION_KEY}", namespaces=["/t"],
                          transports=["websocket"], wait_timeout=3)  # fmt: skip
        early.disconnect()
        events = ["MESSAGES_UPDATE", "INSTANCE_CREATE"]
        create_instance(http, "s", websocket={"enabled": True, "events": events})
        keyless = socketio.Client(reconnection=False)
        with pytest.raises(socketio.exceptions.ConnectionError):
            keyless.connect(evo.url, namespaces=["/s"], transports=["websocket"], wait_timeout=3)
        keyless.disconnect()

        received: list[dict[str, Any]] = []
        got_two = threading.Event()
        client = socketio.Client(reconnection=False)

        @client.on("messages.update", namespace="/s")
        def on_update(data: dict[str, Any]) -> None:
            received.append(data)
            if len(received) >= 2:
                got_two.set()

        client.connect(
            f"{evo.url}?apikey={EVOLUTION_KEY}", namespaces=["/s"], transports=["websocket"],
            wait_timeout=3,
        )  # fmt: skip
        try:
            wait_for(
                lambda: (
                    http.get("/instance/connectionState/s").json()["instance"]["state"] == "open"
                )
            )
            key_id = http.post("/message/sendText/s", json={"number": NUMBER, "text": "x"}).json()
            assert got_two.wait(3)
        finally:
            client.disconnect()
    assert [m["data"]["status"] for m in received] == ["SERVER_ACK", "DELIVERY_ACK"]
    assert received[0]["data"]["keyId"] == key_id["key"]["id"]
    assert received[0]["event"] == "messages.update" and received[0]["instance"] == "s"


def test_webhooks_off_loopback_are_refused_not_posted(start_standin: Start) -> None:
    evo = start_standin("evolution", paired=True, **FAST)
    remote = "http://192.0.2.10/hook"  # TEST-NET-1: never routed, and never contacted
    with evolution_client(evo.url) as http:
        create_instance(http, "r", webhook={"url": remote, "events": []})
        wait_for(
            lambda: http.get("/instance/connectionState/r").json()["instance"]["state"] == "open"
        )
        http.post("/message/sendText/r", json={"number": NUMBER, "text": "x"})
    record = wait_for(lambda: (r := evo.record())["webhooks"].get("refused", 0) >= 3 and r)
    assert record["webhooks"]["refused_urls"] == [remote]
    assert record["webhooks"].get("posted", 0) == 0


# --- wppconnect-server -----------------------------------------------------------------------


def token_for(http: httpx.Client, session: str) -> str:
    generated = http.post(f"/api/{session}/THISISMYSECURETOKEN/generate-token")
    assert generated.status_code == 201
    body = generated.json()
    assert body["full"] == f"{session}:{body['token']}"
    return body["token"]


def test_wppconnect_token_is_bound_to_its_session(start_standin: Start) -> None:
    wpp = start_standin("wppconnect")
    with httpx.Client(base_url=wpp.url, timeout=5) as http:
        assert http.post("/api/s1/WRONG/generate-token").status_code == 400
        token = token_for(http, "s1")
        bearer = {"Authorization": f"Bearer {token}"}
        assert http.get("/api/s1/status-session").status_code == 401  # no token
        assert http.get("/api/s1/status-session", headers=bearer).json() == {
            "status": "CLOSED", "qrcode": None,
        }  # fmt: skip
        assert http.get("/api/s2/status-session", headers=bearer).status_code == 401
        assert http.get(f"/api/s1:{token}/status-session").status_code == 200
        started = http.post("/api/s1/start-session", headers=bearer, json={})
        assert (started.status_code, started.json()["status"]) == (200, "CLOSED")
        assert wait_for(
            lambda: http.get("/api/s1/status-session", headers=bearer).json()["status"] == "QRCODE"
        )
        sent = http.post(
            "/api/s1/send-message", headers=bearer,
            json={"phone": "5521999999999", "isGroup": False, "message": "x"},
        )  # fmt: skip
        assert sent.status_code == 404
        assert sent.json() == {
            "response": None, "status": "Disconnected",
            "message": "A sessão do WhatsApp não está ativa.",
        }  # fmt: skip
        closed = http.post("/api/s1/close-session", headers=bearer)
        assert closed.json() == {"status": True, "message": "Session successfully closed"}
        assert http.get("/healthz").json()["message"] == "OK"
        assert "nodejs_heap_size_used_bytes" in http.get("/metrics").text
    assert wpp.record()["sessions"] == {"created": 1, "deleted": 1, "current": [], "count": 0}


def test_wppconnect_paired_acks_by_webhook_and_socketio(
    start_standin: Start, webhook_receiver: WebhookReceiver
) -> None:
    wpp = start_standin("wppconnect", paired=True, **FAST)
    acks: list[dict[str, Any]] = []
    client = socketio.Client(reconnection=False)
    client.on("onack", acks.append)
    client.connect(wpp.url, transports=["websocket"], wait_timeout=3)
    try:
        with httpx.Client(base_url=wpp.url, timeout=5) as http:
            bearer = {"Authorization": f"Bearer {token_for(http, 'p')}"}
            http.post(
                "/api/p/start-session", headers=bearer, json={"webhook": webhook_receiver.url}
            )
            assert wait_for(
                lambda: (
                    http.get("/api/p/status-session", headers=bearer).json()["status"]
                    == "CONNECTED"
                )
            )
            sent = http.post(
                "/api/p/send-message", headers=bearer,
                json={"phone": "5521999999999", "isGroup": False, "message": "x"},
            )  # fmt: skip
        hooks = webhook_receiver.wait(at_least(2))
        assert wait_for(lambda: len(acks) >= 2)
    finally:
        client.disconnect()
    assert sent.status_code == 201 and sent.json()["status"] == "success"
    message_id = sent.json()["response"][0]["id"]
    assert message_id.startswith("true_5521999999999@c.us_")
    assert sorted(h.body["ack"] for h in hooks) == [1, 2]  # webhooks may overtake each other
    assert {(h.body["event"], h.body["session"]) for h in hooks} == {("onack", "p")}
    assert {h.body["id"]["_serialized"] for h in hooks} == {message_id}
    assert [a["ack"] for a in acks] == [1, 2] and acks[0]["id"]["_serialized"] == message_id


# --- all of them ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["waha", "evolution", "wppconnect"])
def test_a_standin_refuses_to_listen_off_loopback(kind: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", f"tests.standins.{kind}", "--host", "0.0.0.0"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 2
    assert "loopback" in result.stderr


def test_a_stopped_standin_leaves_no_process(start_standin: Start) -> None:
    standin = start_standin("wppconnect")
    assert standin.alive()
    standin.stop()
    assert not standin.alive()
    assert not os.path.exists(f"/proc/{standin.pid}")  # reaped, not a zombie
