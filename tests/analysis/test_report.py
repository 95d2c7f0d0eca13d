"""The report of a run: report.json, .md and .html, in English and pt-BR, and its CLI."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from analysis.render import charts, number
from analysis.report import main, write_report
from analysis.run_data import load_run
from analysis.timeline import Windows
from monitors.process import TIMES
from tests.analysis.synthetic import T0, make_summary, stage_dicts, write_run

ROOT = Path(__file__).resolve().parents[2]
DURATION_S = 60


def synthetic_run(
    folder: Path,
    *,
    failure_every: int = 0,
    requests_per_s: float | None = 1234.5,
    extra: dict[str, Any] | None = None,
    scenario: str = "stress",
) -> Path:
    """A 60-s stress run: three 20-s stages of 10, 20 and 30 webhooks a second, 20-40 ms each;
    `failure_every`: every n-th request fails. The gateway's samples: memory that follows the
    live sessions (0.5 MB each, no leak), up to 150 sessions, CPU under 60 %."""
    rng = np.random.default_rng(51)
    windows = Windows(1.0)
    latencies: list[float] = []
    failures = 0
    for second in range(DURATION_S):
        rate = 10 * (second // 20 + 1)
        for k in range(rate):
            latency = float(rng.uniform(20.0, 40.0))
            failed = bool(failure_every) and len(latencies) % failure_every == 0
            windows.record(T0 + second + k / rate, latency, failed)
            latencies.append(latency)
            failures += failed
    t = np.arange(0.0, DURATION_S + 1)
    sessions = np.minimum(150.0, 3.0 * t)
    samples = [
        {
            "unix": T0 + second,
            "source": "gateway",
            # Little noise: more, over 54 s of a ramp, leaves the leak "not enough steady load".
            "rss_mb": round(150.0 + 0.5 * s + float(rng.normal(0.0, 0.05)), 3),
            "cpu_pct": round(30.0 + 0.15 * s, 2),
            "sessions_active": s,
            "queue_depth": float(second % 3),
            "users": s,
        }
        for second, s in zip(t, sessions, strict=True)
    ]
    samples += [{"unix": T0 + 10.5, "source": "generator:local", "cpu_pct": 40.0}]
    summary = make_summary(
        scenario=scenario,
        duration_s=float(DURATION_S),
        requests={"POST /api/webhook": (latencies, failures)} if latencies else {},
        requests_per_s=requests_per_s,
        errors=[
            {"method": "POST", "name": "/api/webhook", "error": "HTTP 500", "occurrences": failures}
        ]
        if failures
        else [],
        peak_users=150,
    )
    stages = stage_dicts(T0, [20, 20, 20], [10, 20, 30])
    return write_run(folder, summary, windows, stages, samples, extra)


def empty_run(folder: Path) -> Path:
    summary = make_summary(duration_s=30.0, requests={}, requests_per_s=None)
    return write_run(folder, summary, Windows(0.5))


@pytest.fixture(scope="module")
def approved(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    folder = synthetic_run(tmp_path_factory.mktemp("approved") / "run")
    return folder, write_report(folder)


# --- the model and its files ---------------------------------------------------------------


def test_write_report_writes_the_three_files(approved: tuple[Path, dict[str, Any]]) -> None:
    folder, model = approved
    assert {p.name for p in folder.iterdir()} >= {"report.json", "report.md", "report.html"}
    assert not list(folder.glob("*.partial"))
    saved = json.loads((folder / "report.json").read_text(encoding="utf-8"))
    assert saved["verdict"] == {"status": "approved", "exit_code": 0, "reasons": [], "failures": []}
    assert saved["verdict"] == model["verdict"]
    assert saved["lang"] == "en"
    assert saved["run"]["scenario"] == "stress"


def test_every_criterion_is_in_the_report_with_value_limit_and_status(
    approved: tuple[Path, dict[str, Any]],
) -> None:
    folder, _ = approved
    saved = json.loads((folder / "report.json").read_text(encoding="utf-8"))
    criteria = {j["name"]: j for j in saved["criteria"]}
    assert set(criteria) == {
        "error rate",
        "response time p99",
        "webhook p95",
        "session creation failures",
        "memory per session",
        "CPU per instance",
        "memory leak",
        "concurrent sessions",
    }
    assert saved["not_applicable"] == ["messages per second per session"]
    for judged in saved["criteria"]:
        assert {"value", "limit", "status"} <= set(judged)
    summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    expected = {
        "error rate": (0.0, 5.0, "pass"),
        "response time p99": (summary["totals"]["latency"]["p99_ms"], 5000.0, "pass"),
        "webhook p95": (
            summary["requests"]["POST /api/webhook"]["latency"]["p95_ms"],
            100.0,
            "pass",
        ),
        "session creation failures": (None, 10.0, "not measured"),
        "memory leak": (0.0, 0.0, "pass"),
        "concurrent sessions": (150.0, 100.0, "pass"),
    }
    for name, (value, limit, status) in expected.items():
        assert (criteria[name]["value"], criteria[name]["limit"], criteria[name]["status"]) == (
            value,
            limit,
            status,
        ), name
    assert criteria["memory per session"]["value"] == pytest.approx(0.5, abs=0.02)
    # CPU: 30 + 0.15 * sessions, at most 52.5 %, sustained over 10 s from 50 s on.
    assert criteria["CPU per instance"]["value"] == pytest.approx(52.5)
    assert saved["analysis"]["memory_per_session"]["estimated"] is True
    assert saved["analysis"]["leak"]["detected"] is False
    assert [s["requests"] for s in saved["stages"]] == [200, 400, 600]
    assert saved["run"]["peak_load"]["arrivals_per_s"] == 30.0
    assert saved["run"]["peak_load"]["requests_per_s"] == 30.0


def test_the_html_is_self_contained(approved: tuple[Path, dict[str, Any]]) -> None:
    folder, _ = approved
    html = (folder / "report.html").read_text(encoding="utf-8")
    assert html.startswith("<!doctype html>")
    external = re.compile(
        r"""<script[^>]*\bsrc\s*=|<link\b[^>]*\bhref\s*=\s*["']?https?://|"""
        r"""\b(?:src|href)\s*=\s*["']?(?:https?:)?//|url\(\s*["']?(?:https?:)?//|@import""",
        re.IGNORECASE,
    )
    assert external.findall(html) == []
    # Its charts are inline SVG, drawn from the run's data.
    charts = re.findall(r'data-chart="(\w+)"', html)
    assert charts == ["throughput", "latency", "load", "cpu", "memory", "queue"]
    assert html.count("<polyline") >= 10


def test_english_numbers_and_words(approved: tuple[Path, dict[str, Any]]) -> None:
    folder, _ = approved
    html = (folder / "report.html").read_text(encoding="utf-8")
    markdown = (folder / "report.md").read_text(encoding="utf-8")
    for text in (html, markdown):
        assert "Performance report: WhatsApp gateway" in text
        assert "1,234.5" in text  # the throughput
        assert "1.234,5" not in text
    assert "| Throughput (requests/s) | 1,234.5 |" in markdown
    assert "✅ Approved" in markdown


def test_brazilian_portuguese(tmp_path: Path) -> None:
    folder = synthetic_run(tmp_path / "run")
    model = write_report(folder, lang="pt-BR")
    assert model["lang"] == "pt-BR"
    html = (folder / "report.html").read_text(encoding="utf-8")
    markdown = (folder / "report.md").read_text(encoding="utf-8")
    assert '<html lang="pt-BR">' in html
    for text in (html, markdown):
        assert "Relatório" in text
        assert "1.234,5" in text  # decimal comma, dots between thousands
        assert "1,234.5" not in text
    assert re.search(r"\| [^|]+ \| 1\.234,5 \|", markdown)


@pytest.mark.parametrize(
    ("value", "english", "portuguese"),
    [
        (1234.5, "1,234.5", "1.234,5"),
        (1234.0, "1,234", "1.234"),
        (1_234_567, "1,234,567", "1.234.567"),
        (-9876.25, "-9,876.25", "-9.876,25"),
        (0.5, "0.5", "0,5"),
        (3.14159, "3.14", "3,14"),
        (5.0, "5", "5"),
        (12, "12", "12"),
        (99.999, "100", "100"),
        (None, "—", "—"),
    ],
)
def test_number(value: Any, english: str, portuguese: str) -> None:
    assert number(value) == english
    assert number(value, "en") == english
    assert number(value, "pt-BR") == portuguese


def test_number_with_fewer_digits() -> None:
    assert number(2.345, digits=1) == "2.3"
    assert number(10.04, digits=1) == "10"
    assert number(1234.56, "pt-BR", 1) == "1.234,6"


@pytest.mark.parametrize(("value", "shown"), [(100.4, "100"), (0.4, "0"), (250.2, "250")])
def test_number_with_no_decimals(value: float, shown: str) -> None:
    assert number(value, digits=0) == shown


# --- verdicts ------------------------------------------------------------------------------


def test_a_10_percent_error_rate_fails(tmp_path: Path) -> None:
    folder = synthetic_run(tmp_path / "run", failure_every=10)
    model = write_report(folder)
    verdict = model["verdict"]
    assert (verdict["status"], verdict["exit_code"], verdict["failures"]) == ("failed", 1, [])
    reasons = {r["name"]: r for r in verdict["reasons"]}
    assert "error rate" in reasons
    assert reasons["error rate"]["value"] == pytest.approx(10.0)
    assert reasons["error rate"]["status"] == "fail"
    assert all(r["status"] == "fail" for r in verdict["reasons"])
    # Every stage is over the limit, so the first stage already broke.
    breaking = model["analysis"]["breaking_point"]
    assert breaking["last_good_stage"] is None
    assert breaking["first_bad_stage"]["index"] == 0
    assert breaking["graceful"]["graceful"] is False
    assert "errors" in [f["kind"] for f in model["bottlenecks"]]
    markdown = (folder / "report.md").read_text(encoding="utf-8")
    assert "❌ Failed" in markdown
    assert "- error rate (overall): 10 %, ≤ 5 → ❌ fail" in markdown


def test_a_run_without_requests_fails(tmp_path: Path) -> None:
    folder = empty_run(tmp_path / "run")
    model = write_report(folder)
    verdict = model["verdict"]
    assert (verdict["status"], verdict["exit_code"]) == ("failed", 1)
    assert verdict["failures"] == ["no_requests"]
    assert verdict["reasons"] == []
    statuses = {j["name"]: j["status"] for j in model["criteria"]}
    assert statuses["error rate"] == "not measured"
    assert statuses["response time p99"] == "not measured"
    html = (folder / "report.html").read_text(encoding="utf-8")
    assert "No request was made: nothing to judge." in html


def test_an_aborted_run_fails(tmp_path: Path) -> None:
    aborted = {"criterion": "error rate", "metric": "error_rate_pct", "at_s": 12.5}
    folder = synthetic_run(tmp_path / "run", extra={"aborted": aborted})
    model = write_report(folder)
    assert model["verdict"]["status"] == "failed"
    assert model["verdict"]["failures"] == ["aborted"]
    html = (folder / "report.html").read_text(encoding="utf-8")
    assert "Aborted by criterion “error rate” at 12.5 s." in html


def test_the_runs_own_criteria_judge_it_unless_others_are_named(tmp_path: Path) -> None:
    folder = synthetic_run(tmp_path / "run")
    (folder / "criteria.yaml").write_text(
        "criteria:\n  - {name: tight p99, metric: p99_ms, max: 10, severity: degrade}\n",
        encoding="utf-8",
    )
    model = write_report(folder)
    assert (model["verdict"]["status"], model["verdict"]["exit_code"]) == ("degraded", 3)
    assert [r["name"] for r in model["verdict"]["reasons"]] == ["tight p99"]
    relaxed = tmp_path / "relaxed.yaml"
    relaxed.write_text("criteria:\n  - {name: p99, metric: p99_ms, max: 100}\n", encoding="utf-8")
    assert write_report(folder, relaxed)["verdict"]["status"] == "approved"


# --- the command line ----------------------------------------------------------------------


def test_cli_without_a_summary_is_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(tmp_path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: ") and str(tmp_path) in lines[0]
    assert "summary.json" in lines[0]


def test_cli_with_a_bad_criteria_file_is_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = synthetic_run(tmp_path / "run")
    bad = tmp_path / "bad.yaml"
    bad.write_text("criteria:\n  - {name: x, metric: p99_ms, max: 1, min: 0}\n", encoding="utf-8")
    assert main([str(folder), "--criteria", str(bad)]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {bad}: ")
    assert not (folder / "report.html").exists()


def test_cli_returns_the_verdicts_exit_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = synthetic_run(tmp_path / "good")
    assert main([str(good), "--lang", "pt-BR"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [f"APPROVED: {good / 'report.html'}"]
    assert "Relatório" in (good / "report.html").read_text(encoding="utf-8")

    failing = synthetic_run(tmp_path / "failing", failure_every=10)
    assert main([str(failing)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"FAILED: {failing / 'report.html'}"
    assert "  error rate (overall): 10.0 vs max 5.0" in out

    empty = empty_run(tmp_path / "empty")
    assert main([str(empty)]) == 1
    assert capsys.readouterr().out.splitlines()[1:] == ["  no_requests"]


def test_python_dash_m_analysis_report(tmp_path: Path) -> None:
    folder = synthetic_run(tmp_path / "run", failure_every=10)
    done = subprocess.run(
        [sys.executable, "-m", "analysis.report", str(folder), "--lang", "pt-BR"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert done.stdout.startswith("FAILED: ")
    assert json.loads((folder / "report.json").read_text(encoding="utf-8"))["lang"] == "pt-BR"


def test_a_generator_behind_its_timetable_is_named_as_the_limit(tmp_path: Path) -> None:
    folder = synthetic_run(tmp_path / "run")
    summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    summary["arrivals"] = {"due": 3600, "started": 3100, "dropped": 500, "dropped_late": 480}
    (folder / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    model = write_report(folder)
    finding = next(f for f in model["bottlenecks"] if f["kind"] == "generator_limited")
    assert finding["evidence"]["dropped_late"] == 480
    markdown = (folder / "report.md").read_text(encoding="utf-8")
    assert "500 of 3,600 arrivals dropped (480 of them because the generator was over a" in (
        markdown
    ), markdown


def test_rate_charts_are_drawn_over_whole_seconds(tmp_path: Path) -> None:
    """500 requests a second dealt unevenly over 0.2 s windows (150, 50, 150, 50, 100), and
    one second with none: the requests/s line is flat at 500 but for that second, at 0."""
    windows = Windows(0.2)
    for second in range(20):
        if second == 10:
            continue
        for fifth, count in enumerate((150, 50, 150, 50, 100)):
            for k in range(count):
                windows.record(T0 + second + 0.2 * fifth + 0.2 * k / count, 5.0, False)
    folder = write_run(tmp_path / "run", make_summary(duration_s=20.0), windows)
    throughput = charts(load_run(folder), T0, 20.0)[0]
    assert throughput.key == "throughput"
    requests = throughput.lines[0]
    points = [tuple(map(float, p.split(","))) for p in requests.points.split()]
    assert len(points) == 20  # one a second, the empty one too
    heights = sorted({y for _, y in points})
    assert len(heights) == 2, points  # 500/s, and 0 in second 10
    assert points[10][1] == max(heights)  # SVG's y grows downwards: the lowest point is 0


# --- which processes the memory figures are of ------------------------------------------------


def tree_run(folder: Path, names: dict[str, int], children: bool = True) -> Path:
    """A 30-s run of a gateway whose samples counted `names` (a browser per session, say)."""
    processes = sum(names.values())
    samples = [
        {
            "unix": T0 + second,
            "source": "gateway",
            "rss_mb": 120.0 * processes,  # shared pages counted in every process
            "pss_mb": 100.0 + 20.0 * (processes - 1),
            "processes": float(processes),
        }
        for second in range(31)
    ]
    summary = make_summary(duration_s=30.0, requests={}, requests_per_s=None)
    tree = {"children": children, "most_processes": processes, "names_at_most": names}
    summary["resources"] = {"figures": {}, "process_tree": tree, "alerts": [], "notes": []}
    return write_run(folder, summary, Windows(1.0), samples=samples)


def test_the_report_says_which_processes_its_memory_is_of(tmp_path: Path) -> None:
    folder = tree_run(tmp_path / "tree", {"node": 1, "chrome": 45})
    model = write_report(folder)
    assert model["gateway_memory"] == {
        "figure": "pss_mb",
        "processes": 46,
        "names": {"node": 1, "chrome": 45},
        "children_counted": True,
        "pss_unreadable": 0,
    }
    memory = next(row for row in model["resources"] if row["resource"] == "memory_mb")
    assert (memory["source"], memory["peak"]) == ("pss_mb", 1000.0)  # not 46 x 120 MB of RSS
    names = f"(node {TIMES}1, chrome {TIMES}45)"  # the multiplication sign
    said = f"Gateway memory: PSS of 46 processes {names}; PSS counts the pages"
    markdown = (folder / "report.md").read_text(encoding="utf-8")
    assert said in markdown and "| Memory PSS (MB) | 1,000 |" in markdown
    html = (folder / "report.html").read_text(encoding="utf-8")
    assert said in html and "<td>Memory PSS (MB)</td>" in html
    write_report(folder, lang="pt-BR")
    markdown = (folder / "report.md").read_text(encoding="utf-8")
    assert f"Memória do gateway: PSS de 46 processos {names}" in markdown


def test_a_process_alone_is_its_rss_and_children_off_is_said(tmp_path: Path) -> None:
    model = write_report(tree_run(tmp_path / "one", {"python": 1}))
    assert model["gateway_memory"]["figure"] == "rss_mb"
    markdown = (tmp_path / "one" / "report.md").read_text(encoding="utf-8")
    assert "Gateway memory: RSS of 1 process (python)." in markdown
    write_report(tree_run(tmp_path / "off", {"node": 1}, children=False))
    markdown = (tmp_path / "off" / "report.md").read_text(encoding="utf-8")
    assert "RSS of 1 process (node); child processes not counted (--no-monitor-children)." in (
        markdown
    )
