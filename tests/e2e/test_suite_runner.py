"""`make all` and `make compare`, end to end.

- `make all` with a small time scale runs the five scenarios in sequence, pausing between
  them, and writes `reports/suite-<ts>/summary.json` and `summary.md` linking each run's report;
  its exit code follows the worst verdict;
- `make compare` flags the latency regression of a gateway with its latency switch on against
  a healthy baseline, and flags nothing between two healthy runs.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from shapes.scenario import CONF_DIR
from tests.e2e.conftest import ROOT, Run, run_locust
from tests.e2e.test_web_ui import free_port

PLAN = ["sessions", "webhooks", "messages", "stress", "endurance"]


@pytest.mark.slow  # ~70 s
def test_make_all_runs_every_scenario_and_writes_the_suite_summary(tmp_path):
    if not shutil.which("make"):
        pytest.skip("no make on this machine")
    out = tmp_path / "suite"
    # make all, with its output folder given (the Makefile's target plus --out).
    result = subprocess.run(
        ["make", "--no-print-directory", "all", "TIME_SCALE=0.003", "PAUSE=1",
         "SCENARIO_TIMEOUT=120", f"ALL_ARGS=--out {out}"],
        cwd=ROOT, capture_output=True, text=True, timeout=400,
    )  # fmt: skip
    suite = json.loads((out / "summary.json").read_text())
    assert [r["scenario"] for r in suite["runs"]] == PLAN, result.stdout[-2000:]
    statuses = {r["status"] for r in suite["runs"]}
    assert statuses <= {"approved", "degraded"}, suite["runs"]
    for run in suite["runs"]:
        assert (out / run["report"]).is_file(), run
        assert run["requests"] and run["requests"] > 0, run
        assert not run["partial"], run
    assert suite["exit_code"] == (3 if "degraded" in statuses else 0)
    assert result.returncode == (0 if suite["exit_code"] == 0 else 2)  # make's code
    assert result.stdout.count("[suite] pause 1 s") == len(PLAN) - 1
    markdown = (out / "summary.md").read_text()
    assert all(f"[report]({name}/report.html)" in markdown for name in PLAN), markdown
    print("\n" + markdown)


def steady(tmp_path: Path) -> Path:
    """100 arrivals/s for 6 s on POST /api/sessions: 60 windows of 10 requests."""
    scenario = yaml.safe_load((CONF_DIR / "scenarios" / "sessions.yaml").read_text())
    scenario["criteria"] = str(CONF_DIR / "criteria.yaml")
    scenario["load"]["phases"] = [{"duration": "6s", "arrival_rate": 100}]
    path = tmp_path / "steady.yaml"
    path.write_text(yaml.safe_dump(scenario))
    return path


def compare(base: Run, run: Run) -> tuple[int, dict]:
    result = subprocess.run(
        [sys.executable, "-m", "analysis.compare", str(base.report_dir), str(run.report_dir)],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode in (0, 1), result.stderr
    return result.returncode, json.loads((run.report_dir / "compare.json").read_text())


def against_history(run: Run, last: int, history: str) -> tuple[int, dict]:
    """`make compare BASE=last:N RUN=...`: the run against the history's last N runs."""
    result = subprocess.run(
        [sys.executable, "-m", "history.baseline", str(run.report_dir), "--last", str(last),
         "--history-db", history],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode in (0, 1), result.stderr
    return result.returncode, json.loads((run.report_dir / "compare.json").read_text())


@pytest.mark.exclusive  # latency thresholds
@pytest.mark.slow  # ~35 s
def test_make_compare_flags_a_latency_regression_and_nothing_else(start_gateway, tmp_path):
    scenario = str(steady(tmp_path))
    history = f"sqlite:///{tmp_path / 'history.sqlite'}"
    port = free_port()  # every run on one target: the history compares runs of one target

    def one(name: str, *gateway_args: str) -> Run:
        gateway = start_gateway("--port", str(port), *gateway_args)
        run = run_locust(
            scenario, tmp_path / name, "--history-db", history, host=gateway.url, timeout=60
        )
        gateway.stop()
        assert run.returncode in (0, 3), run.explain()
        return run

    base, healthy, slow = one("base"), one("healthy"), one("slow", "--latency-ms", "20")
    code, same = compare(base, healthy)
    assert code == 0 and same["regressions"] == [], same["changes"]
    code, worse = compare(base, slow)
    assert code == 1, worse["changes"]
    assert "latency p50 (overall)" in worse["regressions"], worse["regressions"]
    assert all(r.startswith("latency") for r in worse["regressions"]), worse["regressions"]
    p50 = next(c for c in worse["changes"] if c["metric"] == "latency p50 (overall)")
    assert p50["run"] - p50["base"] >= 15 and p50["p_value"] < 0.01, p50
    assert "regression" in (slow.report_dir / "compare.md").read_text()

    # Against the rolling baseline of the history (the median of the runs before): the same.
    code, rolling = against_history(slow, 2, history)
    assert code == 1 and "latency p50 (overall)" in rolling["regressions"], rolling["changes"]
    assert rolling["base"] == "last:2"
    code, rolling = against_history(healthy, 7, history)  # only `base` came before it
    assert code == 0 and rolling["regressions"] == [], rolling["changes"]
    assert "median of the last 1 comparable runs" in (healthy.report_dir / "compare.md").read_text()
