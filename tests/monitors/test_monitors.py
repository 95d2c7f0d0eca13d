"""The monitors' acceptance: real gateways and Locust runs on loopback, each bounded.

- memory per session: a sessions run against a gateway that holds a known 2 MiB per session;
  the least-squares slope of the sampled RSS against the gateway's live sessions is that size;
- the live leak alert: a compressed endurance run against a leaking gateway fires it (in the
  summary and the run's log), the same run against a sound one does not;
- Prometheus from a Node.js gateway: a prom-client default-metrics exposition (fixture) gives
  heap used/total and event-loop lag, parsed and scraped over HTTP; a 404 is a note;
- master and two workers: the master stores each worker's generator samples;
- units: Theil-Sen and its interval, the alert rules, CPU % of a busy process, the CSV store.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import http.client
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import gevent
import psutil
import pytest

from gateway.process import GatewayProcess
from monitors.alerts import (
    LEAK_MAX_POINTS,
    AlertRules,
    AlertWatch,
    leak_window_for,
    load_alert_rules,
    theil_sen,
    thinned,
)
from monitors.process import ProcessSampler, inet_sockets, pid_listening_on
from monitors.prometheus import MetricsScraper, parse_metrics
from monitors.resources import ResourceMonitor
from monitors.storage import SampleWriter, read_samples
from shapes.scenario import CONF_DIR
from tests.e2e.conftest import ROOT, Run, free_port, run_locust

FIXTURE = Path(__file__).parent / "fixtures" / "prom_client_node.txt"
SESSION_KIB = 2048
# The endurance scenario (24 h) compressed to 35 s: the leak window becomes 20 s.
ENDURANCE_S = 35.0
ENDURANCE_SCALE = ENDURANCE_S / 86_400
LEAK_KIB_PER_MESSAGE = 20  # about 10 messages/s in that run: about 12 MB/min when on
BUSY = "while True: pass"


def gateway_rows(report_dir: Path) -> list[dict[str, Any]]:
    return [r for r in read_samples(report_dir / "samples.csv") if r["source"] == "gateway"]


def least_squares_slope(points: list[tuple[float, float]]) -> float:
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    sxx = sum((x - mean_x) ** 2 for x, _ in points)
    sxy = sum((x - mean_x) * (y - mean_y) for x, y in points)
    return sxy / sxx


def check_run(run: Run, exit_code: int = 0) -> None:
    assert run.returncode == exit_code, run.explain()
    assert "Traceback" not in run.stderr, run.explain()
    assert run.summary, f"no summary.json in {run.report_dir}; " + run.explain()


# --- 1. memory per session --------------------------------------------------------------------


def test_memory_per_session_is_found(start_gateway, tmp_path: Path) -> None:
    gateway = start_gateway(
        "--session-memory-kib", str(SESSION_KIB), "--session-idle-expiry-s", "0"
    )  # fmt: skip
    run = run_locust(
        "sessions", tmp_path / "run", "--target-pid", str(gateway.pid),
        time_scale=0.03, host=gateway.url, timeout=90,
    )  # fmt: skip
    check_run(run)
    points = [
        (row["sessions_active"], row["rss_mb"])
        for row in gateway_rows(run.report_dir)
        if "sessions_active" in row and "rss_mb" in row
    ]
    sessions = sorted({x for x, _ in points})
    assert len(sessions) >= 4 and sessions[-1] - sessions[0] >= 100, points
    per_session_kib = least_squares_slope(points) * 1024
    (s0, r0), (s1, r1) = points[0], points[-1]
    growth_kib = (r1 - r0) * 1024 / (s1 - s0)
    print(
        f"\nmemory per session: slope {per_session_kib:.0f} KiB, growth/sessions "
        f"{growth_kib:.0f} KiB (configured {SESSION_KIB} KiB, {len(points)} samples, "
        f"{s0:.0f}-{s1:.0f} sessions)"
    )
    assert abs(per_session_kib - SESSION_KIB) <= 0.15 * SESSION_KIB, points
    assert abs(growth_kib - SESSION_KIB) <= 0.15 * SESSION_KIB, points
    figures = run.summary["resources"]["figures"]
    assert figures["sessions_active"]["peak"] >= s1
    assert figures["rss_mb"]["peak"] >= r1
    # Children looked for by default; the reference gateway has none: its memory is its RSS.
    counted = run.summary["resources"]["process_tree"]
    assert counted["children"] and counted["most_processes"] == 1, counted
    assert counted["memory"] == "rss_mb" and list(counted["names_at_most"].values()) == [1]


# --- 2. the live leak alert -------------------------------------------------------------------


def endurance_against(leak_kib: float, report_dir: Path) -> tuple[Run, list[dict[str, Any]]]:
    args = ["--leak-kib-per-message", str(leak_kib), "--rate-limit", "0"]
    with GatewayProcess(args) as gateway:
        run = run_locust(
            "endurance", report_dir, "--target-pid", str(gateway.pid),
            time_scale=ENDURANCE_SCALE, host=gateway.url, timeout=ENDURANCE_S + 60,
        )  # fmt: skip
    return run, gateway_rows(report_dir) if (report_dir / "samples.csv").is_file() else []


@pytest.fixture(scope="module")
def endurance_runs(tmp_path_factory) -> dict[str, tuple[Run, list[dict[str, Any]]]]:
    """The same compressed endurance run against a leaking and a sound gateway, side by side
    (memory is what is measured, not speed: sharing the machine does not change it)."""
    folder = tmp_path_factory.mktemp("endurance")
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        on = pool.submit(endurance_against, LEAK_KIB_PER_MESSAGE, folder / "leak-on")
        off = pool.submit(endurance_against, 0, folder / "leak-off")
        return {"on": on.result(), "off": off.result()}


def rss_slope_mb_per_min(rows: list[dict[str, Any]]) -> tuple[float, float, float]:
    slope, low, high = theil_sen([(r["t"], r["rss_mb"]) for r in rows if "rss_mb" in r])
    return slope * 60, low * 60, high * 60


@pytest.mark.slow
def test_leak_alert_fires_when_memory_leaks(endurance_runs) -> None:
    run, rows = endurance_runs["on"]
    check_run(run, exit_code=1)  # the report's verdict: Failed, for the leak
    resources = run.summary["resources"]
    assert resources["alert_rules"]["leak_window_s"] == pytest.approx(20.0)
    assert resources["alert_rules"]["leak_mb_per_min"] == pytest.approx(1.0)
    leaks = [a for a in resources["alerts"] if a["kind"] == "possible_leak"]
    assert leaks, resources
    assert "alert: memory growing" in run.stderr, run.explain()
    assert leaks[0]["t"] < ENDURANCE_S, leaks  # early warning: during the run, not after
    assert run.summary["messages"]["accepted"] > 0
    slope, low, high = rss_slope_mb_per_min(rows)
    print(f"\nleak on: RSS {slope:.2f} MB/min (95 % {low:.2f}-{high:.2f}); alert {leaks[0]}")
    assert low > 1.0


@pytest.mark.slow
def test_report_fails_a_leaking_gateway_and_clears_a_sound_one(endurance_runs) -> None:
    """The whole-run leak analysis (not the live alert): Failed naming the leak when the gateway
    retains memory per message, and no leak found (and Approved) when it does not."""
    on, _ = endurance_runs["on"]
    assert on.verdict == "failed", on.report["verdict"]
    assert on.reasons() == ["memory leak"], on.report["verdict"]
    leak = on.report["analysis"]["leak"]
    assert leak["detected"] and leak["low_mb_per_hour"] > leak["threshold_mb_per_hour"], leak
    assert any(f["kind"] == "memory_leak" for f in on.report["bottlenecks"])
    assert "verdict: FAILED: memory leak detected" in on.stderr

    off, _ = endurance_runs["off"]
    leak = off.report["analysis"]["leak"]
    assert leak["judged"] and not leak["detected"], leak
    assert off.verdict == "approved", off.report["verdict"]
    assert not any(f["kind"] == "memory_leak" for f in off.report["bottlenecks"])
    print(
        f"\nreport: leak on {on.report['analysis']['leak']['mb_per_hour']:+.1f} MB/h, "
        f"off {leak['mb_per_hour']:+.1f} MB/h (95 % {leak['low_mb_per_hour']:+.1f} to "
        f"{leak['high_mb_per_hour']:+.1f}; threshold {leak['threshold_mb_per_hour']:g})"
    )


@pytest.mark.slow
def test_no_leak_alert_without_leak(endurance_runs) -> None:
    run, rows = endurance_runs["off"]
    check_run(run)
    resources = run.summary["resources"]
    assert not [a for a in resources["alerts"] if a["kind"] == "possible_leak"], resources
    assert "alert: memory growing" not in run.stderr
    assert run.summary["messages"]["accepted"] > 0
    assert len(rows) >= ENDURANCE_S * 0.8
    slope, low, high = rss_slope_mb_per_min(rows)
    print(f"\nleak off: RSS {slope:.2f} MB/min (95 % {low:.2f}-{high:.2f})")
    assert slope < 1.0


# --- 3. Prometheus from a Node.js (prom-client) gateway ---------------------------------------


def test_prom_client_exposition_is_parsed() -> None:
    values = parse_metrics(FIXTURE.read_text())
    assert values == {
        "target_rss_mb": 232.0,  # process_resident_memory_bytes 243269632
        "heap_used_mb": 100.0,  # nodejs_heap_size_used_bytes 104857600
        "heap_total_mb": 136.0,  # nodejs_heap_size_total_bytes 142606336
        "eventloop_lag_ms": pytest.approx(4.187),  # nodejs_eventloop_lag_seconds 0.004187339
        "eventloop_lag_p99_ms": pytest.approx(23.609),  # ..._p99_seconds 0.023609343
    }


def test_a_gateways_limits_and_cache_sizes_are_read() -> None:
    """The session cap and queue capacity as figures of their own; each cache of
    `gateway_cache_entries` as `cache_<name>_entries`, whatever its name (a label value
    that is not a plain name is skipped, not put in a column's name)."""
    text = (
        "# TYPE gateway_sessions_limit gauge\ngateway_sessions_limit 5000\n"
        "# TYPE gateway_queue_capacity gauge\ngateway_queue_capacity 10000\n"
        "# TYPE gateway_cache_entries gauge\n"
        'gateway_cache_entries{cache="webhook_ids"} 1234\n'
        'gateway_cache_entries{cache="contacts"} 7\n'
        'gateway_cache_entries{cache="a b,c"} 9\n'
    )
    assert parse_metrics(text) == {
        "sessions_limit": 5000.0,
        "queue_capacity": 10000.0,
        "cache_webhook_ids_entries": 1234.0,
        "cache_contacts_entries": 7.0,
    }


def test_only_the_metrics_read_are_parsed() -> None:
    """Lines of other metrics are dropped before the (slow) parser: names that merely share a
    prefix do not match, and an odd line elsewhere does not spoil the scrape."""
    text = FIXTURE.read_text() + (
        "# TYPE nodejs_heap_size_used_bytes_max gauge\n"
        "nodejs_heap_size_used_bytes_max 1e12\n"
        "my_app_weird_line{ 1\n"
        "\n"
    )
    assert parse_metrics(text) == parse_metrics(FIXTURE.read_text())
    assert parse_metrics("gateway_queue_depth\t3\n") == {"queue_depth": 3.0}


class _Exporter(BaseHTTPRequestHandler):
    body = FIXTURE.read_bytes()
    hits: list[str] = []

    def do_GET(self) -> None:
        self.hits.append(self.path)
        if self.path == "/metrics":
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.send_header("Content-Length", str(len(self.body)))
            self.end_headers()
            self.wfile.write(self.body)
        else:
            self.send_error(404)

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def exporter() -> Iterator[str]:
    """The fixture served like a Node.js app's /metrics, on a loopback port."""
    _Exporter.hits = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Exporter)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_scraper_reads_a_node_exporter(exporter: str) -> None:
    scraper = MetricsScraper(exporter + "/metrics")
    try:
        sample = scraper.sample()
        assert sample == parse_metrics(FIXTURE.read_text())
        assert sample["heap_used_mb"] == 100.0 and sample["heap_total_mb"] == 136.0
        assert scraper.available
    finally:
        scraper.close()


def test_scraper_skips_a_missing_endpoint_with_a_note(exporter: str) -> None:
    monitor = ResourceMonitor(pid=None, metrics_url=exporter + "/nothing-here")
    assert monitor.sample() == {}
    assert monitor.scraper is None  # gone: no longer one of the monitor's sources
    assert len(monitor.notes) == 1 and "404" in monitor.notes[0], monitor.notes
    assert monitor.sample() == {}  # skipped from now on: no second request
    assert _Exporter.hits == ["/nothing-here"]
    assert monitor.summary()["notes"] == monitor.notes


def test_scraper_notes_an_unreachable_endpoint() -> None:
    monitor = ResourceMonitor(pid=None, metrics_url=f"http://127.0.0.1:{free_port()}/metrics")
    assert monitor.sample() == {}
    assert monitor.notes == ["metrics endpoint unreachable: ConnectError"]
    assert monitor.scraper is not None and monitor.scraper.available  # it may come up later


# --- the sampler against a real gateway, in-process -------------------------------------------


def test_resource_monitor_samples_a_gateway(gateway: GatewayProcess, tmp_path: Path) -> None:
    assert pid_listening_on(int(gateway.url.rsplit(":", 1)[1])) == gateway.pid
    monitor = ResourceMonitor(pid=gateway.pid, metrics_url=gateway.url + "/metrics")
    monitor.start(tmp_path / "samples.csv")
    try:
        gevent.sleep(2.5)  # the sampling loop is a greenlet: three ticks at 1 Hz
    finally:
        monitor.stop()
    rows = read_samples(tmp_path / "samples.csv")
    assert len(rows) == 3, rows
    assert {r["source"] for r in rows} == {"gateway"}
    assert all(r["rss_mb"] > 10 and r["sessions_active"] >= 0 for r in rows)
    assert "cpu_pct" in rows[-1] and "queue_depth" in rows[-1]
    summary = monitor.summary()
    assert summary["figures"]["rss_mb"]["samples"] == 3
    assert summary["alerts"] == [] and summary["notes"] == []


# --- 4. master and two workers: tests/e2e/test_distributed.py (the generators' samples) -----


# --- 5. units: alerts -------------------------------------------------------------------------


def test_theil_sen_on_a_clean_line() -> None:
    slope, low, high = theil_sen([(x, 3 * x + 2) for x in range(20)])
    assert (slope, low, high) == (3, 3, 3)
    assert theil_sen([(1, 5)]) == (0.0, 0.0, 0.0)
    assert theil_sen([(1, 5), (1, 7)]) == (0.0, 0.0, 0.0)  # no two distinct x: no slope


def test_theil_sen_interval_spans_zero_on_noise_without_trend() -> None:
    rng = random.Random(7)
    trials = [theil_sen([(float(x), 100 + rng.gauss(0, 2)) for x in range(60)]) for _ in range(400)]
    assert all(low <= slope <= high for slope, low, high in trials)
    spans_zero = sum(low < 0 < high for _, low, high in trials)
    leak_like = sum(low > 0 for _, low, _ in trials)  # what the leak alert would act on
    # A 95 % interval: about 5 % of trendless series exclude zero, half of them above it.
    assert spans_zero >= 0.9 * len(trials), spans_zero
    assert leak_like <= 0.05 * len(trials), leak_like


def test_theil_sen_finds_a_slow_leak_in_noise() -> None:
    rng = random.Random(11)
    # 1.2 MB/min (0.02 MB/s) under 0.5 MB of noise, 2 minutes at 1 Hz, with two spikes.
    points = [(float(x), 100 + 0.02 * x + rng.gauss(0, 0.5)) for x in range(120)]
    points[30] = (30.0, 180.0)
    points[90] = (90.0, 20.0)
    slope, low, high = theil_sen(points)
    assert low > 0
    assert low <= 0.02 <= high
    assert slope == pytest.approx(0.02, abs=0.006)


def test_leak_alert_fires_once_on_growth_not_on_noise() -> None:
    rules = AlertRules(leak_mb_per_min=1.0, leak_window_s=60.0)
    rng = random.Random(3)
    flat, leaking = AlertWatch(rules), AlertWatch(rules)
    fired_at = []
    for t in range(300):
        assert not flat.check(t, {"rss_mb": 80 + rng.gauss(0, 0.3)}), t
        for alert in leaking.check(t, {"rss_mb": 80 + t * 3 / 60 + rng.gauss(0, 0.3)}):
            fired_at.append((t, alert.kind))
    assert fired_at == [(48, "possible_leak")]  # as soon as the window spans 80 % of 60 s
    assert "MB/min" in leaking.fired[0].message


def test_the_alerts_follow_a_trees_pss_from_its_first_child_on() -> None:
    """A gateway alone, then with a browser per session: its RSS summed over the tree would
    jump and climb (shared pages counted in each process), its PSS holds still. The alerts
    judge the PSS from the first child on, the leak window started again there."""
    watch = AlertWatch(AlertRules(memory_mb=500.0, leak_mb_per_min=1.0, leak_window_s=60.0))
    for t in range(30):
        watch.check(t, {"rss_mb": 100.0, "pss_mb": 70.0, "processes": 1})
    assert [t for t, _ in watch.memory] == list(range(30))  # RSS, the process alone
    for t in range(30, 200):
        tree = {"rss_mb": 300.0 + 5 * t, "pss_mb": 150.0, "processes": 6}
        assert not watch.check(t, tree), t  # no high memory, no leak: the PSS is flat
        if t == 30:
            assert list(watch.memory) == [(30, 150.0)]  # RSS and PSS do not join


def test_a_long_leak_window_stays_cheap_and_still_sees_a_leak() -> None:
    """The plan's 24 h run gets a 600 s window: Theil-Sen on 600 points would cost ~70 ms a
    second; thinned to LEAK_MAX_POINTS it must stay in the low milliseconds."""
    assert thinned([(0.0, 0.0), (1.0, 2.0)], 5) == [(0.0, 0.0), (1.0, 2.0)]
    assert thinned([(float(i), float(i)) for i in range(10)], 3) == [
        (1.0, 1.0), (4.5, 4.5), (8.0, 8.0),
    ]  # fmt: skip
    rules = AlertRules(leak_mb_per_min=1.0, leak_window_s=600.0)
    rng = random.Random(5)
    watch = AlertWatch(rules)
    fired, spent = [], []
    for t in range(900):
        started = time.process_time()
        alerts = watch.check(t, {"rss_mb": 200 + 1.5 * t / 60 + rng.gauss(0, 1.0)})
        spent.append(time.process_time() - started)
        fired += [(t, a.kind) for a in alerts]
    assert fired == [(480, "possible_leak")]
    assert len(watch.memory) == 601 and LEAK_MAX_POINTS < 601
    assert sum(spent[480:]) / len(spent[480:]) < 0.01  # seconds per check, full window


def test_high_cpu_needs_sustained_samples_and_fires_once_per_episode() -> None:
    watch = AlertWatch(AlertRules(cpu_pct=80, sustain_samples=5))
    cpu = [90] * 4 + [50] + [95] * 8 + [10] + [85] * 5
    fired = [t for t, value in enumerate(cpu) for _ in watch.check(t, {"cpu_pct_total": value})]
    assert fired == [9, 18]  # the 5th high sample in a row, once each episode
    assert [a.kind for a in watch.fired] == ["high_cpu", "high_cpu"]
    assert "for 5 samples" in watch.fired[0].message


def test_high_memory_prefers_the_heap() -> None:
    watch = AlertWatch(AlertRules(memory_mb=1024, leak_window_s=600))
    assert not watch.check(0, {"rss_mb": 2000, "heap_used_mb": 500})  # the heap is what counts
    assert [a.kind for a in watch.check(1, {"rss_mb": 900})] == []
    assert [a.kind for a in watch.check(2, {"rss_mb": 1100})] == ["high_memory"]
    assert watch.check(3, {"rss_mb": 1200}) == []


def test_alert_rules_come_from_the_criteria_file(tmp_path: Path) -> None:
    rules = load_alert_rules(CONF_DIR / "criteria.yaml", duration_s=43.2)
    assert (rules.memory_mb, rules.cpu_pct, rules.leak_mb_per_min) == (1024, 80, 1.0)
    assert rules.leak_window_s == 20.0
    assert load_alert_rules(CONF_DIR / "criteria.yaml", 24 * 3600).leak_window_s == 600.0
    assert load_alert_rules(CONF_DIR / "criteria.yaml", 360).leak_window_s == 90.0
    assert load_alert_rules(CONF_DIR / "criteria.yaml", None).leak_window_s == 120.0
    assert leak_window_for(0) == AlertRules.leak_window_s
    own = tmp_path / "criteria.yaml"
    own.write_text("criteria: []\nalerts: {cpu_pct: 60, leak_window_s: 45, sustain_samples: 3}\n")
    rules = load_alert_rules(own, duration_s=7200)
    assert (rules.cpu_pct, rules.leak_window_s, rules.sustain_samples) == (60, 45, 3)
    assert load_alert_rules(tmp_path / "absent.yaml") == AlertRules()
    own.write_text("alerts: {cpu: 60}\n")
    with pytest.raises(ValueError, match=r"alerts\.cpu: unknown"):
        load_alert_rules(own)
    own.write_text("alerts: {cpu_pct: high}\n")
    with pytest.raises(ValueError, match="positive number"):
        load_alert_rules(own)


# --- 5. units: process sampler ----------------------------------------------------------------


@pytest.fixture
def spawn() -> Iterator[Callable[[str], subprocess.Popen[bytes]]]:
    """Python processes running `code`, each in its own group; all killed at the end."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(code: str) -> subprocess.Popen[bytes]:
        procs.append(subprocess.Popen([sys.executable, "-c", code], start_new_session=True))
        return procs[-1]

    yield start
    for proc in procs:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def cpu_over(sampler: ProcessSampler, seconds: float) -> dict[str, Any]:
    sampler.sample()
    time.sleep(seconds)
    return sampler.sample()


@pytest.mark.exclusive
def test_cpu_of_a_busy_process_is_one_core(spawn) -> None:
    proc = spawn(BUSY)
    sampler = ProcessSampler(proc.pid)
    assert "cpu_pct" not in sampler.sample()  # the first sample has no CPU-time delta yet
    sample = cpu_over(sampler, 1.5)
    assert sample["rss_mb"] > 1 and sample["threads"] >= 1
    cores = psutil.cpu_count() or 1
    assert 70 <= sample["cpu_pct"] <= 105, sample
    assert sample["cpu_pct_total"] == pytest.approx(sample["cpu_pct"] / cores, abs=0.02)


@pytest.mark.exclusive
def test_children_count_unless_told_not_to(spawn) -> None:
    parent = spawn(
        "import subprocess, sys; subprocess.run([sys.executable, '-c', 'while True: pass'])"
    )
    deadline = time.monotonic() + 10
    while not psutil.Process(parent.pid).children() and time.monotonic() < deadline:
        time.sleep(0.05)
    alone = ProcessSampler(parent.pid, include_children=False)
    family = ProcessSampler(parent.pid)
    alone.sample()
    family.sample()
    time.sleep(1.5)
    alone_cpu, family_cpu = alone.sample()["cpu_pct"], family.sample()["cpu_pct"]
    assert alone_cpu < 20 and 70 <= family_cpu <= 105, (alone_cpu, family_cpu)


def test_a_sample_pauses_between_its_reads_and_reads_the_same(gateway: GatewayProcess) -> None:
    pauses: list[dict] = []
    sampler = ProcessSampler(gateway.pid, False, pause=lambda: pauses.append({}))
    plain = ProcessSampler(gateway.pid, False)
    paused, whole = sampler.sample(), plain.sample()
    # After finding the processes, then for each: stat and status, memory, descriptors, io.
    assert len(pauses) == 5
    assert paused.keys() == whole.keys()
    assert paused["threads"] == whole["threads"] and paused["connections"] == whole["connections"]
    pauses.clear()
    ProcessSampler(gateway.pid, pause=lambda: pauses.append({})).sample()
    assert len(pauses) > 5  # and within the pass over /proc that finds the children


def test_connections_are_counted_as_psutil_counts_them(gateway: GatewayProcess) -> None:
    port = int(gateway.url.rsplit(":", 1)[1])
    clients = []
    try:
        for _ in range(20):
            client = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            client.request("GET", "/health")
            client.getresponse().read()
            clients.append(client)
        process = psutil.Process(gateway.pid)
        expected = len(process.net_connections(kind="inet"))
        assert expected >= 21  # ours and its listening socket
        assert inet_sockets(process) == expected
        assert ProcessSampler(gateway.pid).sample()["connections"] == expected
    finally:
        for client in clients:
            client.close()


def test_a_vanished_process_is_a_note(spawn) -> None:
    proc = spawn(BUSY)
    monitor = ResourceMonitor(pid=proc.pid, metrics_url=None)
    assert "rss_mb" in monitor.sample()
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)
    assert monitor.sample() == {}
    assert monitor.notes == ["the gateway's process is gone"] and monitor.process is None
    assert ResourceMonitor(pid=proc.pid, metrics_url=None).notes == [
        f"cannot sample process {proc.pid}: NoSuchProcess"
    ]


# --- 5. units: storage ------------------------------------------------------------------------


def test_samples_round_trip_with_an_extra_column(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "samples.csv"
    writer = SampleWriter(path, ["rss_mb", "cpu_pct"])
    writer.write(0.5, "gateway", {"rss_mb": 51.25, "cpu_pct": 3})
    writer.write(1.0, "generator:w1", {"cpu_pct": 12.5, "heap_mb": 7, "label": "a,b"})
    writer.close()
    writer.write(2.0, "gateway", {"rss_mb": 1})  # after close: ignored, no error
    lines = path.read_text().splitlines()
    assert lines[0] == "t,time,source,rss_mb,cpu_pct,extra"
    rows = read_samples(path)
    assert len(rows) == 2
    assert rows[0]["t"] == 0.5 and rows[0]["source"] == "gateway"
    assert rows[0]["rss_mb"] == 51.25 and rows[0]["cpu_pct"] == 3.0
    assert rows[1] == {
        "t": 1.0, "time": rows[1]["time"], "source": "generator:w1",
        "cpu_pct": 12.5, "heap_mb": 7, "label": "a,b",
    }  # fmt: skip
    assert "rss_mb" not in rows[1]  # an absent field stays absent, not zero
    assert rows[0]["time"].endswith("+00:00") and rows[0]["time"] <= rows[1]["time"]


def test_samples_survive_a_killed_writer(tmp_path: Path) -> None:
    path = tmp_path / "samples.csv"
    code = (
        "import sys, time; from pathlib import Path; from monitors.storage import SampleWriter\n"
        f"w = SampleWriter(Path({str(path)!r}), ['rss_mb'])\n"
        "for i in range(3): w.write(i, 'gateway', {'rss_mb': i})\n"
        "print('written', flush=True); time.sleep(60)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "written"
    finally:
        proc.kill()
        proc.wait(10)
    assert [r["rss_mb"] for r in read_samples(path)] == [0.0, 1.0, 2.0]


def test_leak_alert_ignores_memory_that_follows_the_load():
    """Memory growing while users ramp up is load, not a leak; the same growth at a steady
    load is one."""
    rules = AlertRules(leak_mb_per_min=1.0, leak_window_s=60.0)
    ramping, steady = AlertWatch(rules), AlertWatch(rules)
    for t in range(120):
        rss = 100.0 + 0.1 * t  # 6 MB/min
        ramping.check(float(t), {"rss_mb": rss, "users": 10 + 5 * t, "sessions_active": 0})
        steady.check(float(t), {"rss_mb": rss, "users": 500, "sessions_active": 0})
    assert [a.kind for a in ramping.fired] == []
    assert [a.kind for a in steady.fired] == ["possible_leak"]


def test_leak_alert_waits_for_every_figure_that_holds_memory():
    """The live alert explains memory by what the report's leak analysis explains it by:
    memory that follows a growing queue (sessions and users steady, as at a gateway's session
    cap in `make stress`) is no alert; the same growth with the queue steady is one."""
    rules = AlertRules(leak_mb_per_min=1.0, leak_window_s=60.0)
    queue_grows, all_steady = AlertWatch(rules), AlertWatch(rules)
    for t in range(120):
        sample = {"rss_mb": 100.0 + 0.4 * t, "users": 200, "sessions_active": 5000}
        queue_grows.check(float(t), {**sample, "queue_depth": 20 * t})
        all_steady.check(float(t), {**sample, "queue_depth": 40})
    assert [a.kind for a in queue_grows.fired] == []
    assert [a.kind for a in all_steady.fired] == ["possible_leak"]


def test_a_run_leaves_the_leak_alert_to_the_report():
    """During a load run the monitor does not judge leaks (`watch_leak=False`): the live view
    raises the report's own leak analysis as the alert (suite.live_run)."""
    watch = AlertWatch(AlertRules(leak_mb_per_min=1.0, leak_window_s=60.0), watch_leak=False)
    for t in range(120):
        watch.check(float(t), {"rss_mb": 100.0 + t, "users": 500, "sessions_active": 0})
    assert watch.fired == []
