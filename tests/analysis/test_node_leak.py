"""The leak verdict on an inspected Node.js gateway, on synthetic samples of known shape.

A fresh heap that warms up and flattens is not a leak; a heap floor that climbs to the end is;
a run too short to tell the two apart is "not enough data" with the length that would tell;
RSS that climbs while the heap holds is a leak only once the run is long enough to rule out a
warm-up. And a gateway paused a sixth of the run in its collector is a bottleneck.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.bottlenecks import gc_pressure
from analysis.criteria import AnalysisSettings
from analysis.memory import leak
from analysis.metrics import RunMetrics
from analysis.run_data import RunData
from analysis.timeline import Windows
from tests.analysis.synthetic import T0

SETTINGS = AnalysisSettings()  # leak threshold 60 MB/h, warm-up 10 %


def node_run(t: np.ndarray, **columns: np.ndarray) -> RunData:
    """Samples as the inspector gives them (gc_count each second marks the inspector)."""
    frame = pd.DataFrame({"unix": T0 + t, "gc_count": np.full(t.size, 3.0), **columns})
    return RunData(Path("."), {}, Windows(), [], frame, pd.DataFrame({"unix": []}))


def floors_every(t: np.ndarray, every_s: int, values: np.ndarray) -> np.ndarray:
    """The heap after a major collection, in the seconds that had one."""
    return np.where(t % every_s == 0, values, np.nan)


def test_a_heap_floor_that_climbs_to_the_end_is_a_leak() -> None:
    t = np.arange(1200.0)
    rng = np.random.default_rng(1)
    floor = 40.0 + 300.0 / 3600 * t + rng.normal(0, 0.3, t.size)
    run = node_run(
        t,
        heap_used_mb=floor + 10 * rng.random(t.size),  # garbage between collections
        heap_after_gc_mb=floors_every(t, 20, floor),
        rss_mb=120.0 + 300.0 / 3600 * t,
    )
    found = leak(run, SETTINGS)
    assert found["memory_source"] == "heap_after_gc_mb" and found["detected"], found
    assert found["mb_per_hour"] == pytest.approx(300.0, rel=0.1)
    assert found["floors_after_warmup"] == 54 and found["process_memory"]["detected"]


def test_a_heap_that_warms_up_and_flattens_is_not_a_leak() -> None:
    t = np.arange(1200.0)
    rng = np.random.default_rng(2)
    floor = 40.0 + 30.0 * (1 - np.exp(-t / 200.0)) + rng.normal(0, 0.2, t.size)
    run = node_run(
        t,
        heap_used_mb=floor + 5 * rng.random(t.size),
        heap_after_gc_mb=floors_every(t, 15, floor),
        rss_mb=100.0 + 30.0 * (1 - np.exp(-t / 200.0)),
    )
    found = leak(run, SETTINGS)
    assert found["judged"] and not found["detected"], found
    significant = found["low_mb_per_hour"] > 0 and found["mb_per_hour"] > 60
    assert not significant or found["levels_off"], found  # no growth, or growth that flattens


def test_a_run_too_short_to_tell_is_not_enough_data() -> None:
    t = np.arange(60.0)
    rng = np.random.default_rng(3)
    heap = 20.0 + 4.0 * (1 - np.exp(-t / 40.0)) + rng.normal(0, 0.4, t.size)
    run = node_run(t, heap_used_mb=heap, heap_external_mb=np.full(t.size, 2.0))
    found = leak(run, SETTINGS)
    assert not found["judged"] and not found["detected"], found
    assert found["reason"] == "too_short" and found["memory_source"] == "heap_js_mb"
    assert found["run_s_needed"] > 60, found
    assert found["note"].startswith("not enough data to judge a leak"), found
    assert RunMetrics(run, SETTINGS).value("memory_leak").value is None


@pytest.mark.parametrize(("seconds", "detected"), [(300, False), (1200, True)])
def test_rss_that_climbs_while_the_heap_holds(seconds: int, detected: bool) -> None:
    t = np.arange(float(seconds))
    rng = np.random.default_rng(4)
    run = node_run(
        t,
        heap_used_mb=30.0 + rng.normal(0, 0.5, t.size),
        heap_external_mb=np.full(t.size, 3.0),
        rss_mb=100.0 + 600.0 / 3600 * t + rng.normal(0, 0.3, t.size),
    )
    found = leak(run, SETTINGS)
    assert found["reason"] == "outside_heap" and found["detected"] is detected, found
    assert found["judged"] is detected
    assert found["process_memory"]["mb_per_hour"] == pytest.approx(600.0, rel=0.05)
    if not detected:
        assert "native modules" in found["note"] and found["run_s_needed"] == 667


def test_gc_pauses_over_a_tenth_of_the_run_are_a_bottleneck(tmp_path: Path) -> None:
    t = np.arange(120.0)
    run = node_run(t, gc_pause_ms=np.full(t.size, 160.0), heap_used_mb=np.full(t.size, 50.0))
    run.folder = tmp_path  # no recordings beside the samples: no CPU profile to name
    finding = gc_pressure(RunMetrics(run, SETTINGS))
    assert finding is not None and finding["evidence"]["share_pct"] == pytest.approx(16.0, 0.01)
    assert finding["evidence"]["hot"] == "" and "advice_key" not in finding  # says so
    quiet = node_run(t, gc_pause_ms=np.full(t.size, 20.0), heap_used_mb=np.full(t.size, 50.0))
    quiet.folder = tmp_path
    assert gc_pressure(RunMetrics(quiet, SETTINGS)) is None


def test_a_run_with_too_few_samples_renders(tmp_path: Path) -> None:
    """Ten seconds of an inspected gateway: not judged, and the report says so."""
    from analysis.report import write_report
    from tests.analysis.synthetic import make_summary, write_run

    t = np.arange(10.0)
    rows = [
        {"unix": T0 + s, "source": "gateway", "gc_count": 3, "heap_used_mb": 20.0, "rss_mb": 90.0}
        for s in t
    ]
    folder = write_run(tmp_path / "run", make_summary(duration_s=10.0), samples=rows)
    model = write_report(folder)
    assert model["analysis"]["leak"] == {
        "judged": False,
        "detected": False,
        "note": "too few memory samples to judge",
    }
    assert "too few memory samples to judge" in (folder / "report.md").read_text()
