"""The closed model's stages and the endurance profile: user counts over time, no Locust run."""

from __future__ import annotations

import itertools
import time
from types import SimpleNamespace

import pytest

from shapes.endurance import diurnal_factor, endurance_phases, endurance_stages
from shapes.stages import StagesShape, VUStage, VUStages
from shapes.timetable import Timetable

STAGES = [
    VUStage(10, 50, "ramp-up"),
    VUStage(20, 50, "hold"),
    VUStage(5, 200, "spike"),
    VUStage(15, 0, "ramp-down"),
]


class FakeUser:  # stands in for a Locust user class: the shape only passes it through
    pass


# --- VUStages ------------------------------------------------------------------------------


def test_duration_peak_and_stage_index() -> None:
    stages = VUStages(STAGES)
    assert stages.duration_s == 50
    assert stages.peak_users == 200
    assert VUStages([VUStage(10, 5)], start_users=30).peak_users == 30
    times = (-1, 0, 9.99, 10, 29.99, 30, 34.9, 35, 49, 50, 99)
    assert [stages.stage_index_at(t) for t in times] == [0, 0, 0, 1, 1, 2, 2, 3, 3, 3, 3]
    assert [stages.stage_start(i) for i in range(4)] == [0, 10, 30, 35]
    with pytest.raises(ValueError):
        VUStages([])


def test_users_at_follows_linear_ramps() -> None:
    stages = VUStages(STAGES)
    expected = {
        0: 0,
        2.5: 12.5,
        5: 25,
        10: 50,
        20: 50,
        30: 50,
        32.5: 125,
        35: 200,
        36.5: 180,
        42.5: 100,
        50: 0,
        60: 0,
    }
    for t, users in expected.items():
        assert stages.users_at(t) == pytest.approx(users), t
    # Linear inside each stage: the midpoint is the mean of the ends.
    for index, stage in enumerate(stages.stages):
        start = stages.stage_start(index)
        a, b = stages.users_at(start), stages.users_at(start + stage.duration_s - 1e-9)
        mid = stages.users_at(start + stage.duration_s / 2)
        assert mid == pytest.approx((a + b) / 2, abs=1e-6)


def test_users_at_starts_from_start_users() -> None:
    stages = VUStages([VUStage(10, 20), VUStage(10, 100)], start_users=40)
    assert stages.users_at(0) == 40
    assert stages.users_at(5) == pytest.approx(30)
    assert stages.users_at(10) == pytest.approx(20)
    assert stages.users_at(15) == pytest.approx(60)
    assert stages.users_at(20) == 100


def test_zero_length_stage_jumps() -> None:
    stages = VUStages([VUStage(10, 10), VUStage(0, 80), VUStage(10, 80)])
    assert stages.duration_s == 20
    assert stages.users_at(9.999) == pytest.approx(10, abs=0.01)
    assert stages.users_at(10) == 80
    assert stages.users_at(15) == 80


# --- StagesShape ---------------------------------------------------------------------------


def shape_at(shape: StagesShape, t: float, running: int = 0) -> StagesShape:
    """Fake Locust's clock (the run time is now `t`, plus the µs until the shape ticks) and
    its runner (`running` users are up)."""
    shape.start_time = time.perf_counter() - t
    shape.runner = SimpleNamespace(user_count=running)  # type: ignore[assignment]
    return shape


@pytest.mark.parametrize("t", [0.2, 3.2, 9.25, 12.0, 30.0, 33.0, 34.6, 40.0, 48.7])
@pytest.mark.parametrize("running", [0, 25, 50, 180])
def test_stages_shape_ticks_along_the_ramp(t: float, running: int) -> None:
    stages = VUStages(STAGES)
    classes = [FakeUser]
    result = shape_at(StagesShape(stages, classes), t, running).tick()
    assert result is not None
    users, spawn_rate, user_classes = result
    assert users == round(stages.users_at(t))
    # The whole step at once (at least one user a second: Locust needs a positive rate).
    assert spawn_rate == max(1, abs(users - running))
    assert user_classes == classes


def test_stages_shape_follows_a_ramp_second_by_second() -> None:
    stages = VUStages([VUStage(10, 50), VUStage(5, 200), VUStage(15, 20)])
    shape = StagesShape(stages)
    running, steps = 0, []
    for second in range(30):
        result = shape_at(shape, second + 0.01, running).tick()
        assert result is not None
        users, spawn_rate, classes = result
        assert classes is None
        assert spawn_rate == max(1, abs(users - running))
        steps.append(users - running)
        running = users
    # Each one-second step is the ramp's slope: +5/s, then +30/s, then -12/s.
    assert steps == [0] + [5] * 10 + [30] * 5 + [-12] * 14
    assert running == 32  # the last tick, a second before the end
    assert shape_at(shape, 30.01, running).tick() is None


def test_stages_shape_ends_after_the_last_stage() -> None:
    shape = StagesShape(VUStages(STAGES))
    result = shape_at(shape, 49.5, running=7).tick()
    assert result is not None
    assert result[0] == round(VUStages(STAGES).users_at(49.5))  # 7
    assert result[1] == 1
    assert shape_at(shape, 50.0).tick() is None
    assert shape_at(shape, 500.0).tick() is None


# --- endurance -----------------------------------------------------------------------------


def test_diurnal_factor() -> None:
    assert diurnal_factor(3) == pytest.approx(0.2)
    assert diurnal_factor(15) == pytest.approx(1.0)
    assert diurnal_factor(3, night=0.5) == pytest.approx(0.5)
    hours = [h / 4 for h in range(24 * 4 + 1)]
    factors = [diurnal_factor(h) for h in hours]
    assert min(factors) == pytest.approx(0.2)
    assert hours[factors.index(min(factors))] == 3
    assert hours[factors.index(max(factors))] == 15
    assert all(0.2 - 1e-12 <= f <= 1 + 1e-12 for f in factors)
    # A day is periodic and the curve rises through the morning, falls through the evening.
    assert diurnal_factor(0) == pytest.approx(diurnal_factor(24))
    assert diurnal_factor(6) < diurnal_factor(9) < diurnal_factor(12)
    assert diurnal_factor(18) > diurnal_factor(21) > diurnal_factor(24)


@pytest.mark.parametrize("duration_s", [600.0, 3600.0, 86_400.0])
@pytest.mark.parametrize("curve", ["flat", "diurnal"])
def test_endurance_stages_cover_the_duration(duration_s: float, curve: str) -> None:
    stages = endurance_stages(duration_s, 100, curve)
    vu = VUStages(stages)
    assert vu.duration_s == pytest.approx(duration_s)
    assert stages[0].name == "ramp-up"
    assert stages[0].duration_s == min(60.0, duration_s / 10)
    levels = [s.target for s in stages]
    assert all(20 <= users <= 100 for users in levels)
    assert vu.peak_users <= 100
    if curve == "flat":
        assert levels == [100, 100]
    else:
        assert len(stages) == 25
        assert max(levels) == 100  # the afternoon peak
        assert min(levels) == 20  # the 03:00 trough
        assert levels[3] == 20  # segment 3 ends at 03:00
        assert levels[15] == 100  # segment 15 ends at 15:00
        assert levels[0] == round(100 * diurnal_factor(0))
        # Every steady segment lasts the same time.
        steps = {round(s.duration_s, 6) for s in stages[1:]}
        assert len(steps) == 1


def test_endurance_stages_keep_at_least_one_user() -> None:
    stages = endurance_stages(3600, 2, "diurnal", night=0.1)
    assert min(s.target for s in stages) == 1
    assert max(s.target for s in stages) == 2


@pytest.mark.parametrize("duration_s", [600.0, 3600.0, 86_400.0])
def test_endurance_phases(duration_s: float) -> None:
    flat = endurance_phases(duration_s, 50)
    assert len(flat) == 1
    assert flat[0].duration_s == duration_s
    assert flat[0].arrival_rate == flat[0].end_rate == 50
    assert Timetable(flat).expected_arrivals == pytest.approx(50 * duration_s)

    diurnal = endurance_phases(duration_s, 50, "diurnal")
    timetable = Timetable(diurnal)
    assert len(diurnal) == 24
    assert timetable.duration_s == pytest.approx(duration_s)
    for phase in diurnal:
        assert min(phase.arrival_rate, phase.end_rate) >= 0.2 * 50 - 1e-9
        assert max(phase.arrival_rate, phase.end_rate) <= 50 + 1e-9
    # Continuous: each segment starts where the last ended.
    for a, b in itertools.pairwise(diurnal):
        assert b.arrival_rate == pytest.approx(a.end_rate)
    assert diurnal[0].arrival_rate == pytest.approx(50 * diurnal_factor(0))
    assert diurnal[2].end_rate == pytest.approx(10)  # 03:00
    assert diurnal[14].end_rate == pytest.approx(50)  # 15:00
    # The mean of the raised cosine is (1 + night) / 2; the piecewise-linear curve is close.
    assert timetable.expected_arrivals == pytest.approx(50 * duration_s * 0.6, rel=0.01)
