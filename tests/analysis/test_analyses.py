"""The analyses of a run, on synthetic run folders whose truth is known by construction."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest
from locust.event import Events
from locust.exception import CatchResponseError
from locust.stats import RequestStats, setup_distributed_stats_event_listeners

from analysis.bottlenecks import find_bottlenecks, latency_with_queue, throttling
from analysis.breaking_point import breaking_point, graceful, judge_stages
from analysis.ceilings import onset
from analysis.criteria import AnalysisSettings, CriteriaFile, Criterion, judge, load_criteria
from analysis.latency import LatencyBook
from analysis.memory import leak, memory_basis, memory_per_session, memory_series
from analysis.metrics import RunMetrics, is_metric
from analysis.report import build_report, judge_run
from analysis.run_data import RunData, RunDataError, load_run
from analysis.summary import build_summary
from analysis.timeline import Windows
from tests.analysis.synthetic import T0, iso, make_summary, stage_dicts, write_run

ROOT = Path(__file__).resolve().parents[2]
CRITERIA = load_criteria(ROOT / "conf" / "criteria.yaml", is_metric)
SETTINGS = AnalysisSettings()


def gateway_rows(t: np.ndarray, start: float = T0, **columns: np.ndarray) -> list[dict[str, Any]]:
    rows = []
    for i, offset in enumerate(t):
        row: dict[str, Any] = {"unix": start + float(offset), "source": "gateway"}
        row.update({name: round(float(values[i]), 3) for name, values in columns.items()})
        rows.append(row)
    return rows


def in_memory(**columns: np.ndarray) -> RunData:
    """A run with gateway samples only (for analyses repeated many times)."""
    frame = pd.DataFrame(columns)
    return RunData(Path("."), {}, Windows(), [], frame, pd.DataFrame({"unix": []}))


def ols(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """Slope, intercept and the slope's standard error, from the normal equations."""
    design = np.column_stack([np.ones_like(x), x])
    beta, *_ = np.linalg.lstsq(design, y, rcond=None)
    residuals = y - design @ beta
    sigma2 = residuals @ residuals / (len(x) - 2)
    covariance = sigma2 * np.linalg.inv(design.T @ design)
    return float(beta[1]), float(beta[0]), float(np.sqrt(covariance[1, 1]))


# --- the run's files -----------------------------------------------------------------------


def test_load_run_reads_summary_timeline_and_samples(tmp_path: Path) -> None:
    windows = Windows(1.0)
    windows.record(T0 + 0.5, 12.0, False)
    windows.record(T0 + 1.5, 30.0, True)
    rows = gateway_rows(np.array([0.0, 1.0, 2.0]), rss_mb=np.array([100.0, 110.0, 120.5]))
    rows.insert(1, {"unix": T0 + 0.5, "source": "generator:local", "cpu_pct": 97.5})
    stages = stage_dicts(T0, [1.0, 1.0], [10, 20])
    summary = make_summary(duration_s=3.0, requests={"GET /health": ([12.0, 30.0], 1)})
    folder = write_run(
        tmp_path / "run", summary, windows, stages, rows, extra={"recovery": {"recovered": True}}
    )
    run = load_run(folder)
    assert run.scenario == "stress"
    assert run.span() == (T0, T0 + 3.0)
    assert [
        (i - int(T0), w.requests, w.failures) for i, w in sorted(run.windows.windows.items())
    ] == [
        (0, 1, 0),
        (1, 1, 1),
    ]
    assert run.stages == stages
    assert run.extra == {"recovery": {"recovered": True}}
    rss = run.column("rss_mb")
    assert list(rss.index) == [T0, T0 + 1.0, T0 + 2.0]  # wall-clock seconds, from `time`
    assert list(rss) == [100.0, 110.0, 120.5]
    assert list(run.generators["cpu_pct"]) == [97.5]
    assert run.column("queue_depth").empty


def test_a_folder_without_a_summary_is_not_a_run(tmp_path: Path) -> None:
    with pytest.raises(RunDataError, match=r"no summary\.json"):
        load_run(tmp_path)
    with pytest.raises(RunDataError, match="no such run folder"):
        load_run(tmp_path / "missing")
    (tmp_path / "summary.json").write_text('{"scenario": "str', encoding="utf-8")
    with pytest.raises(RunDataError, match="not valid JSON") as raised:
        load_run(tmp_path)
    assert str(raised.value).startswith(str(tmp_path / "summary.json"))


def test_a_timeline_cut_short_leaves_the_rest_of_the_run(tmp_path: Path) -> None:
    rows = gateway_rows(np.arange(3.0), rss_mb=np.array([1.0, 2.0, 3.0]))
    folder = write_run(tmp_path / "run", make_summary(scenario="sessions"), samples=rows)
    (folder / "timeline.json").write_text('{"windows": {"width_s": 1.0, "win', encoding="utf-8")
    run = load_run(folder)
    assert (run.scenario, run.stages, run.extra, bool(run.windows)) == ("sessions", [], {}, False)
    assert list(run.column("rss_mb")) == [1.0, 2.0, 3.0]


def test_a_cut_short_samples_file_keeps_its_complete_rows(tmp_path: Path) -> None:
    rows = gateway_rows(np.arange(5.0), rss_mb=np.arange(5.0) + 100)
    folder = write_run(tmp_path / "run", make_summary(), samples=rows)
    with (folder / "samples.csv").open("a", encoding="utf-8") as handle:
        handle.write("5.0,2026-09-21T14:1")  # killed mid-write
    assert list(load_run(folder).column("rss_mb")) == [100.0, 101.0, 102.0, 103.0, 104.0]


# --- memory per session --------------------------------------------------------------------


def test_memory_per_session_recovers_a_known_slope(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    t = np.arange(300.0)
    sessions = np.clip(np.cumsum(rng.integers(-3, 6, size=300)), 0, None).astype(float)
    rss = 100.0 + 2.0 * sessions + rng.normal(0.0, 4.0, size=300)
    rows = gateway_rows(t, rss_mb=rss, sessions_active=sessions)
    run = load_run(write_run(tmp_path / "run", make_summary(duration_s=300.0), samples=rows))

    estimate = memory_per_session(run, SETTINGS)
    assert estimate["estimated"]
    x, y = np.array([r["sessions_active"] for r in rows]), np.array([r["rss_mb"] for r in rows])
    slope, intercept, stderr = ols(x, y)
    assert estimate["mb"] == pytest.approx(slope, abs=1e-4)
    assert estimate["stderr_mb"] == pytest.approx(stderr, abs=1e-4)
    assert estimate["low_mb"] == pytest.approx(slope - 1.96 * stderr, abs=2e-4)
    assert estimate["high_mb"] == pytest.approx(slope + 1.96 * stderr, abs=2e-4)
    assert estimate["low_mb"] <= 2.0 <= estimate["high_mb"]  # the truth within the interval
    assert estimate["mb"] == pytest.approx(2.0, abs=0.05)
    assert estimate["baseline_mb"] == pytest.approx(intercept, abs=0.05)
    assert estimate["r2"] > 0.99
    assert estimate["samples"] == 300
    assert estimate["sessions_range"] == [float(sessions.min()), float(sessions.max())]
    assert estimate["memory_source"] == "rss_mb"

    value = RunMetrics(run, SETTINGS).value("memory_per_session_mb")
    assert (value.value, value.unit) == (estimate["mb"], "MB")
    assert value.note == f"± {1.96 * estimate['stderr_mb']:.3g} MB (95 %)"


def test_the_95_percent_interval_covers_the_truth_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(5)
    covered = 0
    trials = 400
    for _ in range(trials):
        sessions = rng.uniform(0, 100, size=60).round()
        rss = 300.0 + 1.5 * sessions + rng.normal(0.0, 10.0, size=60)
        run = in_memory(unix=T0 + np.arange(60.0), rss_mb=rss, sessions_active=sessions)
        estimate = memory_per_session(run, SETTINGS)
        covered += estimate["low_mb"] <= 1.5 <= estimate["high_mb"]
    assert 0.92 <= covered / trials <= 0.98


def test_memory_per_session_is_not_estimated_when_sessions_barely_vary(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    sessions = rng.integers(50, 61, size=120).astype(float)  # a spread of 10, under 20
    sessions[0], sessions[1] = 50, 60
    rss = 100.0 + 2.0 * sessions + rng.normal(0.0, 1.0, size=120)
    rows = gateway_rows(np.arange(120.0), rss_mb=rss, sessions_active=sessions)
    run = load_run(write_run(tmp_path / "run", make_summary(), samples=rows))
    estimate = memory_per_session(run, SETTINGS)
    assert not estimate["estimated"]
    assert "varied by 10 only" in estimate["note"]
    assert "at least 20" in estimate["note"]
    value = RunMetrics(run, SETTINGS).value("memory_per_session_mb")
    assert value.value is None
    per_session = next(c for c in CRITERIA.criteria if c.metric == "memory_per_session_mb")
    assert judge(per_session, "overall", value.value).status == "not measured"


def test_memory_falls_back_to_the_gateways_own_figure() -> None:
    sessions = np.arange(0.0, 100.0)
    run = in_memory(
        unix=T0 + sessions, target_rss_mb=80.0 + 0.5 * sessions, sessions_active=sessions
    )
    estimate = memory_per_session(run, SETTINGS)
    assert estimate["memory_source"] == "target_rss_mb"
    assert estimate["mb"] == pytest.approx(0.5, abs=1e-4)
    assert estimate["baseline_mb"] == pytest.approx(80.0, abs=0.05)


def test_a_tree_is_judged_on_its_pss_for_the_whole_run() -> None:
    """A gateway that starts a browser per session: RSS summed over its processes counts their
    shared pages in each (50 MB a session here), PSS once (20 MB a session, the truth). PSS is
    the figure from the first sample on, its first child's arrival no seam in the series."""
    sessions = np.arange(0.0, 60.0)
    processes = 1.0 + sessions  # the gateway, and one browser per session
    run = in_memory(
        unix=T0 + sessions,
        rss_mb=100.0 + 50.0 * sessions,
        pss_mb=90.0 + 20.0 * sessions,
        processes=processes,
        sessions_active=sessions,
    )
    assert memory_series(run)[0] == "pss_mb"
    estimate = memory_per_session(run, SETTINGS)
    assert estimate["memory_source"] == "pss_mb"
    assert estimate["mb"] == pytest.approx(20.0, abs=1e-4)
    assert RunMetrics(run, SETTINGS).value("memory_mb").value == pytest.approx(90.0 + 20 * 59)
    assert memory_basis(run) == {
        "figure": "pss_mb",
        "processes": 60,
        "names": {},  # the summary's process_tree, absent here
        "children_counted": None,
        "pss_unreadable": 0,
    }


@pytest.mark.parametrize(
    "columns",
    [
        {"rss_mb": 100.0, "pss_mb": 70.0, "processes": 1.0},  # a process alone: its RSS
        {"rss_mb": 100.0},  # a run sampled before PSS was
    ],
)
def test_a_process_alone_is_judged_on_its_rss(columns: dict[str, float]) -> None:
    t = np.arange(30.0)
    run = in_memory(unix=T0 + t, **{k: np.full(t.size, v) for k, v in columns.items()})
    assert memory_series(run)[0] == "rss_mb"
    assert memory_basis(run)["figure"] == "rss_mb"
    assert RunMetrics(run, SETTINGS).value("memory_mb").value == 100.0


def test_memory_per_session_without_samples() -> None:
    estimate = memory_per_session(in_memory(unix=np.array([])), SETTINGS)
    assert estimate == {"estimated": False, "note": "no samples of memory and live sessions"}


# --- leaks ---------------------------------------------------------------------------------

LEAK_T = np.arange(1200.0)  # 20 minutes sampled once a second


def leak_of(tmp_path: Path, **columns: np.ndarray) -> dict[str, Any]:
    rows = gateway_rows(LEAK_T, **columns)
    folder = write_run(tmp_path / "run", make_summary(duration_s=1200.0), samples=rows)
    return leak(load_run(folder), SETTINGS)


def test_a_leak_over_a_flat_session_count_is_detected(tmp_path: Path) -> None:
    rng = np.random.default_rng(21)
    rss = 200.0 + 300.0 / 3600 * LEAK_T + rng.normal(0.0, 3.0, size=LEAK_T.size)
    found = leak_of(tmp_path, rss_mb=rss, sessions_active=np.full(LEAK_T.size, 50.0))
    assert found["judged"] and found["detected"]
    assert found["mb_per_hour"] == pytest.approx(300.0, rel=0.03)
    assert found["low_mb_per_hour"] <= 300.0 <= found["high_mb_per_hour"]
    assert found["low_mb_per_hour"] > SETTINGS.leak_mb_per_hour
    assert found["explained_by"] == {}  # a flat session count explains nothing
    # Judged after the warm-up: the first 10 % of the run is left out.
    assert found["from_unix"] == pytest.approx(T0 + 120.0, abs=1.0)
    assert found["to_unix"] == T0 + 1199.0
    assert found["samples"] == 1080
    assert found["growth_mb"] == pytest.approx(300.0 / 3600 * 1079, rel=0.03)
    metrics = RunMetrics(load_run(tmp_path / "run"), SETTINGS)
    assert metrics.value("memory_leak").value == 1.0
    assert metrics.value("memory_growth_mb_per_h").value == found["mb_per_hour"]


def test_noise_is_not_a_leak(tmp_path: Path) -> None:
    rng = np.random.default_rng(22)
    rss = 200.0 + rng.normal(0.0, 10.0, size=LEAK_T.size)
    found = leak_of(tmp_path, rss_mb=rss, sessions_active=np.full(LEAK_T.size, 50.0))
    assert found["judged"] and not found["detected"]
    assert abs(found["mb_per_hour"]) < 20.0
    assert found["low_mb_per_hour"] <= 0.0 <= found["high_mb_per_hour"]
    assert RunMetrics(load_run(tmp_path / "run"), SETTINGS).value("memory_leak").value == 0.0


def test_growth_explained_by_rising_sessions_is_not_a_leak(tmp_path: Path) -> None:
    rng = np.random.default_rng(23)
    sessions = np.floor(LEAK_T / 60) * 20 + rng.integers(0, 3, size=LEAK_T.size)
    rss = 150.0 + 1.5 * sessions + rng.normal(0.0, 3.0, size=LEAK_T.size)
    found = leak_of(tmp_path, rss_mb=rss, sessions_active=sessions)
    # The memory does grow, by about 1.5 MB * 20 sessions a minute: 1800 MB/h ...
    assert found["raw_mb_per_hour"] == pytest.approx(1800.0, rel=0.05)
    # ... all of it explained by the sessions.
    assert not found["detected"]
    assert abs(found["mb_per_hour"]) < 20.0
    assert found["explained_by"]["sessions_active"] == pytest.approx(1.5, abs=0.02)


def test_a_leak_beside_varying_sessions_is_detected(tmp_path: Path) -> None:
    rng = np.random.default_rng(24)
    sessions = np.round(100 + 80 * np.sin(2 * np.pi * LEAK_T / 300))
    rss = 150.0 + 1.5 * sessions + 300.0 / 3600 * LEAK_T + rng.normal(0.0, 3.0, LEAK_T.size)
    found = leak_of(tmp_path, rss_mb=rss, sessions_active=sessions)
    assert found["detected"]
    assert found["mb_per_hour"] == pytest.approx(300.0, rel=0.05)
    assert found["explained_by"]["sessions_active"] == pytest.approx(1.5, abs=0.05)


def test_too_few_samples_are_not_judged() -> None:
    run = in_memory(unix=T0 + np.arange(19.0), rss_mb=np.arange(19.0) * 100)
    assert leak(run, SETTINGS) == {
        "judged": False,
        "detected": False,
        "note": "too few memory samples to judge",
    }
    metrics = RunMetrics(run, SETTINGS)
    assert metrics.value("memory_leak").value is None
    assert metrics.value("memory_growth_mb_per_h").value is None


def k6_ramp(hold_s: float) -> np.ndarray:
    """Keep-alive connections of a k6-style ramp (one per user) to 100, 500 then 1000 users,
    in three equal stretches, then `hold_s` seconds at 1000, over `LEAK_T`; a few connections
    come and go each second, as users' do."""
    ramp_s = (LEAK_T.size - hold_s) / 3
    users = np.interp(LEAK_T, [0, ramp_s, 2 * ramp_s, 3 * ramp_s], [0, 100, 500, 1000])
    return users + np.random.default_rng(25).integers(0, 4, size=LEAK_T.size)


def test_memory_that_follows_a_ramp_of_keep_alive_connections_is_not_a_leak(
    tmp_path: Path,
) -> None:
    """The webhooks scenario: memory grows with the connections of a ramp (30 kB each), which
    then hold: the growth is theirs, not a leak, and the steady end lets it be judged."""
    rng = np.random.default_rng(26)
    connections = k6_ramp(hold_s=300)
    rss = 50.0 + 0.03 * connections + rng.normal(0.0, 0.3, size=LEAK_T.size)
    found = leak_of(tmp_path, rss_mb=rss, connections=connections)
    assert found["raw_mb_per_hour"] > 2 * SETTINGS.leak_mb_per_hour  # memory did grow ...
    assert found["judged"] and not found["detected"], found  # ... with the connections
    assert abs(found["mb_per_hour"]) < 10.0
    assert found["explained_by"]["connections"] == pytest.approx(0.03, rel=0.05)
    assert found["load_figures"] == ["connections"]


def test_a_leak_beside_a_ramp_of_connections_is_found_in_its_steady_stretch(
    tmp_path: Path,
) -> None:
    rng = np.random.default_rng(27)
    connections = k6_ramp(hold_s=300)
    rss = 50.0 + 0.03 * connections + 300.0 / 3600 * LEAK_T + rng.normal(0.0, 0.3, LEAK_T.size)
    found = leak_of(tmp_path, rss_mb=rss, connections=connections)
    assert found["detected"], found
    assert found["mb_per_hour"] == pytest.approx(300.0, rel=0.1)
    assert found["explained_by"]["connections"] == pytest.approx(0.03, rel=0.1)


def test_a_load_that_ramps_throughout_leaves_the_leak_not_judged(tmp_path: Path) -> None:
    """Connections that climb at one pace to the last second: memory that follows them
    cannot be told from a leak, and the verdict says so, with what would be enough, instead
    of guessing. (A ramp that changes pace, like k6's stages, can be judged at its bends.)"""
    rng = np.random.default_rng(28)
    connections = 0.9 * LEAK_T + rng.integers(0, 4, size=LEAK_T.size)
    rss = 50.0 + 0.03 * connections + rng.normal(0.0, 0.3, size=LEAK_T.size)
    found = leak_of(tmp_path, rss_mb=rss, connections=connections)
    assert not found["judged"] and not found["detected"], found
    assert found["reason"] == "ramped" and found["ramped_figure"] == "connections"
    assert found["note"].startswith("not enough steady load to judge a leak")
    assert found["steady_share"] < 0.05  # time is all but a function of the connections
    assert 20 <= found["steady_s_needed"] <= 600
    metrics = RunMetrics(load_run(tmp_path / "run"), SETTINGS)
    assert metrics.value("memory_leak").value is None  # not measured: neither pass nor fail


def test_growth_that_levels_off_is_not_a_leak(tmp_path: Path) -> None:
    """A cache the gateway does not report fills at 180 MB/h to its bound at 700 s, then
    holds: significant growth over the run, none in its last third."""
    rng = np.random.default_rng(29)
    rss = 50.0 + 0.05 * np.minimum(LEAK_T, 700.0) + rng.normal(0.0, 0.3, size=LEAK_T.size)
    found = leak_of(tmp_path, rss_mb=rss, sessions_active=np.full(LEAK_T.size, 50.0))
    assert found["judged"] and found["low_mb_per_hour"] > 0, found
    assert found["mb_per_hour"] > SETTINGS.leak_mb_per_hour
    assert found["levels_off"] and not found["detected"], found
    assert found["late_high_mb_per_hour"] < SETTINGS.leak_mb_per_hour


def cache_run(tmp_path: Path, entries: np.ndarray, rss: np.ndarray) -> Path:
    """A run whose gateway reports a cache, in the samples' `extra` column (as a figure the
    file's header did not name arrives)."""
    folder = write_run(tmp_path / "run", make_summary(duration_s=1200.0))
    with (folder / "samples.csv").open("w", encoding="utf-8") as handle:
        handle.write("t,time,source,rss_mb,sessions_active,extra\n")
        for second, mb, n in zip(LEAK_T, rss, entries, strict=True):
            extra = json.dumps({"cache_webhook_ids_entries": n}).replace('"', '""')
            handle.write(f'{second},{iso(T0 + second)},gateway,{mb:.3f},50,"{extra}"\n')
    return folder


def test_a_cache_the_gateway_reports_explains_its_memory(tmp_path: Path) -> None:
    """The same filling cache, reported by the gateway's metrics (`cache_<name>_entries`):
    it explains the memory, 160 bytes an entry."""
    rng = np.random.default_rng(30)
    entries = np.minimum(LEAK_T, 700.0) * 300.0
    rss = 50.0 + 160e-6 * entries + rng.normal(0.0, 0.3, size=LEAK_T.size)
    found = leak(load_run(cache_run(tmp_path, entries, rss)), SETTINGS)
    assert found["judged"] and not found["detected"], found
    assert found["caches_counted"] == []
    assert "cache_webhook_ids_entries" in found["load_figures"]
    assert found["explained_by"]["cache_webhook_ids_entries"] == pytest.approx(160e-6, rel=0.05)
    assert abs(found["mb_per_hour"]) < 10.0


def test_a_cache_that_grows_at_one_pace_throughout_explains_nothing(tmp_path: Path) -> None:
    """A cache filling at 300 entries a second the whole run, its bound never reached: a leak
    of memory per request looks the same, so its memory stays in the trend."""
    rng = np.random.default_rng(31)
    entries = LEAK_T * 300.0 + rng.integers(0, 50, size=LEAK_T.size)
    rss = 50.0 + 160e-6 * entries + rng.normal(0.0, 0.3, size=LEAK_T.size)  # 173 MB/h
    found = leak(load_run(cache_run(tmp_path, entries, rss)), SETTINGS)
    assert found["detected"], found
    assert found["mb_per_hour"] == pytest.approx(160e-6 * 300 * 3600, rel=0.05)
    assert [c["figure"] for c in found["caches_counted"]] == ["cache_webhook_ids_entries"]
    assert "cache_webhook_ids_entries" not in found["explained_by"]


# --- stages and the breaking point ---------------------------------------------------------

STAGE_S = 10


def staged_run(
    tmp_path: Path,
    *,
    failing_from: dict[int, float] | None = None,
    slow_from: dict[int, float] | None = None,
    samples: list[dict[str, Any]] | None = None,
    errors: list[dict[str, Any]] | None = None,
    extra: dict[str, Any] | None = None,
) -> tuple[RunData, dict[int, list[float]], dict[int, int]]:
    """Four 10-s stages of 10, 20, 30 and 40 requests a second (1-s windows from T0).

    `failing_from` / `slow_from`: stage number -> the time (s into the run) from which every
    other request of that stage fails / every tenth takes 6 s. Returns the run, and each
    stage's latencies and failures, as recorded.
    """
    rng = np.random.default_rng(31)
    windows = Windows(1.0)
    latencies: dict[int, list[float]] = {}
    failures: dict[int, int] = {}
    every: list[float] = []
    for stage in range(1, 5):
        latencies[stage], failures[stage] = [], 0
        for second in range((stage - 1) * STAGE_S, stage * STAGE_S):
            rate = 10 * stage
            for k in range(rate):
                due = T0 + second + (k + 0.5) / rate
                latency = float(rng.lognormal(np.log(20.0 * stage), 0.3))
                if slow_from and stage in slow_from and second >= slow_from[stage] and k % 10 == 0:
                    latency = 6000.0
                failed = bool(
                    failing_from and stage in failing_from and second >= failing_from[stage]
                ) and (k % 2 == 0)
                windows.record(due, latency, failed)
                latencies[stage].append(latency)
                failures[stage] += failed
                every.append(latency)
    stages = stage_dicts(T0, [STAGE_S] * 4, [10, 20, 30, 40])
    summary = make_summary(
        duration_s=4.0 * STAGE_S,
        requests={"POST /api/webhook": (every, sum(failures.values()))},
        errors=errors or [],
    )
    folder = write_run(tmp_path / "run", summary, windows, stages, samples or [], extra)
    return load_run(folder), latencies, failures


def ranked(values: list[float], percentile: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, int(percentile * len(ordered) / 100 + 0.5)) - 1]


def test_each_stage_is_judged_on_its_own_windows(tmp_path: Path) -> None:
    run, latencies, _ = staged_run(tmp_path, failing_from={4: 30})
    metrics = RunMetrics(run, CRITERIA.analysis)
    stages = judge_stages(metrics, list(CRITERIA.criteria))
    assert [s["requests"] for s in stages] == [100, 200, 300, 400]
    assert [s["failures"] for s in stages] == [0, 0, 0, 200]
    assert [s["error_rate_pct"] for s in stages] == [0.0, 0.0, 0.0, 50.0]
    assert [s["requests_per_s"] for s in stages] == [10.0, 20.0, 30.0, 40.0]
    for stage in stages:
        truth = latencies[stage["index"] + 1]
        for p in (50, 95, 99):
            assert stage[f"p{p}_ms"] == pytest.approx(ranked(truth, p), rel=0.01)
    assert [s["broken"] for s in stages] == [[], [], [], ["error rate"]]
    # Judged per stage: error rate and p99 (the CPU was not sampled: "not measured").
    statuses = {j["name"]: j["status"] for j in stages[3]["judgements"]}
    assert statuses == {
        "error rate": "fail",
        "response time p99": "pass",
        "CPU per instance": "not measured",
    }
    assert stages[3]["cpu_pct"] is None and stages[3]["queue_depth_peak"] is None


def test_the_breaking_point_of_a_run_that_breaks_at_stage_4(tmp_path: Path) -> None:
    run, _, _ = staged_run(tmp_path, failing_from={4: 30})
    metrics = RunMetrics(run, CRITERIA.analysis)
    stages = judge_stages(metrics, list(CRITERIA.criteria))
    result = breaking_point(metrics, stages, list(CRITERIA.criteria))
    assert result["applicable"] and not result["held_every_stage"]
    assert result["last_good_stage"]["index"] == 2
    assert result["last_good_stage"]["label"] == "phase 3: 30 arrivals/s"
    assert result["first_bad_stage"]["index"] == 3
    assert result["first_bad_stage"]["broken"] == ["error rate"]
    first = result["broke_first"][0]
    assert first["signal"] == "errors"
    assert (first["at_unix"], first["after_s"], first["value"], first["limit"]) == (
        T0 + 30,
        0.0,
        50.0,
        5.0,
    )
    assert [s["signal"] for s in result["broke_first"]] == ["errors"]


def test_what_broke_first_is_ordered_by_when_it_crossed(tmp_path: Path) -> None:
    t = np.arange(0.0, 40.0)
    cpu = np.where(t >= 33, 95.0, 40.0)  # above 80 % from 33 s
    queue = np.where(t >= 36, 120.0, 10.0)  # above max(50, 2 * 10) from 36 s
    samples = gateway_rows(t, cpu_pct=cpu, queue_depth=queue)
    run, _, _ = staged_run(tmp_path, failing_from={4: 38}, slow_from={4: 35}, samples=samples)
    metrics = RunMetrics(run, CRITERIA.analysis)
    stages = judge_stages(metrics, list(CRITERIA.criteria))
    assert [bool(s["broken"]) for s in stages] == [False, False, False, True]
    assert stages[3]["queue_depth_peak"] == 120.0
    # CPU sustained over 10 s in stage 4: 7 s at 95 and 3 s at 40.
    assert stages[3]["cpu_pct"] == pytest.approx((7 * 95 + 3 * 40) / 10)
    result = breaking_point(metrics, stages, list(CRITERIA.criteria))
    crossed = [(s["signal"], s["after_s"]) for s in result["broke_first"]]
    assert crossed == [("cpu", 3.0), ("latency", 5.0), ("queue", 6.0), ("errors", 8.0)]
    latency = result["broke_first"][1]
    assert (latency["metric"], latency["limit"]) == ("p99_ms", 5000.0)
    assert latency["value"] == pytest.approx(6000.0, rel=0.01)
    assert result["broke_first"][2]["limit"] == 50


def test_a_run_that_held_every_stage(tmp_path: Path) -> None:
    t = np.arange(0.0, 41.0)
    samples = gateway_rows(t, queue_depth=np.where(t >= 39, 0.0, 30.0))
    probe = {"url": "http://127.0.0.1:3000/health", "recovered": True, "after_s": 0.04}
    run, _, _ = staged_run(tmp_path, samples=samples, extra={"recovery": probe})
    metrics = RunMetrics(run, CRITERIA.analysis)
    stages = judge_stages(metrics, list(CRITERIA.criteria))
    result = breaking_point(metrics, stages, list(CRITERIA.criteria))
    assert result["held_every_stage"]
    assert result["last_good_stage"]["index"] == 3
    assert result["first_bad_stage"] is None and result["broke_first"] == []
    assert result["recovery"] == {"probe": probe, "queue_drained": True}
    assert breaking_point(metrics, stages[:1], list(CRITERIA.criteria))["applicable"] is False


def test_a_queue_that_has_not_drained(tmp_path: Path) -> None:
    t = np.arange(0.0, 41.0)
    samples = gateway_rows(t, queue_depth=np.linspace(0.0, 400.0, t.size))
    run, _, _ = staged_run(tmp_path, samples=samples)
    metrics = RunMetrics(run, CRITERIA.analysis)
    stages = judge_stages(metrics, list(CRITERIA.criteria))
    result = breaking_point(metrics, stages, list(CRITERIA.criteria))
    assert result["recovery"] == {"probe": None, "queue_drained": False}


def test_each_stage_criteria_are_judged_stage_by_stage(tmp_path: Path) -> None:
    run, latencies, _ = staged_run(tmp_path)
    stage_p95 = Criterion(name="stage p95", metric="p95_ms", scope="each stage", max=100)
    criteria = CriteriaFile(criteria=(stage_p95,))
    judgements, skipped = judge_run(RunMetrics(run, criteria.analysis), criteria)
    assert skipped == []
    assert [j.scope for j in judgements] == [f"stage {k} (phase {k})" for k in range(1, 5)]
    for stage, judged in zip(range(1, 5), judgements, strict=True):
        assert judged.value == pytest.approx(ranked(latencies[stage], 95), rel=0.01)
        assert judged.approximate and judged.unit == "ms"
    # The median latency of stage k is 20 k ms, its p95 about 1.64 times that.
    assert [j.status for j in judgements] == ["pass", "pass", "pass", "fail"]


def test_a_criterion_for_another_scenario_does_not_break_stages(tmp_path: Path) -> None:
    run, _, _ = staged_run(tmp_path)  # a stress run, every request under 1 s
    elsewhere = Criterion(name="messages p99", metric="p99_ms", max=10, scenarios=("messages",))
    model = build_report(run, CriteriaFile(criteria=(elsewhere,)))
    assert model["not_applicable"] == ["messages p99"]
    assert model["verdict"]["status"] == "approved"
    assert [s["broken"] for s in model["stages"]] == [[], [], [], []]
    assert model["analysis"]["breaking_point"]["held_every_stage"] is True


def test_graceful_sorts_refusals_from_failures() -> None:
    summary = {
        "errors": [
            {
                "method": "POST",
                "name": "/api/sessions",
                "error": "HTTP 503 with Retry-After",
                "occurrences": 40,
            },
            {"method": "POST", "name": "/m", "error": "HTTP 429", "occurrences": 25},
            {"method": "POST", "name": "/m", "error": "HTTP 500", "occurrences": 7},
            {"method": "POST", "name": "/m", "error": "no answer: ReadTimeout()", "occurrences": 9},
            {"method": "POST", "name": "/m", "error": "HTTP 503", "occurrences": 2},
            {"method": "GET", "name": "/h", "error": "HTTP 4290", "occurrences": 1},
        ]
    }
    result = graceful(summary)
    assert result["failures"] == 84
    assert result["refusals_with_instructions"] == 65
    assert result["other_failures"] == 19
    assert result["graceful"] is False
    assert result["other_kinds"] == [
        {"error": "no answer: ReadTimeout()", "occurrences": 9},
        {"error": "HTTP 500", "occurrences": 7},
        {"error": "HTTP 503", "occurrences": 2},
    ]
    only_refusals = graceful({"errors": summary["errors"][:2]})
    assert (only_refusals["graceful"], only_refusals["other_failures"]) == (True, 0)
    assert graceful({"errors": []}) == {
        "failures": 0,
        "refusals_with_instructions": 0,
        "other_failures": 0,
        "graceful": True,
        "other_kinds": [],
    }


def summary_of(stats: RequestStats) -> dict[str, Any]:
    counters = SimpleNamespace(get=lambda name: 0, peaks={})
    run = {"scenario": "sessions", "target": "http://127.0.0.1:3000", "duration_s": 10.0}
    return build_summary(stats=stats, book=LatencyBook(), counters=counters, run=run)


def refused(stats: RequestStats) -> RequestStats:
    for _ in range(20):
        stats.log_request("POST", "/api/sessions", 5, 10)
    for _ in range(3):  # the users' `response.failure(...)`
        stats.log_error("POST", "/api/sessions", CatchResponseError("HTTP 503 with Retry-After"))
    stats.log_error("POST", "/api/sessions", CatchResponseError("HTTP 429"))
    return stats


def test_refusals_of_a_local_run_are_graceful() -> None:
    result = graceful(summary_of(refused(RequestStats())))
    assert (result["refusals_with_instructions"], result["other_failures"]) == (4, 0)
    assert result["graceful"] is True


def test_refusals_of_a_distributed_run_are_graceful() -> None:
    worker, master = refused(RequestStats()), RequestStats()
    worker_events, master_events = Events(), Events()
    setup_distributed_stats_event_listeners(worker_events, worker)
    setup_distributed_stats_event_listeners(master_events, master)
    report: dict[str, Any] = {}
    worker_events.report_to_master.fire(client_id="worker-1", data=report)
    master_events.worker_report.fire(client_id="worker-1", data=report)
    summary = summary_of(master)
    assert sum(e["occurrences"] for e in summary["errors"]) == 4
    result = graceful(summary)
    assert (result["refusals_with_instructions"], result["other_failures"]) == (4, 0)


# --- metric values -------------------------------------------------------------------------


def test_overall_latency_comes_from_the_summary_and_a_stage_from_its_windows(
    tmp_path: Path,
) -> None:
    run, latencies, _ = staged_run(tmp_path, failing_from={4: 35})
    run.summary["totals"]["latency"]["p99_ms"] = 1234.5  # the lossless figure, whatever it is
    metrics = RunMetrics(run, CRITERIA.analysis)

    overall = metrics.value("p99_ms")
    assert (overall.value, overall.unit, overall.approximate, overall.tolerance_pct) == (
        1234.5,
        "ms",
        False,
        0.0,
    )
    webhook = metrics.value("p95_ms", "POST /api/webhook")
    assert webhook.value == run.summary["requests"]["POST /api/webhook"]["latency"]["p95_ms"]
    assert metrics.value("p95_ms", "GET /nothing").value is None

    for scope in ("stage:2", "stage:phase 2"):
        stage = metrics.value("p99_ms", scope)
        assert stage.approximate and stage.tolerance_pct == 1.0
        assert stage.value == pytest.approx(ranked(latencies[2], 99), rel=0.01)
    assert metrics.value("error_rate_pct", "stage:4").value == 25.0  # 5 of its 10 s failing
    assert metrics.value("error_rate_pct", "stage:3").value == 0.0
    assert metrics.value("requests_per_s", "stage:3").value == 30.0
    missing = metrics.value("p99_ms", "stage:9")
    assert missing.value is None and "no stage '9'" in missing.note
    overall_errors = metrics.value("error_rate_pct")
    assert overall_errors.value == pytest.approx(100 * 100 / 1000)


def test_session_failures() -> None:
    def session_failure(attempted: int, created: int) -> float | None:
        summary = make_summary(sessions=(attempted, created))
        run = RunData(Path("."), summary, Windows(), [], pd.DataFrame(), pd.DataFrame())
        return RunMetrics(run, SETTINGS).value("session_failure_pct").value

    assert session_failure(0, 0) is None
    assert session_failure(200, 180) == 10.0
    assert session_failure(3, 2) == pytest.approx(33.333, abs=1e-3)
    assert session_failure(50, 0) == 100.0


def test_cpu_is_judged_on_its_sustained_level(tmp_path: Path) -> None:
    t = np.arange(0.0, 60.0)
    cpu = np.where((t >= 20) & (t < 25), 100.0, 50.0)  # one 5-s burst
    samples = gateway_rows(t, cpu_pct=cpu, sessions_active=np.full(t.size, 7.0))
    folder = write_run(tmp_path / "run", make_summary(), samples=samples)
    metrics = RunMetrics(load_run(folder), SETTINGS)
    # The highest mean over 10 s: 5 s at 100 and 5 s at 50.
    assert metrics.value("cpu_pct").value == 75.0
    assert metrics.cpu(T0 + 30, T0 + 60).value == 50.0
    assert metrics.value("max_concurrent_sessions").value == 7.0


def test_messages_per_second_per_session_from_the_gateways_counter(tmp_path: Path) -> None:
    t = np.arange(0.0, 30.0)
    sessions = np.full(t.size, 10.0)
    accepted = np.cumsum(np.where((t >= 10) & (t < 20), 120.0, 30.0))  # 12/s per session at best
    samples = gateway_rows(t, sessions_active=sessions, messages_accepted=accepted)
    summary = make_summary(scenario="messages", sessions=(10, 10))
    folder = write_run(tmp_path / "run", summary, samples=samples)
    value = RunMetrics(load_run(folder), SETTINGS).value("messages_per_s_per_session")
    assert value.value == pytest.approx(12.0, rel=1e-6)
    assert value.tolerance_pct == 1.0


# --- bottlenecks ---------------------------------------------------------------------------


def queue_run(tmp_path: Path, latency_of_queue) -> RunData:
    """60 s: the queue grows by 8 a second; each 1-s window's 20 latencies depend on it."""
    rng = np.random.default_rng(41)
    windows = Windows(1.0)
    t = np.arange(0.0, 60.0)
    queue = 8.0 * t
    for second, depth in zip(t, queue, strict=True):
        for k in range(20):
            windows.record(T0 + second + k / 20, latency_of_queue(depth, rng), False)
    samples = gateway_rows(t, queue_depth=queue)
    folder = write_run(tmp_path / "run", make_summary(), windows, samples=samples)
    return load_run(folder)


def test_latency_rising_with_the_queue_is_a_bottleneck(tmp_path: Path) -> None:
    run = queue_run(tmp_path, lambda depth, rng: (10.0 + 0.5 * depth) * rng.uniform(0.95, 1.05))
    metrics = RunMetrics(run, SETTINGS)
    found = latency_with_queue(metrics)
    assert found is not None and found["kind"] == "latency_with_queue"
    evidence = found["evidence"]
    assert evidence["correlation"] >= 0.95
    # p95 follows 10 + 0.5 * queue (+ up to 5 %) at both ends of the queue.
    for end in ("low", "high"):
        expected = 10.0 + 0.5 * evidence[f"queue_{end}"]
        assert expected * 0.97 <= evidence[f"p95_{end}_ms"] <= expected * 1.07
    assert evidence["queue_low"] < 150 < 330 < evidence["queue_high"]
    assert evidence["to_unix"] == T0 + 60.0
    assert T0 + 40 <= evidence["from_unix"] <= T0 + 50
    assert "latency_with_queue" in [f["kind"] for f in find_bottlenecks(metrics, [])]


def test_flat_latency_with_a_growing_queue_is_not_a_bottleneck(tmp_path: Path) -> None:
    run = queue_run(tmp_path, lambda depth, rng: 20.0 * rng.uniform(0.9, 1.1))
    metrics = RunMetrics(run, SETTINGS)
    assert latency_with_queue(metrics) is None
    assert find_bottlenecks(metrics, []) == []


ERRORS_ONLY = CriteriaFile(
    criteria=(Criterion(name="error rate", metric="error_rate_pct", max=5, severity="fail"),)
)


def capped_run(
    tmp_path: Path, criteria: CriteriaFile = ERRORS_ONLY, **columns: np.ndarray
) -> tuple[RunMetrics, list[Any]]:
    """The staged run whose 4th stage fails every other request from 32 s, with `columns`
    as the gateway's samples; judged by the error rate alone unless `criteria` say more."""
    samples = gateway_rows(np.arange(0.0, 41.0), **columns)
    run, _, _ = staged_run(tmp_path, failing_from={4: 32}, samples=samples)
    metrics = RunMetrics(run, criteria.analysis)
    judgements, _ = judge_run(metrics, criteria)
    return metrics, judgements


def test_errors_that_begin_at_the_session_cap_name_it_as_what_broke_first(
    tmp_path: Path,
) -> None:
    t = np.arange(0.0, 41.0)
    metrics, judgements = capped_run(
        tmp_path,
        sessions_active=np.minimum(500.0, 16.0 * t),  # the cap from 31.25 s
        sessions_limit=np.full(t.size, 500.0),
        connections=np.full(t.size, 40.0),
        cpu_pct=35.0 + np.sin(t),
    )
    found = find_bottlenecks(metrics, judgements)
    assert [f["kind"] for f in found] == ["ceiling", "errors"], found
    cap = found[0]
    assert cap["text_key"] == "ceilings.sessions_active.at_limit"
    evidence = cap["evidence"]
    assert (evidence["figure"], evidence["level"], evidence["limit"]) == (
        "sessions_active",
        500,
        500,
    )
    assert evidence["reached_unix"] == T0 + 31  # 496 then: within 3 % of the cap
    assert evidence["held_s"] == pytest.approx(8.0)  # to the last sample, at 40 s
    assert (evidence["signal"], evidence["onset_unix"], evidence["value"]) == (
        "errors",
        T0 + 32,
        50,
    )
    errors = found[1]
    assert errors["advice_key"] == "findings.errors.advice_explained"
    assert errors["evidence"]["explained_by"] == "sessions_active"
    stages = judge_stages(metrics, list(ERRORS_ONLY.criteria))
    broke = breaking_point(metrics, stages, list(ERRORS_ONLY.criteria))["broke_first"]
    assert [(s["signal"], s.get("figure")) for s in broke] == [
        ("ceiling", "sessions_active"),
        ("errors", None),
    ]
    assert (broke[0]["value"], broke[0]["limit"], broke[0]["after_s"]) == (500, 500, 1.0)


def test_a_plateau_with_no_known_limit_is_a_ceiling_too(tmp_path: Path) -> None:
    """Connections that climb and stop at 480 as the errors begin, no limit exported."""
    t = np.arange(0.0, 41.0)
    metrics, judgements = capped_run(tmp_path, connections=np.minimum(480.0, 15.0 * t))
    found = find_bottlenecks(metrics, judgements)
    assert found[0]["text_key"] == "ceilings.connections.plateau", found
    assert found[0]["evidence"]["limit"] is None
    assert found[0]["evidence"]["level"] == 480


def test_cpu_at_its_criterions_limit_is_the_ceiling_and_not_said_twice(tmp_path: Path) -> None:
    t = np.arange(0.0, 41.0)
    cpu_too = CriteriaFile(
        criteria=(
            *ERRORS_ONLY.criteria,
            Criterion(name="CPU", metric="cpu_pct", max=80, severity="degrade"),
        )
    )
    metrics, judgements = capped_run(tmp_path, cpu_too, cpu_pct=np.where(t >= 31, 97.0, 30.0))
    found = find_bottlenecks(metrics, judgements)
    assert [f["kind"] for f in found] == ["ceiling", "errors"], found  # no cpu_saturation
    assert found[0]["text_key"] == "ceilings.cpu_pct.at_limit"
    assert (found[0]["evidence"]["level"], found[0]["evidence"]["limit"]) == (97, 80)


def test_a_trees_pss_at_the_memory_limit_is_the_ceiling_not_its_rss(tmp_path: Path) -> None:
    """RSS summed over a browser per session is far over the limit the whole run; what the
    tree holds, its PSS, reaches it as the errors begin."""
    t = np.arange(0.0, 41.0)
    memory_too = CriteriaFile(
        criteria=(
            *ERRORS_ONLY.criteria,
            Criterion(name="memory", metric="memory_mb", max=1000, severity="degrade"),
        )
    )
    metrics, judgements = capped_run(
        tmp_path,
        memory_too,
        rss_mb=np.full(t.size, 4000.0),
        pss_mb=np.where(t >= 31, 995.0, 600.0),
        processes=np.full(t.size, 46.0),
    )
    found = find_bottlenecks(metrics, judgements)
    assert found[0]["text_key"] == "ceilings.pss_mb.at_limit", found
    assert (found[0]["evidence"]["level"], found[0]["evidence"]["limit"]) == (995, 1000)


def test_errors_that_no_figure_explains_say_so(tmp_path: Path) -> None:
    t = np.arange(0.0, 41.0)
    # Sessions steady, connections still climbing, CPU low: nothing at a ceiling at 32 s.
    metrics, judgements = capped_run(
        tmp_path,
        sessions_active=np.full(t.size, 50.0),
        connections=10.0 * t,
        cpu_pct=np.full(t.size, 30.0),
    )
    found = find_bottlenecks(metrics, judgements)
    assert [f["kind"] for f in found] == ["errors"], found
    assert found[0]["advice_key"] == "findings.errors.advice_unexplained"
    assert found[0]["evidence"]["onset_unix"] == T0 + 32


def test_one_bad_second_is_not_an_onset(tmp_path: Path) -> None:
    windows = Windows(0.2)
    for k in range(600):  # 60 s at 10 requests a second, every request of second 20 failing
        windows.record(T0 + k / 10, 5.0, 20 <= k / 10 < 21)
    run = load_run(write_run(tmp_path / "run", make_summary(), windows))
    assert onset(run, {"error_rate_pct": 5.0}) is None
    windows.record(T0 + 21.5, 5.0, True)  # and the next two seconds over the limit too
    windows.record(T0 + 22.5, 5.0, True)
    run = load_run(write_run(tmp_path / "run2", make_summary(), windows))
    start = onset(run, {"error_rate_pct": 5.0})
    assert start is not None and start.at_unix == T0 + 20 and start.signal == "errors"


def test_throttling_needs_a_fifth_of_the_sends() -> None:
    def found(throttled: int, accepted: int) -> dict[str, Any] | None:
        summary = make_summary(messages={"throttled": throttled, "accepted": accepted})
        run = RunData(Path("."), summary, Windows(), [], pd.DataFrame(), pd.DataFrame())
        return throttling(RunMetrics(run, SETTINGS))

    assert found(0, 1000) is None
    assert found(249, 1000) is None  # 19.9 %
    finding = found(250, 1000)
    assert finding is not None
    assert finding["evidence"] == {"throttled": 250, "accepted": 1000, "share_pct": 20.0}
    assert math.isclose(found(900, 100)["evidence"]["share_pct"], 90.0)  # type: ignore[index]
