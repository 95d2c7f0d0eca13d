"""The Node.js gateway (tests/nodegw/server.js), a real `node` process on loopback: its API as
the plan's profile expects it, a Locust run of the `messages` scenario against it unchanged,
and each switch measured from outside (answers, RSS, /metrics, the V8 inspector)."""

from __future__ import annotations

import itertools
import json
import struct
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import websocket

from tests.e2e.conftest import run_locust, scrape
from tests.nodegw import HERE, SERVER, NodeGateway, unavailable

RECIPIENT = "5511912345678"
KIB, MIB = 1024, 1024 * 1024
# Sends as fast as the test can make them: no pairing delay, no per-session rate limit.
UNTHROTTLED = ("--pairing-delay-ms", "0", "--rate-limit", "0")

# server.js needs its packages even to refuse a flag: every test here needs both.
pytestmark = pytest.mark.skipif(unavailable() is not None, reason=unavailable() or "")


# --- helpers -----------------------------------------------------------------------------------


def wait_until(check: Callable[[], Any], timeout_s: float = 5.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout_s
    while not (result := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout_s} s")
        time.sleep(0.02)
    return result


def ready_session(http: httpx.Client, key: str = "test-key-1") -> str:
    """A new session of `key`, once it is ready: its id."""
    headers = {"X-Api-Key": key}
    created = http.post("/api/sessions", json={"apiKey": key}, headers=headers)
    assert created.status_code == 201, created.text
    path = "/api/sessions/" + created.json()["sessionId"]

    def ready() -> bool:
        return http.get(path, headers=headers).json()["status"] == "ready"

    wait_until(ready, what="ready")
    return created.json()["sessionId"]


def send(http: httpx.Client, session_id: str, count: int, body: str = "hello") -> list[str]:
    """`count` accepted messages (202): their ids."""
    ids = []
    for _ in range(count):
        answer = http.post(
            f"/api/sessions/{session_id}/messages", json={"to": RECIPIENT, "body": body}
        )
        assert answer.status_code == 202, answer.text
        ids.append(answer.json()["messageId"])
    return ids


def metric(gw: NodeGateway, name: str, **labels: str) -> float:
    """The sum of the gateway's samples `name` whose labels include `labels` (0 when none)."""
    return sum(
        value
        for sample_labels, value in scrape(gw.url).get(name, [])
        if labels.items() <= sample_labels.items()
    )


def events_of(gw: NodeGateway, session_id: str, *header: str) -> websocket.WebSocket:
    """The session's WebSocket of events, connected with these handshake headers."""
    url = gw.url.replace("http", "ws", 1) + f"/api/sessions/{session_id}/events"
    return websocket.create_connection(url, header=list(header), timeout=5)


def rss(gw: NodeGateway) -> int:
    return psutil.Process(gw.pid).memory_info().rss


@pytest.fixture
def http_of() -> Iterator[Callable[[NodeGateway], httpx.Client]]:
    clients: list[httpx.Client] = []

    def make(gw: NodeGateway) -> httpx.Client:
        clients.append(httpx.Client(base_url=gw.url, timeout=10))
        return clients[-1]

    yield make
    for client in clients:
        client.close()


class Inspector:
    """A Chrome DevTools Protocol client of node's inspector: `call(method, **params)`."""

    def __init__(self, gw: NodeGateway) -> None:
        self.socket = websocket.create_connection(gw.debugger_url, timeout=30)
        self.ids = itertools.count(1)

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        request_id = next(self.ids)
        self.socket.send(json.dumps({"id": request_id, "method": method, "params": params}))
        while True:  # events (notifications) come in between: they carry no id
            answer = json.loads(self.socket.recv())
            if answer.get("id") == request_id:
                assert "error" not in answer, answer
                return answer["result"]

    def close(self) -> None:
        self.socket.close()


def profile_nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every node of a sampling heap profile's tree."""
    yield node
    for child in node["children"]:
        yield from profile_nodes(child)


def close_code(ws: websocket.WebSocket) -> int:
    """The code of the close frame the server sends next (other frames skipped)."""
    while True:
        opcode, frame = ws.recv_data_frame(control_frame=True)
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            ws.close()
            return struct.unpack("!H", frame.data[:2])[0]


def line_of(path: Path, text: str) -> int:
    """The 0-based line of `text` in `path`, as V8's call frames count lines."""
    return next(i for i, line in enumerate(path.read_text().splitlines()) if text in line)


# --- the API -----------------------------------------------------------------------------------


def test_the_api_answers_as_the_plan_profile_expects(start_node_gateway, http_of) -> None:
    gw = start_node_gateway("--rate-limit", "2", "--read-ack-ms", "5")
    http = http_of(gw)
    assert http.get("/health").json()["status"] == "ok"
    created = http.post("/api/sessions", json={"apiKey": "test-key-1"})
    assert created.status_code == 201
    session_id = created.json()["sessionId"]
    assert created.json() == {"sessionId": session_id, "status": "initializing"}
    not_ready = http.post(
        f"/api/sessions/{session_id}/messages", json={"to": RECIPIENT, "body": "x"}
    )
    assert not_ready.status_code == 409
    assert not_ready.json()["error"] == "session_not_ready"
    assert 0 < not_ready.json()["retryAfterMs"] <= 200
    wait_until(lambda: http.get(f"/api/sessions/{session_id}").json()["status"] == "ready")

    events = events_of(gw, session_id)
    first, second = send(http, session_id, 2)
    throttled = http.post(
        f"/api/sessions/{session_id}/messages", json={"to": RECIPIENT, "body": "x"}
    )
    assert throttled.status_code == 429
    assert throttled.json()["error"] == "rate_limited"
    assert 0 < throttled.json()["retryAfterMs"] <= 500
    assert throttled.headers["Retry-After"] == "1"
    acks: dict[str, list[int]] = {first: [], second: []}
    while any(len(seen) < 3 for seen in acks.values()):
        event = json.loads(events.recv())
        assert event["event"] == "message_ack"
        acks[event["messageId"]].append(event["ack"])
    assert acks == {first: [1, 2, 3], second: [1, 2, 3]}
    session = http.get(f"/api/sessions/{session_id}").json()
    assert session["messagesSent"] == 2
    inbound = {"id": "in-1", "from": RECIPIENT, "to": session["phone"] + "@c.us", "text": "hi"}
    webhook = {"type": "message_create", "timestamp": 1, "message": inbound}
    assert http.post("/api/webhook", json=webhook).json() == {"received": True, "duplicate": False}
    assert json.loads(events.recv()) == {
        "event": "message_create",
        "messageId": "in-1",
        "from": RECIPIENT,
        "to": inbound["to"],
        "text": "hi",
        "timestamp": 1,
    }

    assert http.delete(f"/api/sessions/{session_id}").json() == {
        "sessionId": session_id,
        "status": "closed",
    }
    assert close_code(events) == 1000  # the deleted session's events end with it
    assert http.get(f"/api/sessions/{session_id}").status_code == 404
    assert http.delete(f"/api/sessions/{session_id}").status_code == 404
    metrics = scrape(gw.url)
    for name in ("gateway_sessions_active", "gateway_queue_depth", "gateway_websocket_connections"):
        assert metrics[name] == [({}, 0.0)], name
    assert metric(gw, "gateway_messages_total", status="delivered") == 2
    assert metric(gw, "nodejs_heap_size_used_bytes") > 0  # prom-client's default metrics


def test_refusals_are_the_reference_gateways(start_node_gateway, http_of) -> None:
    gw = start_node_gateway("--pairing-delay-ms", "0", "--require-api-key")
    http = http_of(gw)
    assert http.post("/api/sessions", json={"apiKey": "k"}).status_code == 401
    session_id = ready_session(http, key="k")
    path = f"/api/sessions/{session_id}"
    assert http.get(path).json()["error"] == "unauthorized"
    assert http.get(path, headers={"X-Api-Key": "other"}).json()["error"] == "forbidden"
    mine = {"X-Api-Key": "k"}
    assert http.get(path, headers=mine).status_code == 200
    refusals = [
        ({"to": "12", "body": "x"}, 400, "invalid_recipient"),
        ({"to": RECIPIENT, "body": ""}, 400, "empty_body"),
        ({"to": RECIPIENT}, 400, "invalid_request"),
        ({"to": RECIPIENT, "body": "x" * (64 * KIB + 1)}, 413, "body_too_large"),
    ]
    for body, status, code in refusals:
        answer = http.post(path + "/messages", json=body, headers=mine)
        assert (answer.status_code, answer.json()["error"]) == (status, code), body
    assert http.post(path + "/messages", content=b"{", headers=mine).status_code == 400
    assert http.post("/api/webhook", json={}).status_code == 401
    event = {"type": "message_create", "timestamp": 1, "message": {"id": "m", "from": "a"}}
    assert http.post("/api/webhook", json=event, headers=mine).status_code == 400  # no "to"
    event["message"]["to"] = "b"
    assert http.post("/api/webhook", json=event, headers=mine).json()["duplicate"] is False
    assert http.post("/api/webhook", json=event, headers=mine).json()["duplicate"] is True
    assert http.get("/api/nothing").status_code == 404
    assert http.put("/api/webhook").status_code == 405
    events = events_of(gw, session_id, "X-Api-Key: other")
    assert close_code(events) == 4403  # after the handshake: the HTTP status plus 4000


def test_bad_flags_are_one_line_and_exit_code_2() -> None:
    for flags in (["--port", "x"], ["--host", "10.0.0.1"], ["--no-such-flag"]):
        done = subprocess.run(
            ["node", str(SERVER), *flags], capture_output=True, text=True, timeout=10
        )
        assert done.returncode == 2, flags
        assert done.stderr.startswith("gateway: ") and done.stderr.count("\n") == 1, done.stderr


# --- the suite against it ----------------------------------------------------------------------


@pytest.mark.slow  # ~12 s
def test_the_messages_scenario_runs_against_it_unchanged(start_node_gateway, tmp_path) -> None:
    gw = start_node_gateway()
    run = run_locust("messages", tmp_path / "run", host=gw.url, timeout=60)
    assert run.returncode == 0, run.explain()
    summary = run.summary
    messages = summary["messages"]
    assert messages["accepted"] == 500  # 10 sessions x 50 messages
    assert messages["delivered"] == 500
    assert messages["throttled"] > 0  # 50 at once on a 10/s bucket, retried after retryAfterMs
    assert summary["totals"]["failures"] == 0, summary["errors"]
    assert summary["sessions"]["created"] == summary["sessions"]["deleted"] == 10
    assert summary["websocket"]["connected"] == 10
    assert metric(gw, "gateway_messages_total", status="accepted") == 500
    assert metric(gw, "gateway_http_requests_total", status="429") == messages["throttled"]
    assert metric(gw, "gateway_sessions_active") == 0
    # The suite's monitor read prom-client's heap figures, what it reports of a Node.js gateway.
    assert "heap_used_mb" in (run.report_dir / "samples.csv").read_text().splitlines()[0]


# --- the switches ------------------------------------------------------------------------------


def test_leak_kb_per_message_grows_rss_and_names_its_allocation_site(
    start_node_gateway, http_of
) -> None:
    gw = start_node_gateway("--leak-kb-per-message", "64", *UNTHROTTLED, inspect=True)
    host, _, port = gw.inspector.rpartition(":")
    assert host == "127.0.0.1" and int(port) > 0
    http = http_of(gw)
    session_id = ready_session(http)
    inspector = Inspector(gw)
    try:
        inspector.call("HeapProfiler.startSampling", samplingInterval=16 * KIB)
        before = rss(gw)
        send(http, session_id, 500)
        grown = rss(gw) - before
        profile = inspector.call("HeapProfiler.getSamplingProfile")["profile"]
    finally:
        inspector.close()
    leaked = 500 * 64 * KIB
    assert grown >= leaked / 2, f"RSS grew {grown / MIB:.1f} MiB of {leaked / MIB:.0f} leaked"
    assert metric(gw, "gateway_retained_bytes", kind="leak") == leaked
    # The sampled bytes still live are the leak's, at the function, file and line of faults.js.
    sites: dict[tuple[str, str, int], float] = {}
    for node in profile_nodes(profile["head"]):
        frame = node["callFrame"]
        site = (frame["functionName"], frame["url"].rpartition("/")[2], frame["lineNumber"])
        sites[site] = sites.get(site, 0) + node["selfSize"]
    top = max(sites, key=sites.__getitem__)
    line = line_of(HERE / "faults.js", "function retainMessageHistory(")
    largest = sorted(sites.items(), key=lambda item: item[1])[-5:]
    assert top == ("retainMessageHistory", "faults.js", line), largest
    assert sites[top] >= leaked / 2


def test_block_ms_delays_answers_and_reads_as_event_loop_delay(start_node_gateway, http_of) -> None:
    gw = start_node_gateway("--block-ms", "200", "--block-every-ms", "1000", inspect=True)
    http = http_of(gw)
    inspector = Inspector(gw)
    try:
        inspector.call("Profiler.enable")
        inspector.call("Profiler.start")
        slowest = 0.0
        deadline = time.monotonic() + 2.5
        while time.monotonic() < deadline:
            started = time.perf_counter()
            assert http.get("/health").status_code == 200
            slowest = max(slowest, time.perf_counter() - started)
            time.sleep(0.01)
        profile = inspector.call("Profiler.stop")["profile"]
    finally:
        inspector.close()
    assert slowest >= 0.15, f"the slowest of the answers took {slowest * 1000:.0f} ms"
    # prom-client's event loop delay histogram, since the gateway started: at least M - 20 ms.
    assert metric(gw, "nodejs_eventloop_lag_max_seconds") >= 0.18
    assert metric(gw, "gateway_event_loop_blocked_seconds_total") >= 0.4
    # The CPU profile's samples in blockEventLoop and what it calls: more than one block of
    # 200 ms (2.5 s see two; the sampler misses some of their time).
    sample_s = (profile["endTime"] - profile["startTime"]) / 1e6 / len(profile["samples"])
    nodes = {node["id"]: node for node in profile["nodes"]}

    def inclusive(node: dict[str, Any]) -> int:
        return node["hitCount"] + sum(inclusive(nodes[i]) for i in node.get("children", []))

    blocking = [n for n in nodes.values() if n["callFrame"]["functionName"] == "blockEventLoop"]
    blocked_s = sum(inclusive(node) for node in blocking) * sample_s
    assert blocked_s >= 0.25, f"{blocked_s * 1000:.0f} ms of samples in blockEventLoop"


def test_churn_mb_per_s_runs_the_gc_and_retains_nothing(start_node_gateway) -> None:
    churning, idle = start_node_gateway("--churn-mb-per-s", "50"), start_node_gateway()

    def gc(gw: NodeGateway) -> tuple[float, float]:
        """How many collections, and how many seconds they paused, so far."""
        return (
            metric(gw, "nodejs_gc_duration_seconds_count"),
            metric(gw, "nodejs_gc_duration_seconds_sum"),
        )

    def gc_since(gw: NodeGateway, then: tuple[float, float]) -> tuple[float, float]:
        count, paused = gc(gw)
        return count - then[0], paused - then[1]

    time.sleep(1.0)  # the young generation grows to its size first
    started, churned, resident = (
        time.monotonic(),
        metric(churning, "gateway_churn_bytes_total"),
        rss(churning),
    )
    before = {gw: gc(gw) for gw in (churning, idle)}
    time.sleep(2.0)
    rate = (metric(churning, "gateway_churn_bytes_total") - churned) / (time.monotonic() - started)
    assert 0.75 * 50e6 <= rate <= 1.25 * 50e6, f"{rate / 1e6:.1f} MB/s"
    count, paused = gc_since(churning, before[churning])
    idle_count, idle_paused = gc_since(idle, before[idle])
    assert count >= idle_count + 3, (count, idle_count)
    assert paused > idle_paused, (paused, idle_paused)
    # 100 MB went by; what stays is the young generation's size at most, not the garbage.
    grown = rss(churning) - resident
    assert grown < 20 * MIB, f"RSS grew {grown / MIB:.1f} MiB"
    assert metric(churning, "gateway_retained_bytes", kind="leak") == 0


def test_cache_entries_levels_off_at_its_bound(start_node_gateway, http_of) -> None:
    gw = start_node_gateway("--cache-entries", "100", *UNTHROTTLED)
    http = http_of(gw)
    session_id = ready_session(http)
    send(http, session_id, 50)
    assert metric(gw, "gateway_cache_entries", cache="messages") == 50
    send(http, session_id, 250)
    assert metric(gw, "gateway_cache_entries", cache="messages") == 100
