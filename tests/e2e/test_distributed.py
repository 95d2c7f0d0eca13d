"""Distributed runs on loopback: Locust's master and workers, as on several machines.

- a compressed `stress` (open model) and `webhooks` (closed model) with a master and two
  workers: the same report as a local run (every section, every stage), and the master's
  totals agree with the gateway's own counters to 1 % (the workers' histograms, windows and
  counters merged exactly);
- a worker killed mid-run (SIGKILL): the run completes, the report names the lost worker and
  when, and the arrival rate after the master noticed is the target's within 5 %;
- `--processes 2` (`make stress PROCESSES=2`, in tests/e2e/test_scenarios.py's `make stress`).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from analysis.run_data import load_run
from monitors.storage import read_samples
from shapes.scenario import CONF_DIR
from tests.e2e.conftest import GatewayCounts, Run, agrees, run_distributed

REPORT_SECTIONS = {
    "schema_version", "generated_at", "run", "verdict", "criteria", "not_applicable",
    "performance", "resources", "gateway_memory", "stages", "analysis", "bottlenecks", "node",
    "latency", "service", "requests", "arrivals", "resource_alerts", "notes", "lang",
}  # fmt: skip


def check_distributed(run: Run, gateway_url: str, stages: int) -> None:
    assert run.returncode == 0, run.explain()
    assert "Traceback" not in run.stderr, run.explain()
    assert run.summary["workers"] == 2
    assert set(run.report) == REPORT_SECTIONS, set(run.report) ^ REPORT_SECTIONS
    assert run.report["node"] is None  # no Node inspector given
    # The master sampled the gateway (one process, children looked for): its RSS.
    memory = run.report["gateway_memory"]
    assert (memory["figure"], memory["processes"], memory["children_counted"]) == (
        "rss_mb",
        1,
        True,
    )
    assert run.verdict == "approved", run.report["verdict"]
    assert len(run.report["stages"]) == stages
    assert (run.report_dir / "report.html").is_file()
    counts = GatewayCounts.of(gateway_url)
    totals, sessions = run.summary["totals"], run.summary["sessions"]
    # The workers' sessions are deleted after the load, unrecorded: the gateway saw those too.
    cleanup = (sessions["deleted"] or 0) + (sessions["delete_failed"] or 0)
    assert cleanup == (sessions["created"] or 0), sessions
    seen = counts.http_requests()
    assert agrees(totals["requests"] + cleanup, seen), (totals, cleanup, seen)
    # Per stage, from the merged windows: every request counted once, none lost in the merge.
    assert sum(s["requests"] for s in run.report["stages"]) == totals["requests"]
    assert run.report["run"]["workers_lost"] == []


@pytest.mark.exclusive  # approved: latency under the limits
@pytest.mark.slow  # ~15 s
def test_stress_with_a_master_and_two_workers(start_gateway, tmp_path):
    gateway = start_gateway()
    run = run_distributed("stress", 0.04, gateway.url, tmp_path / "run")
    check_distributed(run, gateway.url, stages=6)
    arrivals = run.summary["arrivals"]
    assert arrivals["due"] == arrivals["started"] == 1994 and arrivals["dropped"] == 0, arrivals
    assert run.summary["sessions"]["created"] == GatewayCounts.of(gateway.url).sessions_created


@pytest.mark.exclusive  # approved: webhook p95 under 100 ms
@pytest.mark.slow  # ~15 s
def test_webhooks_with_a_master_and_two_workers(start_gateway, tmp_path):
    gateway = start_gateway()
    run = run_distributed("webhooks", 0.03, gateway.url, tmp_path / "run")
    check_distributed(run, gateway.url, stages=3)
    # The master counts workers' users from their reports (each second or so), and the ramp
    # reaches 1000 in its last instant: what it saw is near, not at, the top.
    assert 800 <= run.summary["peak_users"] <= 1000, run.summary["peak_users"]
    # Each worker's generator (CPU, memory) sampled on the master, beside the gateway's.
    rows = read_samples(run.report_dir / "samples.csv")
    sources: dict[str, list[dict]] = {}
    for row in rows:
        sources.setdefault(row["source"], []).append(row)
    generators = {s for s in sources if s.startswith("generator:") and s != "generator:local"}
    assert len(generators) == 2, sorted(sources)
    for source in generators:
        assert len(sources[source]) >= 2, source  # one per stats report (every 3 s)
        assert all(r["rss_mb"] > 10 and r["cpu_pct"] >= 0 for r in sources[source])
    assert len(sources["gateway"]) >= 10
    assert set(run.summary["generators"]["peak_cpu_pct"]) == generators


@pytest.mark.slow  # ~25 s
def test_a_worker_lost_mid_run_is_reported_and_its_arrivals_dealt_again(
    start_gateway, tmp_path: Path
):
    rate, seconds = 100, 18
    scenario = yaml.safe_load((CONF_DIR / "scenarios" / "sessions.yaml").read_text())
    scenario["criteria"] = str(CONF_DIR / "criteria.yaml")
    scenario["load"]["phases"] = [{"duration": f"{seconds}s", "arrival_rate": rate}]
    path = tmp_path / "steady.yaml"
    path.write_text(yaml.safe_dump(scenario))
    gateway = start_gateway()
    run = run_distributed(
        str(path), None, gateway.url, tmp_path / "run", timeout=90, kill_one_after_s=8
    )
    assert run.returncode in (0, 1, 3), run.explain()  # judged, whatever the verdict
    assert "Traceback" not in run.stderr, run.explain()
    lost = run.report["run"]["workers_lost"]
    assert len(lost) == 1 and lost[0]["arrivals_dealt_again"], lost
    assert "lost at" in (run.report_dir / "report.md").read_text()
    # From a second after the master noticed to the end of the phase: the target rate.
    stage = run.report["stages"][0]
    noticed = stage["started"] + (lost[0]["at_s"] - stage["from_s"])
    width = run.report["analysis"]["window_s"]
    windows = load_run(run.report_dir).windows
    after = windows.between(noticed + 1.0, stage["started"] + seconds)
    span = len(after) * width
    assert span >= 4, (noticed, stage)
    measured = sum(w.requests for _, w in after) / span
    print(f"\nafter the loss at {lost[0]['at_s']} s: {measured:.1f} arrivals/s over {span:.1f} s")
    assert abs(measured - rate) <= 0.05 * rate, measured
