"""Real Locust runs against real servers on loopback: rates, latency, drops, stages, bursts.

Each run is bounded (a scenario of a few seconds to 20 s, and a process timeout).
"""

from __future__ import annotations

import concurrent.futures
from dataclasses import dataclass

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.process import GatewayProcess
from shapes.stages import VUStage, VUStages
from tests.shapes.conftest import LocustRun, LocustRunner

# Timing, rates or CPU are measured here: alone on the machine (see `make test`).
pytestmark = pytest.mark.exclusive

WEBHOOK = "POST /api/webhook"


def webhooks_processed(url: str) -> float:
    text = httpx.get(url + "/metrics", timeout=5).text
    for family in text_string_to_metric_families(text):
        if family.name == "gateway_webhook_events":
            return sum(s.value for s in family.samples if s.labels.get("result") == "processed")
    raise AssertionError("no gateway_webhook_events metric")


def arrivals(phases: str, *, extra: str = "", user: str = "WebhookPoster") -> str:
    return f"""
        name: test
        load:
          model: arrivals
          {extra}
          phases:
        {phases}
        users:
          {user}: {{}}
    """


@dataclass
class LongRun:
    run: LocustRun
    counted: float


@pytest.fixture(scope="module")
def long_runs(tmp_path_factory) -> dict[str, LongRun]:
    """The four 20-s runs, side by side, each against its own gateway: what they measure
    (counts at the server, a second-long stall) does not depend on having the machine alone,
    and together they take 20 s instead of 80."""
    specs = {
        "constant": ((), arrivals("    - {duration: 20s, arrival_rate: 200}"), 0),
        "ramp": ((), arrivals("    - {duration: 20s, arrival_rate: 10, ramp_to: 100}"), 0),
        "distributed": ((), arrivals("    - {duration: 20s, arrival_rate: 200}"), 2),
        "stalls": (
            ("--stall-ms", "1000", "--stall-every-s", "5"),
            arrivals("    - {duration: 20s, arrival_rate: 50}"),
            0,
        ),
    }

    # Made here, not in the threads: pytest's temporary folders are not thread-safe to create.
    folders = {name: tmp_path_factory.mktemp(name) for name in specs}

    def one(name: str) -> LongRun:
        gateway_args, scenario, workers = specs[name]
        runner = LocustRunner(folders[name])
        with GatewayProcess(list(gateway_args)) as gateway:
            if workers:
                run = runner.run_distributed(scenario, gateway.url, workers=workers)
            else:
                run = runner.run(scenario, gateway.url)
            return LongRun(run, webhooks_processed(gateway.url))

    with concurrent.futures.ThreadPoolExecutor(len(specs)) as pool:
        futures = {name: pool.submit(one, name) for name in specs}
        return {name: future.result() for name, future in futures.items()}


@pytest.mark.slow
def test_constant_rate_holds_at_the_server(long_runs):
    run, counted = long_runs["constant"].run, long_runs["constant"].counted
    assert run.returncode == 0, run.stderr[-2000:]
    print(f"200/s x 20 s: counted at the server {counted:.0f} of 4000")
    assert abs(counted - 4000) <= 0.02 * 4000, counted
    assert run.results["arrivals"]["dropped"] == 0
    assert run.results["arrivals"]["due"] == 4000
    assert run.histogram(WEBHOOK)["count"] == counted


@pytest.mark.slow
def test_linear_ramp_delivers_the_expected_total(long_runs):
    run, counted = long_runs["ramp"].run, long_runs["ramp"].counted
    assert run.returncode == 0, run.stderr[-2000:]
    print(f"ramp 10->100/s over 20 s: counted at the server {counted:.0f} of 1100")
    assert abs(counted - 1100) <= 0.02 * 1100, counted


@pytest.mark.slow
def test_rate_holds_with_a_master_and_two_workers(long_runs):
    run, counted = long_runs["distributed"].run, long_runs["distributed"].counted
    assert run.returncode == 0, run.stderr[-2000:]
    print(f"master + 2 workers, 200/s x 20 s: counted at the server {counted:.0f} of 4000")
    assert abs(counted - 4000) <= 0.02 * 4000, counted
    # The master's histograms are the exact sum of both workers'.
    assert run.histogram(WEBHOOK)["count"] == counted
    assert run.results["arrivals"]["due"] == 4000


@pytest.mark.slow
def test_open_model_sees_the_stalls(long_runs):
    # 1 s stalls every 5 s: a fifth of the arrivals wait out part of a stall, uniformly, so the
    # 95th percentile is 1000 ms x (1 - 0.05 / 0.2) = 750 ms and the 99th 950 ms.
    run = long_runs["stalls"].run
    assert run.returncode == 0, run.stderr[-2000:]
    latency = run.histogram(WEBHOOK, "latency")
    service = run.histogram(WEBHOOK, "service")
    print(f"stalls: latency p95 {latency['p95_ms']} p99 {latency['p99_ms']} ms; "
          f"service p95 {service['p95_ms']} p99 {service['p99_ms']} ms")  # fmt: skip
    assert 650 <= latency["p95_ms"] <= 850, latency
    assert 880 <= latency["p99_ms"] <= 1020, latency
    assert latency["count"] == service["count"] == 1000
    assert run.results["arrivals"]["dropped"] == 0


def test_exhausted_pool_counts_dropped_arrivals(start_gateway, locust_runner):
    # 5 users, each busy 100 ms per request: room for 50 arrivals/s out of the 200/s offered.
    gateway = start_gateway("--latency-ms", "100")
    scenario = arrivals("    - {duration: 4s, arrival_rate: 200}", extra="max_in_flight: 5")
    run = locust_runner.run(scenario, gateway.url)
    assert run.returncode == 0, run.stderr[-2000:]
    counters = run.results["arrivals"]
    assert counters["due"] == 800
    assert counters["started"] + counters["dropped"] == 800
    assert 500 <= counters["dropped"] <= 700, counters
    assert counters["max_in_flight"] == 5
    assert webhooks_processed(gateway.url) == counters["started"]


def _percentile_misses(run, truth: list[float]) -> list[str]:
    measured = run.histogram("GET /probe", "latency")
    assert measured["count"] == len(truth) == 600
    misses = []
    for p in (50, 95, 99):
        rank = min(len(truth) - 1, round(p / 100 * len(truth)) - 1)
        expected = truth[rank]
        low, high = truth[rank - NEIGHBOURS], truth[min(len(truth) - 1, rank + NEIGHBOURS)]
        got = measured[f"p{p}_ms"]
        print(f"p{p}: measured {got:.3f} ms, server {expected:.3f} ms ({low:.3f} to "
              f"{high:.3f} a request either side), {got - expected:+.3f}")  # fmt: skip
        if not low - HISTOGRAM_PRECISION_MS <= got <= high + CLIENT_OVERHEAD_MAX_MS:
            misses.append(f"p{p}: {got:.3f} ms outside {low:.3f} to {high:.3f} ms")
    return misses


# The client's time of a request is the server's plus the client's own overhead (waking up on
# the answer, parsing it): 0.7 to 2.5 ms on these shared VMs, never below the server's.
CLIENT_OVERHEAD_MAX_MS = 3.0
# The histogram keeps 3 significant digits: 0.4 ms at the 99th percentile's 375 ms.
HISTOGRAM_PRECISION_MS = 0.5
# A request whose overhead stretches now and then (the VM's neighbours) changes places with
# the next one: in the tail, where 600 requests are sparse, a place is about 3 ms at p95. The
# client's percentile is held against the server's one request either side. Rounding as
# Locust's own table rounds (101.5 -> 100, 262 -> 260 ms) still falls outside.
NEIGHBOURS = 1


@pytest.mark.slow
def test_percentiles_match_the_servers_own_record(latency_server, locust_runner):
    """The 50th, 95th and 99th percentiles are the server's own record of each request plus
    the client's overhead (`_percentile_misses`).

    A second run is allowed before the test fails (both runs' figures are printed): the
    overhead of one request now and then stretches on a shared VM.
    """
    scenario = arrivals("    - {duration: 12s, arrival_rate: 50}", user="Prober")
    misses = []
    for _attempt in range(2):
        server = latency_server()
        # Server and generator on cores of their own; the server's median is 100 ms.
        run = locust_runner.run(scenario, server.url, cpu=1)
        assert run.returncode == 0, run.stderr[-2000:]
        misses = _percentile_misses(run, server.record())
        if not misses:
            return
    raise AssertionError(f"twice off the server's record: {misses}")


def test_vu_stages_follow_the_linear_ramp(start_gateway, locust_runner):
    gateway = start_gateway()
    scenario = """
        name: stages
        load:
          model: stages
          stages:
            - {duration: 6s, target: 12}
            - {duration: 4s, target: 4}
        think_time: {min: 0.2, max: 0.2}
        users:
          WebhookPoster: {}
    """
    run = locust_runner.run(scenario, gateway.url)
    assert run.returncode == 0, run.stderr[-2000:]
    ramp = VUStages([VUStage(6, 12), VUStage(4, 4)])
    # The shape ticks once a second and sets the count the ramp has at that tick: a staircase.
    # Samples just after a tick may still see the step before it; they are left out.
    samples = [(t, users) for t, users in run.results["timeline"]
               if 0.3 <= t <= 9.9 and t % 1.0 > 0.3]  # fmt: skip
    assert len(samples) >= 20
    off = [(round(t, 2), users, ramp.users_at(int(t))) for t, users in samples
           if abs(users - ramp.users_at(int(t))) > 1]  # fmt: skip
    assert not off, off


def test_burst_fires_every_iteration_at_once_and_ends(start_gateway, locust_runner):
    gateway = start_gateway("--latency-ms", "200")
    scenario = """
        name: burst
        load: {model: burst, users: 5, iterations_per_user: 20, timeout: 60s}
        users:
          WebhookPoster: {}
    """
    run = locust_runner.run(scenario, gateway.url, timeout=60)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.results["burst"]["ready"] == 5 and run.results["burst"]["done"] == 5
    assert webhooks_processed(gateway.url) == 100
    latency = run.histogram(WEBHOOK)
    # All 100 were in flight together: each took about the injected 200 ms, not 20 x 200 ms.
    assert latency["count"] == 100
    assert latency["max_ms"] < 1000, latency


def test_bad_scenario_file_is_one_line_and_exit_code_2(locust_runner):
    run = locust_runner.run(
        arrivals("    - {duration: 10s, arrival_rate: -5}"), "http://127.0.0.1:9", timeout=30
    )
    assert run.returncode == 2
    assert "Traceback" not in run.stderr
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    assert "load.phases[0].arrival_rate" in errors[0] and "scenario-" in errors[0]
