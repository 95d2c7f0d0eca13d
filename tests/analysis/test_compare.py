"""`analysis.compare`: what the significance tests are run on.

A window's p99 over 10 requests is its maximum; compared window by window, two healthy runs
on a machine a little busier during one of them differ "significantly". Percentiles are
taken over blocks of consecutive windows that hold enough requests above them.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from analysis.compare import Change, compare, judge_change, mann_whitney_p, window_values
from analysis.run_data import RunData
from analysis.timeline import Windows


def run_of(latencies_ms: list[list[float]], width_s: float = 0.1) -> RunData:
    """A run whose window i holds the requests `latencies_ms[i]`."""
    windows = Windows(width_s)
    for i, values in enumerate(latencies_ms):
        for value in values:
            windows.record((i + 0.5) * width_s, value, failed=False)
    empty = pd.DataFrame()
    return RunData(Path("."), {}, windows, [], empty, empty)


def test_percentiles_are_taken_over_blocks_with_enough_requests_above_them():
    run = run_of([[1.0] * 9 + [float(10 + i)] for i in range(60)])  # 60 windows of 10
    assert len(window_values(run, "50")) == 60  # 10 requests: 5 above the median
    p95 = window_values(run, "95")  # blocks of 100 requests: 10 windows each
    assert len(p95) == 6
    assert p95 == sorted(p95) and p95[0] >= 10  # each block's p95 is in its own top ten
    assert len(window_values(run, "99")) == 1  # 500 requests; the last 100 are left over
    assert window_values(run, "requests") == [100.0] * 60


def test_one_slow_outlier_per_window_is_no_significant_p99_shift():
    # Both runs answer in 1 ms but for one request in ten; in the second run those are slower.
    base = run_of([[1.0] * 9 + [3.0] for _ in range(60)])
    run = run_of([[1.0] * 9 + [6.0] for _ in range(60)])
    assert mann_whitney_p(window_values(base, "99"), window_values(run, "99")) is None
    change = judge_change(Change("latency p99 (overall)", 3.0, 6.0, "ms", "higher", None), 20, 2)
    assert change.verdict == "same"
    # The same shift in every request's latency is found at once.
    slow = run_of([[22.0] * 10 for _ in range(60)])
    p = mann_whitney_p(window_values(base, "50"), window_values(slow, "50"))
    assert p is not None and p < 1e-10


def sampled(**columns: list[float]) -> RunData:
    """A run with gateway samples only, one a second."""
    frame = pd.DataFrame({"unix": [float(i) for i in range(len(next(iter(columns.values()))))]})
    frame = frame.assign(**columns)
    return RunData(Path("."), {}, Windows(), [], frame, pd.DataFrame({"unix": []}))


def test_the_peak_memory_of_a_process_and_of_a_tree_are_not_compared() -> None:
    alone = sampled(rss_mb=[100.0, 120.0], processes=[1.0, 1.0])
    tree = sampled(rss_mb=[900.0, 990.0], pss_mb=[300.0, 330.0], processes=[5.0, 6.0])
    memory = next(c for c in compare(alone, tree) if c.metric.startswith("gateway memory"))
    assert (memory.base, memory.run, memory.verdict) == (120.0, 330.0, "not comparable")
    assert "rss_mb against pss_mb" in memory.metric and not memory.flagged
    same = next(c for c in compare(tree, tree) if c.metric.startswith("gateway memory"))
    assert (same.base, same.run, same.verdict) == (330.0, 330.0, "same")
