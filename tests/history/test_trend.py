"""The trend test on synthetic nights: a drift injected into seeded noise is flagged, the way
the figure is worse only; noise alone, too few runs and identical values are not."""

from __future__ import annotations

import numpy as np
import pytest

from history.entry import RunEntry
from history.trend import ALPHA, MIN_RUNS, Trend, drift_summary, trends

NIGHT_S = 86_400.0
START = 1_780_000_000.0  # a night in 2026


def nights(
    name: str, values: list[float | None], partial: set[int] = frozenset()
) -> list[RunEntry]:
    return [
        RunEntry(
            folder=f"runs/night-{i:02d}",
            scenario="stress",
            started_at=START + i * NIGHT_S,
            verdict="approved",
            partial=i in partial,
            figures={name: value},
        )
        for i, value in enumerate(values)
    ]


def noise(seed: int, count: int = 30, scale: float = 1.0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, scale, count)


def only(entries: list[RunEntry]) -> Trend:
    (found,) = trends(entries)
    print(
        f"\n{found.figure}: n = {found.n}, tau = {found.tau}, p = {found.p_value}, "
        f"Sen's slope = {found.sen_slope_per_run} a run, {found.direction}, "
        f"flagged = {found.flagged}\n  {found.note}"
    )
    return found


def test_latency_drifting_up_is_flagged():
    values = [20 + e + 0.3 * night for night, e in enumerate(noise(1))]
    found = only(nights("latency_p95_ms", values))
    assert found.n == 30
    assert found.direction == "up" and found.worse and found.flagged
    assert found.p_value is not None and found.p_value < ALPHA
    assert 0.2 < (found.sen_slope_per_run or 0) < 0.4  # near the 0.3 ms injected
    assert found.note.startswith("latency_p95_ms rising over 30 runs: +0.")
    assert "ms a run, Mann-Kendall p" in found.note
    assert "latency_p95_ms rising" in drift_summary([found])


def test_noise_alone_is_not_flagged():
    found = only(nights("latency_p95_ms", list(20 + noise(2))))
    assert found.judged and not found.flagged
    assert found.p_value is not None and found.p_value >= ALPHA
    assert "no significant trend over 30 runs" in found.note
    assert drift_summary([found]).startswith("drift: none")


def test_throughput_falling_is_worse():
    values = [100 + e - 0.5 * night for night, e in enumerate(noise(3, scale=2.0))]
    found = only(nights("requests_per_s", values))
    assert found.direction == "down" and found.worse and found.flagged
    assert (found.sen_slope_per_run or 0) < 0


def test_throughput_rising_is_an_improvement():
    values = [100 + e + 0.5 * night for night, e in enumerate(noise(4, scale=2.0))]
    found = only(nights("requests_per_s", values))
    assert found.direction == "up" and not found.worse and not found.flagged
    assert found.p_value is not None and found.p_value < ALPHA  # significant, just better
    assert "an improvement" in found.note


def test_five_runs_are_not_judged():
    found = only(nights("latency_p95_ms", [20.0, 21.0, 22.0, 23.0, 24.0]))
    assert not found.judged and not found.flagged and found.direction == "flat"
    assert found.note == f"latency_p95_ms: not enough runs (5 of {MIN_RUNS})"


def test_identical_values_are_flat():
    found = only(nights("cpu_pct", [42.0] * 30))
    assert found.direction == "flat" and not found.worse and not found.flagged
    assert found.tau == 0 and found.sen_slope_per_run == 0


def test_partial_runs_and_missing_values_are_left_out():
    # Cut-short runs with wild values, and nights without the figure, change nothing.
    values: list[float | None] = [20 + e for e in noise(5)]
    values[3] = values[17] = None
    entries = nights("latency_p95_ms", values, partial={5, 9, 22})
    for entry in entries:
        if entry.partial:
            entry.figures["latency_p95_ms"] = 900.0
    found = only(entries)
    assert found.n == 30 - 2 - 3 and not found.flagged


def test_every_figure_held_and_each_request_p95():
    entries = nights("latency_p95_ms", [20.0 + i for i in range(10)])
    for entry in entries:
        entry.figures["p95_ms POST /api/sendText"] = 15.0
        entry.figures["memory_per_session_mb"] = None  # held by no run: no trend
    names = [t.figure for t in trends(entries)]
    assert names == ["latency_p95_ms", "p95_ms POST /api/sendText"]


def test_the_figures_of_one_history_are_judged_as_a_family():
    """Ten steady figures each at p < 0.05 would flag a steady history one time in five:
    Holm's adjustment keeps a chance p = 0.04 among ten from a flag, not a real drift."""
    from history.trend import Trend, holm

    def trend(name: str, p: float) -> Trend:
        return Trend(name, 30, 0.3, p, 0.1, 1.0, "up", True, p < 0.05, f"{name} rising")

    chance = [trend("latency_p95_ms", 0.04), *(trend(f"p95_ms GET /{i}", 0.5) for i in range(9))]
    adjusted = holm(chance)
    assert not any(t.flagged for t in adjusted)
    assert (
        adjusted[0].p_family == pytest.approx(0.4)
        and "not significant among 10 figures" in adjusted[0].note
    )
    real = holm([trend("latency_p95_ms", 1e-6), *chance[1:]])
    assert real[0].flagged and real[0].p_family == pytest.approx(1e-5)
