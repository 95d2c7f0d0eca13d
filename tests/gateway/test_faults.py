"""Every fault switch of the reference gateway does, measurably, what it says.

Each test starts a real `python -m gateway` on a free loopback port with one switch on and
measures its effect from outside: response times, status fractions, gaps seen by a probe, the
process's resident memory (psutil) and exit code, and the gateway's own `/metrics`. Every load
is bounded (a fixed number of requests or a fixed probe duration).
"""

from __future__ import annotations

import itertools
import math
import os
import signal
import statistics
import threading
import time
import uuid
from collections.abc import Callable

import httpx
import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.faults import CRASH_EXIT_CODE
from gateway.process import GatewayProcess

# Timing, rates or CPU are measured here: alone on the machine (see `make test`).
pytestmark = pytest.mark.exclusive

MIB = 1024 * 1024
StartGateway = Callable[..., GatewayProcess]


# --- helpers -----------------------------------------------------------------------------------


def metric(http: httpx.Client, name: str, **labels: str) -> float:
    """One sample of the gateway's `/metrics`; KeyError when it is not exposed."""
    text = http.get("/metrics").text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    raise KeyError(f"{name}{labels} not in /metrics")


def rss(gw: GatewayProcess) -> int:
    return psutil.Process(gw.pid).memory_info().rss


def timed(call: Callable[[], httpx.Response]) -> tuple[float, httpx.Response]:
    started = time.perf_counter()
    response = call()
    return time.perf_counter() - started, response


def webhook_event() -> dict[str, object]:
    return {
        "type": "message_create",
        "timestamp": int(time.time() * 1000),
        "message": {"id": uuid.uuid4().hex, "from": "5511900000001", "to": "5511900000002"},
    }


def ready_session(http: httpx.Client) -> str:
    """A new session (the gateways here run with --pairing-delay-s 0, so it is ready at once)."""
    created = http.post("/api/sessions", json={"apiKey": "faults"})
    assert created.status_code == 201, created.text
    session_id = created.json()["sessionId"]
    deadline = time.monotonic() + 5
    while http.get(f"/api/sessions/{session_id}").json()["status"] != "ready":
        assert time.monotonic() < deadline, "the session never became ready"
        time.sleep(0.01)
    return session_id


def send_messages(http: httpx.Client, session_id: str, count: int) -> None:
    for i in range(count):
        response = http.post(
            f"/api/sessions/{session_id}/messages", json={"to": "5511987654321", "body": f"m{i}"}
        )
        assert response.status_code == 202, response.text


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class UnprobedGateway(GatewayProcess):
    """A gateway started without the usual `/health` probe, so every request it sees is ours."""

    def _wait_healthy(self) -> None:
        return


# --- latency -----------------------------------------------------------------------------------


def test_latency_switch_delays_api_requests_only(start_gateway: StartGateway) -> None:
    gw = start_gateway("--latency-ms", "100", "--latency-jitter-ms", "20")
    requests = 30
    with httpx.Client(base_url=gw.url, timeout=5) as http:
        http.get("/health")  # open the keep-alive connection before timing anything
        api = []
        for _ in range(requests):
            elapsed, response = timed(lambda: http.get("/api/sessions/no-such-session"))
            assert response.status_code == 404
            api.append(elapsed * 1000)
        health = []
        for _ in range(requests):
            elapsed, response = timed(lambda: http.get("/health"))
            assert response.status_code == 200
            health.append(elapsed * 1000)
        injected = metric(http, "gateway_faults_injected_total", kind="latency")

    print(
        f"\n/api ms: min {min(api):.1f} median {statistics.median(api):.1f} max {max(api):.1f}; "
        f"/health ms: median {statistics.median(health):.2f} max {max(health):.2f}"
    )
    # 100 +/- 20 ms, uniform: never under 80 ms (a busy machine can only make it slower) ...
    assert min(api) >= 79.0, api
    # ... and under 120 ms plus a little client and scheduling overhead.
    assert quantile(api, 0.9) <= 130.0, api
    # One request of 30 may meet a pause of the shared VM itself (292 ms once, in a fresh-clone
    # run: no jitter of the switch's comes near): the next slowest still may not.
    assert sorted(api)[-2] <= 170.0, api
    # The jitter is real: 30 uniform draws all within 5 ms of 100 has odds of about 1e-6.
    assert min(api) < 95.0 < 105.0 < max(api), api
    # Centred on 100 (the mean of 30 draws: 2 ms standard deviation), not one-sided (120): the
    # upper bound leaves a busy machine's scheduling room (a CI run read 113.1 ms).
    assert 90.0 <= statistics.mean(api) <= 116.0, api
    # /health is not an /api route: it stays fast.
    assert statistics.median(health) < 15.0, health
    assert quantile(health, 0.9) < 40.0, health
    assert injected == requests


# --- injected errors ---------------------------------------------------------------------------


def test_error_rate_switch_answers_the_stated_fraction_with_500(
    start_gateway: StartGateway,
) -> None:
    rate, requests = 0.2, 1000
    gw = start_gateway("--error-rate", str(rate))
    statuses: list[int] = []
    with httpx.Client(base_url=gw.url, timeout=5) as http:
        for _ in range(requests):
            response = http.post("/api/webhook", json=webhook_event())
            statuses.append(response.status_code)
            if response.status_code == 500:
                assert response.headers["content-type"] == "application/json"
                body = response.json()
                assert body["error"] == "injected_fault"
                assert isinstance(body["detail"], str) and body["detail"]
            else:
                assert response.status_code == 200, response.text
                assert response.json() == {"received": True, "duplicate": False}
        # /health is outside /api: never an injected error.
        assert all(http.get("/health").status_code == 200 for _ in range(50))
        injected = metric(http, "gateway_faults_injected_total", kind="error")
        processed = metric(http, "gateway_webhook_events_total", result="processed")

    errors = statuses.count(500)
    # Binomial(1000, 0.2): sigma = 12.6 requests. Four sigma (about 1 false alarm in 16,000
    # runs) still tells 0.2 from 0.15 or 0.25.
    sigma = math.sqrt(requests * rate * (1 - rate))
    print(
        f"\n500s: {errors}/{requests} = {errors / requests:.3f} "
        f"(expected {rate}, sigma {sigma / requests:.4f})"
    )
    assert abs(errors - requests * rate) <= 4 * sigma, errors
    assert injected == errors
    # An injected error stops the request before the handler: only the others were processed.
    assert processed == requests - errors


# --- stalls ------------------------------------------------------------------------------------


def test_stall_switch_blocks_the_whole_event_loop_periodically(
    start_gateway: StartGateway,
) -> None:
    gw = start_gateway("--stall-ms", "500", "--stall-every-s", "2")
    completions: list[float] = []
    failures: list[BaseException] = []

    def probe(duration_s: float = 5.0, interval_s: float = 0.02) -> None:
        try:
            with httpx.Client(base_url=gw.url, timeout=5) as http:
                end = time.perf_counter() + duration_s
                while time.perf_counter() < end:
                    assert http.get("/health").status_code == 200
                    completions.append(time.perf_counter())
                    time.sleep(interval_s)
        except BaseException as exc:  # reported by the test thread below
            failures.append(exc)

    prober = threading.Thread(target=probe, name="health-probe")
    prober.start()
    prober.join(timeout=30)
    assert not prober.is_alive() and not failures, failures

    gaps = [(b - a, a) for a, b in itertools.pairwise(completions)]
    stalls = [(gap, at) for gap, at in gaps if gap >= 0.45]
    ordinary = [gap for gap, _ in gaps if gap < 0.45]
    largest = max(gap for gap, _ in gaps)
    with httpx.Client(base_url=gw.url, timeout=5) as http:
        counted = metric(http, "gateway_faults_injected_total", kind="stall")
    print(
        f"\nprobe: {len(completions)} answers, largest gap {largest * 1000:.0f} ms, "
        f"stall gaps (ms) {[round(g * 1000) for g, _ in stalls]}, "
        f"median ordinary gap {statistics.median(ordinary) * 1000:.1f} ms"
    )
    # The acceptance criterion: a probe polling every 20 ms sees a gap of at least 450 ms.
    assert largest >= 0.45
    # Any 5 s window holds two whole stalls of a 2 s period, 2 s apart, and each lasts ~500 ms.
    assert len(stalls) >= 2, stalls
    assert all(gap < 0.75 for gap, _ in stalls), stalls
    for (_, first), (_, second) in itertools.pairwise(stalls):
        assert 1.7 <= second - first <= 2.3, stalls
    # Between stalls the loop answers promptly.
    assert statistics.median(ordinary) < 0.06, ordinary
    assert counted >= len(stalls)


def test_stall_on_signal_blocks_the_loop_once_per_sigusr1(start_gateway: StartGateway) -> None:
    gw = start_gateway("--stall-ms", "600", "--stall-on-signal")
    with httpx.Client(base_url=gw.url, timeout=5) as http:
        quiet = []
        for _ in range(10):  # no timetable: nothing stalls until the signal
            began = time.perf_counter()
            assert http.get("/health").status_code == 200
            quiet.append(time.perf_counter() - began)
            time.sleep(0.1)
        assert max(quiet) < 0.3, quiet
        os.kill(gw.pid, signal.SIGUSR1)
        time.sleep(0.05)  # the loop takes the signal, then blocks
        began = time.perf_counter()
        assert http.get("/health").status_code == 200
        blocked = time.perf_counter() - began
        assert metric(http, "gateway_faults_injected_total", kind="stall") == 1
    assert 0.4 <= blocked < 1.5, blocked


# --- memory: leak ------------------------------------------------------------------------------


def test_leak_switch_retains_memory_per_accepted_message(start_gateway: StartGateway) -> None:
    kib, messages = 100, 1000
    expected = kib * 1024 * messages
    common = ("--rate-limit", "0", "--queue-size", "5000", "--pairing-delay-s", "0")
    growth: dict[str, int] = {}
    for label, extra in (("leak", ("--leak-kib-per-message", str(kib))), ("control", ())):
        gw = start_gateway(*common, *extra)
        with httpx.Client(base_url=gw.url, timeout=5) as http:
            session_id = ready_session(http)
            send_messages(http, session_id, 50)  # warm up allocator and caches
            before = rss(gw)
            send_messages(http, session_id, messages)
            growth[label] = rss(gw) - before
            retained = metric(http, "gateway_retained_bytes", kind="leak")
            accepted = metric(http, "gateway_messages_total", status="accepted")
        assert accepted == messages + 50
        if label == "leak":
            assert retained == (messages + 50) * kib * 1024
        else:
            assert retained == 0
        gw.stop()

    print(
        f"\nRSS growth over {messages} messages: leak {growth['leak'] / MIB:.1f} MiB "
        f"(expected {expected / MIB:.1f}), control {growth['control'] / MIB:.1f} MiB"
    )
    assert growth["leak"] >= 0.8 * expected
    assert growth["control"] <= 0.2 * expected
    assert growth["control"] * 4 <= growth["leak"]


# --- memory: sessions --------------------------------------------------------------------------


def test_session_memory_follows_live_sessions(start_gateway: StartGateway) -> None:
    kib, sessions = 2048, 100
    expected = kib * 1024 * sessions
    gw = start_gateway(
        "--session-memory-kib", str(kib), "--session-idle-expiry-s", "0", "--pairing-delay-s", "0"
    )
    with httpx.Client(base_url=gw.url, timeout=5) as http:
        # Two rounds: memory must be given back, and taken again, after the first churn too.
        for round_ in (1, 2):
            before = rss(gw)
            ids = []
            for _ in range(sessions):
                created = http.post("/api/sessions", json={"apiKey": "memory"})
                assert created.status_code == 201, created.text
                ids.append(created.json()["sessionId"])
            live = rss(gw)
            assert metric(http, "gateway_retained_bytes", kind="sessions") == expected
            for session_id in ids:
                assert http.delete(f"/api/sessions/{session_id}").status_code == 200
            after = rss(gw)
            assert metric(http, "gateway_retained_bytes", kind="sessions") == 0
            grown, returned = live - before, live - after
            print(
                f"\nround {round_}: {sessions} sessions x {kib} KiB grew RSS {grown / MIB:.1f} MiB "
                f"(expected {expected / MIB:.0f}); deleting them gave back {returned / MIB:.1f} MiB"
            )
            assert grown >= 0.8 * expected
            assert returned >= 0.8 * grown


# --- crash -------------------------------------------------------------------------------------


def test_crash_switch_exits_with_code_70_on_the_nth_request() -> None:
    with UnprobedGateway(["--crash-after-requests", "5"]) as gw:
        assert gw.proc is not None
        with httpx.Client(base_url=gw.url, timeout=5) as http:
            # Requests 1 to 4, of every kind, are answered.
            assert http.get("/health").status_code == 200
            assert http.get("/metrics").status_code == 200
            assert http.get("/api/sessions/no-such-session").status_code == 404
            assert http.post("/api/webhook", json=webhook_event()).status_code == 200
            assert gw.alive()
            started = time.monotonic()
            with pytest.raises(httpx.TransportError):
                http.get("/health")  # the 5th
        code = gw.proc.wait(timeout=5)
        took = time.monotonic() - started
        deadline = time.monotonic() + 2
        while not any("on request 5" in line for line in gw.output):
            assert time.monotonic() < deadline, list(gw.output)
            time.sleep(0.01)
    print(f"\ncrash: exit code {code} {took * 1000:.0f} ms after the 5th request")
    assert code == CRASH_EXIT_CODE == 70
    assert took < 5


# --- delivery latency --------------------------------------------------------------------------


def test_delivery_latency_switch_delays_the_server_ack(start_gateway: StartGateway) -> None:
    gw = start_gateway(
        "--delivery-latency-ms", "300", "--delivery-jitter-ms", "0", "--pairing-delay-s", "0"
    )
    with httpx.Client(base_url=gw.url, timeout=5) as http:
        session_id = ready_session(http)
        send_messages(http, session_id, 1)
        accepted_at = time.perf_counter()
        observations: list[tuple[float, float]] = []
        while True:
            sent = metric(http, "gateway_messages_total", status="sent")
            elapsed = time.perf_counter() - accepted_at
            observations.append((elapsed, sent))
            if sent >= 1 or elapsed > 3:
                break
            time.sleep(0.01)
        assert metric(http, "gateway_messages_total", status="accepted") == 1

    first_sent = observations[-1][0]
    print(f"\ndelivery: 'sent' seen {first_sent * 1000:.0f} ms after the 202")
    assert observations[-1][1] == 1, observations
    early = [sent for elapsed, sent in observations if elapsed < 0.2]
    assert len(early) >= 5 and not any(early), observations
    assert 0.2 <= first_sent <= 0.6, observations
