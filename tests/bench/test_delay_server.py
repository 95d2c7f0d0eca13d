"""The benchmarks' ground truth: the delay server's schedule, and its record over real sockets."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest

from bench.delay_server import Delays
from bench.generators import hey_percentiles, wrk_percentiles


def test_a_response_due_in_a_stall_waits_for_its_end() -> None:
    delays = Delays(50.0, 0, 0, 1, stall_every_s=5.0, stall_s=1.0)
    start = delays.start
    assert delays.due(start) == pytest.approx(start + 0.05)
    assert delays.due(start + 3.9) == pytest.approx(start + 3.95)  # due before the stall
    assert delays.due(start + 3.96) == pytest.approx(start + 5.0)  # due inside it: its end
    assert delays.due(start + 4.9) == pytest.approx(start + 5.0)
    assert delays.due(start + 4.96) == pytest.approx(start + 5.01)  # the next cycle


def test_the_log_normal_delays_are_seeded_and_clipped() -> None:
    first, second = (Delays(None, 100.0, 0.6, 7) for _ in range(2))
    draws = [first.delay_s() for _ in range(2000)]
    assert draws == [second.delay_s() for _ in range(2000)]
    assert min(draws) >= 0.001 and max(draws) <= 1.0
    assert sorted(draws)[1000] == pytest.approx(0.1, rel=0.1)  # the median


def test_the_server_records_each_answer_and_clears_on_request() -> None:
    server = subprocess.Popen(
        [sys.executable, "-m", "bench.delay_server", "--delay-ms", "20"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        url = server.stdout.readline().split()[-1]
        with httpx.Client(base_url=url, timeout=5) as client:
            for _ in range(3):
                assert client.post("/api/webhook", content=b'{"a": 1}').status_code == 200
            assert client.get("/x").status_code == 200
            record = client.get("/record?clear").json()
            assert len(record) == 4 and all(20.0 <= ms < 200.0 for ms in record)
            assert client.get("/record").json() == []
    finally:
        server.terminate()
        server.wait(10)


def test_the_tools_percentiles_are_read_in_ms() -> None:
    assert wrk_percentiles("x\nPERCENTILES 50123 51000 52500 999\n") == {
        "p50_ms": 50.123, "p95_ms": 51.0, "p99_ms": 52.5,
    }  # fmt: skip
    hey = "Latency distribution:\n  10%% in 0.0501 secs\n  50%% in 0.0505 secs\n" \
        "  95%% in 0.0512 secs\n  99%% in 0.0530 secs\n"  # fmt: skip
    assert hey_percentiles(hey.replace("%%", "%")) == {
        "p50_ms": pytest.approx(50.5), "p95_ms": pytest.approx(51.2), "p99_ms": pytest.approx(53.0),
    }  # fmt: skip


def test_the_latency_table_says_what_was_skipped_and_against_what_it_judged() -> None:
    import argparse

    from bench import latency

    truth = {"p50_ms": 50.5, "p95_ms": 51.0, "p99_ms": 51.2, "count": 1200}
    near = {"p50_ms": 50.9, "p95_ms": 51.4, "p99_ms": 51.9}
    fixed = {"suite, closed model": [(near, truth)] * 3}
    stalled = {"suite, closed model": [(near, truth)] * 3}
    args = argparse.Namespace(seconds=6, runs=3)
    text, met = latency.render(fixed, stalled, args)  # no wrk, no hey: not installed
    assert met and "**met** (judged against the truth only: wrk is not installed)" in text
    assert text.endswith("Skipped: wrk is not installed; hey is not installed.")
    far = {**near, "p99_ms": 53.0}  # 1.8 ms above the truth's p99
    wrk = {"p50_ms": 50.6, "p95_ms": 51.1, "p99_ms": 51.3}
    fixed = {"wrk": [(wrk, truth)] * 3, "hey": [(wrk, truth)] * 3,
             "suite, closed model": [(far, truth)] * 3}  # fmt: skip
    text, met = latency.render(fixed, stalled, args)
    assert not met and "**not met** (judged against wrk and the truth)" in text
    assert "Skipped" not in text
