"""The reference gateway's API, end to end: a real `python -m gateway` process on loopback.

Every endpoint and error code, the metrics, the WebSocket ack lifecycle, idle expiry, webhookUrl
delivery, API keys and the OpenAPI document. Gateways with non-default flags are started only
where a test needs them, with short delays so that every test ends in a few seconds at most.
"""

from __future__ import annotations

import contextlib
import json
import struct
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

import httpx
import pytest
import websocket
from prometheus_client.parser import text_string_to_metric_families
from starlette.routing import Route

from gateway.app import create_app
from gateway.process import GatewayProcess

RECIPIENT = "5511912345678"
FAST_DELIVERY = ("--delivery-latency-ms", "10", "--device-latency-ms", "10")
MAX_TIMESTAMP_MS = 2**53 - 1
RETRYABLE = {409, 429, 503}

T = TypeVar("T")


# --- helpers -----------------------------------------------------------------------------------


@contextlib.contextmanager
def http_client(gw: GatewayProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gw.url, timeout=10) as http:
        yield http


def wait_until(check: Callable[[], T], timeout_s: float = 5.0, what: str = "condition") -> T:
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout_s} s")
        time.sleep(0.02)


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The response is `status`, and its body is exactly the JSON error shape with `code`."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    expected_keys = {"error", "detail"} | ({"retryAfterMs"} if status in RETRYABLE else set())
    assert set(body) == expected_keys, body
    assert body["error"] == code
    assert isinstance(body["detail"], str) and body["detail"]
    if status in RETRYABLE:
        retry_after = int(response.headers["retry-after"])
        assert retry_after >= 1
        assert isinstance(body["retryAfterMs"], int) and body["retryAfterMs"] >= 0
        assert retry_after * 1000 >= body["retryAfterMs"]
    else:
        assert "retry-after" not in response.headers
    return body


def create_session(http: httpx.Client, **fields: Any) -> str:
    response = http.post("/api/sessions", json={"apiKey": "test-key", **fields})
    assert response.status_code == 201, response.text
    return response.json()["sessionId"]


def wait_ready(http: httpx.Client, session_id: str, **headers: str) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        info = http.get(f"/api/sessions/{session_id}", headers=headers).json()
        return info if info["status"] == "ready" else None

    return wait_until(ready, 3.0, "session ready")


def ready_session(http: httpx.Client, **fields: Any) -> str:
    session_id = create_session(http, **fields)
    wait_ready(http, session_id)
    return session_id


def send(
    http: httpx.Client, session_id: str, to: str = RECIPIENT, body: str = "hello", **headers: str
) -> httpx.Response:
    return http.post(
        f"/api/sessions/{session_id}/messages", json={"to": to, "body": body}, headers=headers
    )


def inbound(to: str, message_id: str | None = None, **overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": "message_create",
        "timestamp": int(time.time() * 1000),
        "message": {
            "id": f"in-{uuid.uuid4().hex}" if message_id is None else message_id,
            "from": "5511987654321@c.us",
            "to": to,
            "text": "hi there",
        },
    }
    event.update(overrides)
    return event


def scrape(http: httpx.Client) -> dict[str, Any]:
    """Metric families of /metrics by name (counters without their `_total`)."""
    response = http.get("/metrics")
    assert response.status_code == 200
    return {f.name: f for f in text_string_to_metric_families(response.text)}


def metric(http_or_families: httpx.Client | dict[str, Any], sample: str, **labels: str) -> float:
    """Sum of the samples named `sample` whose labels include `labels` (0 if there is none)."""
    families = (
        scrape(http_or_families) if isinstance(http_or_families, httpx.Client) else http_or_families
    )
    return sum(
        s.value
        for family in families.values()
        for s in family.samples
        if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items())
    )


def ws_connect(gw: GatewayProcess, session_id: str, **headers: str) -> websocket.WebSocket:
    url = gw.url.replace("http://", "ws://", 1) + f"/api/sessions/{session_id}/events"
    return websocket.create_connection(
        url, timeout=5, header=[f"{k}: {v}" for k, v in headers.items()]
    )


def next_event(ws: websocket.WebSocket) -> dict[str, Any]:
    return json.loads(ws.recv())


def close_frame(ws: websocket.WebSocket) -> tuple[int, bytes]:
    """Skip data frames up to the server's close frame; return its code and reason."""
    try:
        while True:
            opcode, data = ws.recv_data(control_frame=True)
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                return struct.unpack("!H", data[:2])[0], data[2:]
    finally:
        ws.close()


def acks_until_final(ws: websocket.WebSocket, message_ids: set[str]) -> dict[str, list[int]]:
    """message_ack values by message id, read until each of `message_ids` has a final ack."""
    acks: dict[str, list[int]] = {}
    pending = set(message_ids)
    while pending:
        event = next_event(ws)
        if event["event"] != "message_ack":
            continue
        acks.setdefault(event["messageId"], []).append(event["ack"])
        if event["ack"] in (2, -1):
            pending.discard(event["messageId"])
    return acks


# --- health, metrics, routing ------------------------------------------------------------------


def test_health(client: httpx.Client) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert isinstance(body["sessions"], int) and body["sessions"] >= 0
    assert body["queueDepth"] >= 0
    assert body["uptimeS"] > 0


def test_metrics_exposition(gateway: GatewayProcess, client: httpx.Client) -> None:
    session_id = ready_session(client)
    assert send(client, session_id).status_code == 202
    assert client.post("/api/webhook", json=inbound("5511900000000")).status_code == 200
    ws = ws_connect(gateway, session_id)
    try:
        wait_until(lambda: client.get(f"/api/sessions/{session_id}").json()["subscribers"] == 1)
        response = client.get("/metrics")
        assert response.headers["content-type"].startswith("text/plain")
        families = {f.name: f for f in text_string_to_metric_families(response.text)}
    finally:
        ws.close()

    types = {
        "gateway_sessions_active": "gauge",
        "gateway_sessions_created": "counter",
        "gateway_queue_depth": "gauge",
        "gateway_websocket_connections": "gauge",
        "gateway_messages": "counter",
        "gateway_webhook_events": "counter",
        "gateway_http_request_duration_seconds": "histogram",
        "process_resident_memory_bytes": "gauge",
        "process_cpu_seconds": "counter",
    }
    for name, kind in types.items():
        assert families[name].type == kind, name

    health = client.get("/health").json()
    assert metric(families, "gateway_sessions_active") >= 1
    assert metric(families, "gateway_sessions_created_total") >= 1
    assert metric(families, "gateway_queue_depth") >= 0
    assert metric(families, "gateway_websocket_connections") >= 1
    assert metric(families, "gateway_sessions_limit") == 5000  # the default cap
    statuses = {s.labels["status"] for s in families["gateway_messages"].samples}
    assert statuses >= {"accepted", "sent", "delivered", "failed", "rejected"}
    assert metric(families, "gateway_messages_total", status="accepted") >= 1
    assert metric(families, "gateway_webhook_events_total", result="processed") >= 1
    route = "/api/sessions/{id}/messages"
    assert metric(families, "gateway_http_request_duration_seconds_count", route=route) >= 1
    assert metric(families, "gateway_http_request_duration_seconds_bucket", route=route, le="+Inf")
    assert metric(families, "gateway_http_request_duration_seconds_sum", route=route) > 0
    assert metric(families, "process_resident_memory_bytes") > 10 * 1024 * 1024
    assert metric(families, "process_cpu_seconds_total") > 0
    assert health["sessions"] == metric(client, "gateway_sessions_active")


def test_unknown_path_is_404_json(client: httpx.Client) -> None:
    assert_error(client.get("/nope"), 404, "not_found")
    assert_error(client.post("/api/nope", json={}), 404, "not_found")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/health"),
        ("GET", "/api/sessions"),
        ("PUT", "/api/sessions/x"),
        ("GET", "/api/webhook"),
    ],
)
def test_wrong_method_is_405_json(client: httpx.Client, method: str, path: str) -> None:
    assert_error(client.request(method, path), 405, "method_not_allowed")


def test_openapi_lists_exactly_the_served_routes(client: httpx.Client) -> None:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    documented = {
        (path, method.upper())
        for path, operations in response.json()["paths"].items()
        for method in operations
    }
    served = {
        (route.path, method)
        for route in create_app().routes
        if isinstance(route, Route) and route.path != "/openapi.json"
        for method in (route.methods or set()) - {"HEAD"}
    }
    assert documented == served
    assert ("/api/sessions/{id}/messages", "POST") in served  # the comparison saw real routes


# --- sessions ----------------------------------------------------------------------------------


def test_create_session_then_ready(client: httpx.Client) -> None:
    response = client.post("/api/sessions", json={"apiKey": "test-key"})
    assert response.status_code == 201
    created = response.json()
    assert created["status"] == "initializing"
    session_id = created["sessionId"]
    assert client.get(f"/api/sessions/{session_id}").json()["status"] == "initializing"
    info = wait_ready(client, session_id)
    assert info["sessionId"] == session_id
    assert info["phone"].isdigit()
    assert info["messagesSent"] == 0
    assert info["subscribers"] == 0
    assert abs(info["createdAt"] - time.time() * 1000) < 60_000


@pytest.mark.parametrize(
    "content",
    [
        b"not json",
        b"[]",
        b"{}",
        b'{"webhookUrl": "http://127.0.0.1:9/x"}',
        b'{"apiKey": ""}',
        b'{"apiKey": 5}',
    ],
)
def test_create_session_invalid_body(client: httpx.Client, content: bytes) -> None:
    response = client.post(
        "/api/sessions", content=content, headers={"Content-Type": "application/json"}
    )
    assert_error(response, 400, "invalid_request")


def test_create_session_invalid_webhook_url(client: httpx.Client) -> None:
    response = client.post("/api/sessions", json={"apiKey": "k", "webhookUrl": "ftp://127.0.0.1/x"})
    assert_error(response, 400, "invalid_webhook_url")


def test_get_and_delete_session(client: httpx.Client) -> None:
    session_id = create_session(client)
    assert client.get(f"/api/sessions/{session_id}").status_code == 200
    response = client.delete(f"/api/sessions/{session_id}")
    assert response.status_code == 200
    assert response.json() == {"sessionId": session_id, "status": "closed"}
    assert_error(client.get(f"/api/sessions/{session_id}"), 404, "session_not_found")
    assert_error(client.delete(f"/api/sessions/{session_id}"), 404, "session_not_found")
    assert_error(send(client, session_id), 404, "session_not_found")
    assert_error(client.get("/api/sessions/no-such-session"), 404, "session_not_found")
    assert_error(client.delete("/api/sessions/no-such-session"), 404, "session_not_found")


def test_session_cap_answers_503_with_retry_after(start_gateway) -> None:
    gw = start_gateway("--max-sessions", "3", "--pairing-delay-s", "0.1")
    with http_client(gw) as http:
        session_ids = [create_session(http) for _ in range(3)]
        body = assert_error(
            http.post("/api/sessions", json={"apiKey": "k"}), 503, "session_cap_reached"
        )
        # The first slot frees when the oldest unused session expires (default 30 s).
        assert 20_000 < body["retryAfterMs"] <= 30_000
        assert metric(http, "gateway_sessions_rejected_total", reason="session_cap_reached") == 1
        assert metric(http, "gateway_sessions_active") == 3
        assert http.delete(f"/api/sessions/{session_ids[0]}").status_code == 200
        create_session(http)  # a freed slot is usable again


# --- messages ----------------------------------------------------------------------------------


def test_send_message_accepted(client: httpx.Client) -> None:
    session_id = ready_session(client)
    response = send(client, session_id)
    assert response.status_code == 202
    body = response.json()
    assert set(body) == {"messageId", "status"}
    assert body["status"] == "queued"
    assert body["messageId"]
    assert client.get(f"/api/sessions/{session_id}").json()["messagesSent"] == 1


def test_send_message_unknown_session(client: httpx.Client) -> None:
    assert_error(send(client, "no-such-session"), 404, "session_not_found")


def test_send_message_before_ready_is_409(start_gateway) -> None:
    gw = start_gateway("--pairing-delay-s", "30")
    with http_client(gw) as http:
        session_id = create_session(http)
        body = assert_error(send(http, session_id), 409, "session_not_ready")
        assert 25_000 < body["retryAfterMs"] <= 30_000
        assert http.get(f"/api/sessions/{session_id}").json()["status"] == "initializing"
        assert metric(http, "gateway_messages_total", status="accepted") == 0


@pytest.mark.parametrize(
    "to",
    [
        "123",
        "123456789",
        "55119abcdefgh",
        "1234567890123456",
        "5511912345678@g.us",
        "+5511912345678",
    ],
)
def test_invalid_recipient(client: httpx.Client, to: str) -> None:
    session_id = ready_session(client)
    assert_error(send(client, session_id, to=to), 400, "invalid_recipient")


@pytest.mark.parametrize("to", ["1234567890", "123456789012345", "5511912345678@c.us"])
def test_valid_recipient(client: httpx.Client, to: str) -> None:
    session_id = ready_session(client)
    assert send(client, session_id, to=to).status_code == 202


def test_message_body_checks(client: httpx.Client) -> None:
    session_id = ready_session(client)
    assert_error(send(client, session_id, body=""), 400, "empty_body")
    path = f"/api/sessions/{session_id}/messages"
    assert_error(client.post(path, json={"to": RECIPIENT}), 400, "invalid_request")
    assert_error(client.post(path, content=b"{not json"), 400, "invalid_request")
    # 20,000 emoji are 20,000 characters but 80,000 bytes in UTF-8: over 64 KiB.
    assert_error(send(client, session_id, body="\U0001f600" * 20_000), 413, "body_too_large")
    # The limit is in bytes: exactly 64 KiB passes, one byte more does not.
    assert send(client, session_id, body="\U0001f600" * 16_384).status_code == 202
    assert_error(send(client, session_id, body="\U0001f600" * 16_384 + "a"), 413, "body_too_large")
    assert send(client, session_id, body="a" * 65_536).status_code == 202


def test_request_body_over_one_mib_is_413(client: httpx.Client) -> None:
    big = json.dumps(inbound("5511900000000", text="x")).encode() + b" " * (1024 * 1024)
    response = client.post("/api/webhook", content=big)
    assert_error(response, 413, "payload_too_large")

    def chunks() -> Iterator[bytes]:  # no Content-Length: the gateway must count the bytes
        yield b'{"type": "message_create", "padding": "'
        for _ in range(20):
            yield b"x" * 65_536
        yield b'"}'

    assert_error(client.post("/api/webhook", content=chunks()), 413, "payload_too_large")


def test_rate_limit_is_429_with_retry_after(client: httpx.Client) -> None:
    session_id = ready_session(client)
    rejected_before = metric(client, "gateway_messages_total", status="rejected")
    limited_before = metric(
        client, "gateway_messages_rejected_by_reason_total", reason="rate_limited"
    )
    started = time.monotonic()
    responses = [send(client, session_id) for _ in range(10)]
    while responses[-1].status_code != 429 and len(responses) < 40:
        responses.append(send(client, session_id))
    elapsed = time.monotonic() - started
    statuses = [r.status_code for r in responses]
    assert statuses[:10] == [202] * 10  # a burst of one second's worth
    # The 11th immediate send is refused; a slow machine only refills the bucket at 10/s.
    if elapsed < 0.09:
        assert len(statuses) == 11
    assert statuses.count(202) <= 10 + elapsed * 10 + 1
    body = assert_error(responses[-1], 429, "rate_limited")
    assert 0 < body["retryAfterMs"] <= 100
    assert metric(client, "gateway_messages_total", status="rejected") == rejected_before + 1
    assert (
        metric(client, "gateway_messages_rejected_by_reason_total", reason="rate_limited")
        == limited_before + 1
    )
    time.sleep(body["retryAfterMs"] / 1000 + 0.05)
    assert send(client, session_id).status_code == 202  # waiting as told is enough


def test_queue_full_is_503(start_gateway) -> None:
    gw = start_gateway(
        "--queue-size", "2", "--delivery-latency-ms", "2000", "--delivery-jitter-ms", "0",
        "--senders", "1", "--rate-limit", "0", "--pairing-delay-s", "0.1",
    )  # fmt: skip
    with http_client(gw) as http:
        session_id = ready_session(http)
        responses = [send(http, session_id) for _ in range(5)]
        # One message is with the single (slow) sender, two fill the queue.
        assert [r.status_code for r in responses] == [202, 202, 202, 503, 503]
        body = assert_error(responses[3], 503, "queue_full")
        assert body["retryAfterMs"] == 1000
        assert responses[3].headers["retry-after"] == "1"
        families = scrape(http)
        assert metric(families, "gateway_queue_depth") == 2
        assert (
            metric(families, "gateway_messages_rejected_by_reason_total", reason="queue_full") == 2
        )
        assert http.get("/health").json()["queueDepth"] == 2


# --- inbound webhook ---------------------------------------------------------------------------


def test_webhook_received_and_idempotent(client: httpx.Client) -> None:
    processed = metric(client, "gateway_webhook_events_total", result="processed")
    duplicate = metric(client, "gateway_webhook_events_total", result="duplicate")
    remembered = metric(client, "gateway_cache_entries", cache="webhook_ids")
    event = inbound("5511900000000")
    first = client.post("/api/webhook", json=event)
    assert first.status_code == 200
    assert first.json() == {"received": True, "duplicate": False}
    again = client.post("/api/webhook", json=event)
    assert again.status_code == 200
    assert again.json() == {"received": True, "duplicate": True}
    assert metric(client, "gateway_webhook_events_total", result="processed") == processed + 1
    assert metric(client, "gateway_webhook_events_total", result="duplicate") == duplicate + 1
    # The id is kept for idempotency: memory the gateway reports, one entry.
    assert metric(client, "gateway_cache_entries", cache="webhook_ids") == remembered + 1


def _without_message_field(name: str) -> dict[str, Any]:
    event = inbound("5511900000000")
    del event["message"][name]
    return event


@pytest.mark.parametrize(
    "event",
    [
        inbound("5511900000000", type="message_ack"),
        inbound("5511900000000", timestamp=-1),
        inbound("5511900000000", timestamp=MAX_TIMESTAMP_MS + 1),
        inbound("5511900000000", timestamp="soon"),
        {"type": "message_create", "timestamp": 1},
        {"type": "message_create", "message": inbound("5511900000000")["message"]},
        _without_message_field("id"),
        _without_message_field("from"),
        _without_message_field("to"),
        inbound("5511900000000", message_id=""),
    ],
    ids=[
        "type", "negative-ts", "ts-over-2**53-1", "ts-string", "no-message", "no-timestamp",
        "no-id", "no-from", "no-to", "empty-id",
    ],
)  # fmt: skip
def test_webhook_invalid_event(client: httpx.Client, event: dict[str, Any]) -> None:
    assert_error(client.post("/api/webhook", json=event), 400, "invalid_request")


@pytest.mark.parametrize("content", [b"not json", b"", b"[1, 2]", b'"text"'])
def test_webhook_non_json_or_non_object(client: httpx.Client, content: bytes) -> None:
    assert_error(client.post("/api/webhook", content=content), 400, "invalid_request")


@pytest.mark.parametrize("timestamp", [0, MAX_TIMESTAMP_MS])
def test_webhook_timestamp_bounds_accepted(client: httpx.Client, timestamp: int) -> None:
    response = client.post("/api/webhook", json=inbound("5511900000000", timestamp=timestamp))
    assert response.status_code == 200


# --- WebSocket events --------------------------------------------------------------------------


def test_ack_lifecycle_over_websocket(gateway: GatewayProcess, client: httpx.Client) -> None:
    session_id = ready_session(client)
    ws = ws_connect(gateway, session_id)
    try:
        message_id = send(client, session_id).json()["messageId"]
        first, second = next_event(ws), next_event(ws)
    finally:
        ws.close()
    assert first["event"] == second["event"] == "message_ack"
    assert first["messageId"] == second["messageId"] == message_id
    assert (first["ack"], first["ackName"]) == (1, "server")
    assert (second["ack"], second["ackName"]) == (2, "device")
    assert first["timestamp"] <= second["timestamp"]


def test_failed_delivery_is_ack_error(start_gateway) -> None:
    gw = start_gateway("--delivery-failure-rate", "1", "--pairing-delay-s", "0.1", *FAST_DELIVERY)
    with http_client(gw) as http:
        session_id = ready_session(http)
        ws = ws_connect(gw, session_id)
        try:
            message_id = send(http, session_id).json()["messageId"]
            event = next_event(ws)
        finally:
            ws.close()
        assert event["event"] == "message_ack"
        assert event["messageId"] == message_id
        assert (event["ack"], event["ackName"]) == (-1, "error")
        families = scrape(http)
        assert metric(families, "gateway_messages_total", status="failed") == 1
        assert metric(families, "gateway_messages_total", status="sent") == 0
        assert metric(families, "gateway_messages_total", status="delivered") == 0


def test_inbound_webhook_reaches_the_session_socket(
    gateway: GatewayProcess, client: httpx.Client
) -> None:
    session_id = ready_session(client)
    phone = client.get(f"/api/sessions/{session_id}").json()["phone"]
    ws = ws_connect(gateway, session_id)
    try:
        for to in (phone, f"{phone}@c.us", session_id):
            event = inbound(to)
            assert client.post("/api/webhook", json=event).json()["duplicate"] is False
            frame = next_event(ws)
            assert frame == {
                "event": "message_create",
                "messageId": event["message"]["id"],
                "from": event["message"]["from"],
                "to": to,
                "text": event["message"]["text"],
                "timestamp": event["timestamp"],
            }
        # A duplicate is not published again: the next frame is the next new event's.
        assert client.post("/api/webhook", json=event).json()["duplicate"] is True
        fresh = inbound(phone)
        client.post("/api/webhook", json=fresh)
        assert next_event(ws)["messageId"] == fresh["message"]["id"]
    finally:
        ws.close()


def test_websocket_unknown_session_closes_4404(gateway: GatewayProcess) -> None:
    code, reason = close_frame(ws_connect(gateway, "no-such-session"))
    assert code == 4404
    assert reason == b"session_not_found"


def test_deleting_a_session_closes_its_sockets(
    gateway: GatewayProcess, client: httpx.Client
) -> None:
    session_id = create_session(client)
    base = metric(client, "gateway_websocket_connections")
    sockets = [ws_connect(gateway, session_id) for _ in range(2)]
    try:
        wait_until(
            lambda: metric(client, "gateway_websocket_connections") == base + 2, what="+2 sockets"
        )
        assert client.get(f"/api/sessions/{session_id}").json()["subscribers"] == 2
        assert client.delete(f"/api/sessions/{session_id}").status_code == 200
        assert [close_frame(ws)[0] for ws in sockets] == [1000, 1000]
    finally:
        for ws in sockets:
            ws.close()
    wait_until(lambda: metric(client, "gateway_websocket_connections") == base, what="sockets gone")


def test_client_closing_socket_is_counted_down(
    gateway: GatewayProcess, client: httpx.Client
) -> None:
    session_id = create_session(client)
    base = metric(client, "gateway_websocket_connections")
    opened = metric(client, "gateway_websocket_connections_opened_total")
    ws = ws_connect(gateway, session_id)
    wait_until(lambda: metric(client, "gateway_websocket_connections") == base + 1, what="+1")
    ws.close()
    wait_until(lambda: metric(client, "gateway_websocket_connections") == base, what="back down")
    assert metric(client, "gateway_websocket_connections_opened_total") == opened + 1
    assert client.get(f"/api/sessions/{session_id}").json()["subscribers"] == 0


# --- accounting, expiry ------------------------------------------------------------------------


def test_no_accepted_message_disappears(start_gateway) -> None:
    gw = start_gateway(
        "--delivery-failure-rate", "0.3", "--rate-limit", "0", "--senders", "2",
        "--delivery-latency-ms", "20", "--device-latency-ms", "20", "--pairing-delay-s", "0.1",
    )  # fmt: skip
    with http_client(gw) as http:
        watched, deleted = ready_session(http), ready_session(http)
        ws = ws_connect(gw, watched)
        try:
            watched_ids = {send(http, watched).json()["messageId"] for _ in range(30)}
            deleted_ids = {send(http, deleted).json()["messageId"] for _ in range(30)}
            # Deleted with most of its messages still queued: they must end failed, not vanish.
            assert http.delete(f"/api/sessions/{deleted}").status_code == 200
            acks = acks_until_final(ws, watched_ids)
        finally:
            ws.close()
        assert len(watched_ids) == len(deleted_ids) == 30
        for message_id, values in acks.items():
            assert values in ([1, 2], [-1]), (message_id, values)

        wait_until(lambda: metric(http, "gateway_messages_in_flight") == 0, what="in-flight 0")
        families = scrape(http)
        accepted = metric(families, "gateway_messages_total", status="accepted")
        delivered = metric(families, "gateway_messages_total", status="delivered")
        failed = metric(families, "gateway_messages_total", status="failed")
        assert accepted == 60
        assert delivered + failed == accepted
        assert metric(families, "gateway_messages_total", status="sent") == delivered
        assert failed > 0 and delivered > 0
        assert metric(families, "gateway_queue_depth") == 0


def test_idle_session_expires(start_gateway) -> None:
    gw = start_gateway("--session-idle-expiry-s", "1", "--pairing-delay-s", "0.1", *FAST_DELIVERY)
    with http_client(gw) as http:
        created = time.monotonic()
        idle, used = create_session(http), ready_session(http)
        assert send(http, used).status_code == 202
        time.sleep(max(0.0, created + 2.5 - time.monotonic()))
        assert_error(http.get(f"/api/sessions/{idle}"), 404, "session_not_found")
        assert http.get(f"/api/sessions/{used}").status_code == 200
        assert metric(http, "gateway_sessions_closed_total", reason="expired") == 1
        assert metric(http, "gateway_sessions_active") == 1


# --- outbound webhookUrl -----------------------------------------------------------------------


class _Recorder(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        self.server.bodies.append(json.loads(self.rfile.read(length)))  # type: ignore[attr-defined]
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def webhook_receiver() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A tiny HTTP server on loopback that records the JSON bodies POSTed to it."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    server.bodies = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", server.bodies  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_webhook_url_receives_acks(client: httpx.Client, webhook_receiver) -> None:
    url, bodies = webhook_receiver
    ok_before = metric(client, "gateway_outbound_webhooks_total", result="ok")
    session_id = ready_session(client, webhookUrl=url)
    message_id = send(client, session_id).json()["messageId"]

    def acks() -> list[int]:
        return [b["ack"] for b in list(bodies) if b.get("messageId") == message_id]

    wait_until(lambda: sorted(acks()) == [1, 2], what="both acks POSTed")
    assert all(b["event"] == "message_ack" for b in bodies)
    wait_until(
        lambda: metric(client, "gateway_outbound_webhooks_total", result="ok") == ok_before + 2,
        what="outbound webhook metric",
    )


@pytest.mark.parametrize("url", ["http://example.com/x", "http://10.0.0.1/x", "https://8.8.8.8/"])
def test_remote_webhook_url_refused(client: httpx.Client, url: str) -> None:
    created = metric(client, "gateway_sessions_created_total")
    response = client.post("/api/sessions", json={"apiKey": "k", "webhookUrl": url})
    assert_error(response, 400, "webhook_url_not_allowed")
    assert metric(client, "gateway_sessions_created_total") == created


# --- API keys ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def auth_gateway() -> Iterator[GatewayProcess]:
    with GatewayProcess(["--require-api-key", "--pairing-delay-s", "0.1", *FAST_DELIVERY]) as gw:
        yield gw


def test_api_key_over_http(auth_gateway: GatewayProcess) -> None:
    owner, other = {"X-Api-Key": "owner-key"}, {"X-Api-Key": "other-key"}
    with http_client(auth_gateway) as http:
        assert_error(http.post("/api/sessions", json={"apiKey": "owner-key"}), 401, "unauthorized")
        response = http.post("/api/sessions", json={"apiKey": "owner-key"}, headers=owner)
        assert response.status_code == 201
        session_id = response.json()["sessionId"]
        path = f"/api/sessions/{session_id}"

        assert_error(http.get(path), 401, "unauthorized")
        assert_error(http.get(path, headers=other), 403, "forbidden")
        wait_ready(http, session_id, **owner)

        assert_error(send(http, session_id), 401, "unauthorized")
        assert_error(send(http, session_id, **other), 403, "forbidden")
        assert send(http, session_id, **owner).status_code == 202

        assert_error(http.post("/api/webhook", json=inbound(session_id)), 401, "unauthorized")
        assert http.post("/api/webhook", json=inbound(session_id), headers=other).status_code == 200

        assert_error(http.delete(path), 401, "unauthorized")
        assert_error(http.delete(path, headers=other), 403, "forbidden")
        assert http.delete(path, headers=owner).status_code == 200
        assert_error(http.get(path, headers=owner), 404, "session_not_found")


def test_api_key_over_websocket(auth_gateway: GatewayProcess) -> None:
    with http_client(auth_gateway) as http:
        response = http.post(
            "/api/sessions", json={"apiKey": "owner-key"}, headers={"X-Api-Key": "owner-key"}
        )
        session_id = response.json()["sessionId"]
    assert close_frame(ws_connect(auth_gateway, session_id))[0] == 4401
    assert close_frame(ws_connect(auth_gateway, session_id, **{"X-Api-Key": "other"}))[0] == 4403
    ws = ws_connect(auth_gateway, session_id, **{"X-Api-Key": "owner-key"})
    try:
        assert ws.connected
        with http_client(auth_gateway) as http:
            info = http.get(f"/api/sessions/{session_id}", headers={"X-Api-Key": "owner-key"})
            assert info.json()["subscribers"] == 1
    finally:
        ws.close()
