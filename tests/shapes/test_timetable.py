"""The open model's timetable: how many arrivals are due, when, and how they are dealt to workers.

Pure arithmetic, no Locust: every test runs in milliseconds.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shapes.timetable import ArrivalPhase, Timetable


def windows(times: list[float], duration_s: float, width: float = 1.0) -> list[int]:
    """How many of `times` fall in each [i * width, (i + 1) * width) window."""
    counts = Counter(math.floor(t / width) for t in times)
    return [counts.get(i, 0) for i in range(math.ceil(duration_s / width))]


def assert_windows_follow(timetable: Timetable, times: list[float]) -> None:
    """Every 1-second window holds the offered number of arrivals (Λ(b) - Λ(a)) to within one."""
    for i, count in enumerate(windows(times, timetable.duration_s)):
        offered = timetable.arrivals_by(i + 1) - timetable.arrivals_by(i)
        assert abs(count - offered) <= 1, (i, count, offered)


# --- ArrivalPhase --------------------------------------------------------------------------


def test_phase_rates_and_expected_arrivals() -> None:
    flat = ArrivalPhase(30, 10)
    assert flat.end_rate == 10
    assert flat.expected_arrivals == 300
    assert flat.rate_at(0) == flat.rate_at(29.9) == 10

    ramp = ArrivalPhase(20, 10, ramp_to=100)
    assert ramp.end_rate == 100
    assert ramp.expected_arrivals == 1100
    assert ramp.rate_at(0) == 10
    assert ramp.rate_at(10) == pytest.approx(55)
    assert ramp.rate_at(20) == pytest.approx(100)
    assert ramp.arrivals_by(20) == pytest.approx(1100)
    assert ramp.arrivals_by(10) == pytest.approx(10 * 10 + 45 * 10 / 2)  # 325

    down = ArrivalPhase(10, 100, ramp_to=0)
    assert down.expected_arrivals == 500
    assert down.rate_at(5) == pytest.approx(50)
    assert down.time_of(500) == pytest.approx(10)


def test_phase_time_of_inverts_arrivals_by() -> None:
    for phase in (ArrivalPhase(20, 10, 100), ArrivalPhase(10, 100, 0), ArrivalPhase(8, 0, 40)):
        for t in (0.0, 0.1, 1.0, 3.3, phase.duration_s / 2, phase.duration_s):
            assert phase.time_of(phase.arrivals_by(t)) == pytest.approx(t, abs=1e-9)


# --- uniform timetables --------------------------------------------------------------------


def test_uniform_constant_rate_is_exact() -> None:
    timetable = Timetable([ArrivalPhase(30, 10)])
    times = list(timetable.due_times())
    assert len(times) == 300
    assert times == sorted(times)
    assert times[0] == 0.0
    assert all(0 <= t < 30 for t in times)
    assert windows(times, 30) == [10] * 30
    # Evenly spaced: one arrival every 100 ms.
    assert all(b - a == pytest.approx(0.1) for a, b in itertools.pairwise(times))


@pytest.mark.parametrize("rate", [1, 7, 33.3, 250])
def test_uniform_windows_hold_rate_within_one(rate: float) -> None:
    timetable = Timetable([ArrivalPhase(12, rate)])
    times = list(timetable.due_times())
    assert len(times) == math.ceil(rate * 12 - 1e-9)
    assert all(abs(count - rate) <= 1 for count in windows(times, 12))


def test_linear_ramp_up() -> None:
    timetable = Timetable([ArrivalPhase(20, 10, ramp_to=100)])
    times = list(timetable.due_times())
    assert len(times) == 1100
    assert times == sorted(times)
    counts = windows(times, 20)
    # The rate is 10 + 4.5 t, so the window [i, i + 1) offers 10 + 4.5 (i + 1/2).
    for i, count in enumerate(counts):
        assert abs(count - (10 + 4.5 * (i + 0.5))) <= 1, (i, count)
    assert counts[0] < counts[10] < counts[-1]
    assert_windows_follow(timetable, times)


def test_linear_ramp_down() -> None:
    timetable = Timetable([ArrivalPhase(10, 100, ramp_to=0)])
    times = list(timetable.due_times())
    assert len(times) == 500
    assert times == sorted(times)
    counts = windows(times, 10)
    for i, count in enumerate(counts):
        assert abs(count - (100 - 10 * (i + 0.5))) <= 1, (i, count)
    assert counts == sorted(counts, reverse=True)
    assert_windows_follow(timetable, times)


def test_rate_zero_phase_produces_nothing() -> None:
    assert list(Timetable([ArrivalPhase(10, 0)]).due_times()) == []
    timetable = Timetable([ArrivalPhase(5, 10), ArrivalPhase(5, 0), ArrivalPhase(5, 10)])
    times = list(timetable.due_times())
    assert len(times) == 100
    assert not [t for t in times if 5 <= t < 10]
    assert times[50] == pytest.approx(10.0)
    assert_windows_follow(timetable, times)


def test_ramp_from_zero_and_zero_to_zero() -> None:
    timetable = Timetable([ArrivalPhase(10, 0, ramp_to=20)])
    times = list(timetable.due_times())  # no ZeroDivisionError at rate 0
    assert len(times) == 100
    assert times[0] == 0.0
    assert times == sorted(times)
    assert_windows_follow(timetable, times)
    # Λ(t) = t², so the k-th arrival is due at √k.
    assert times[25] == pytest.approx(5.0)

    quiet = Timetable([ArrivalPhase(4, 0, ramp_to=0), ArrivalPhase(2, 0, ramp_to=10)])
    times = list(quiet.due_times())
    assert len(times) == 10
    assert min(times) >= 4


def test_chained_phases() -> None:
    phases = [
        ArrivalPhase(10, 5, name="warm-up"),
        ArrivalPhase(20, 5, ramp_to=50, name="ramp"),
        ArrivalPhase(15, 50, name="plateau"),
        ArrivalPhase(5, 50, ramp_to=0, name="cool-down"),
    ]
    timetable = Timetable(phases)
    assert timetable.duration_s == 50
    assert timetable.expected_arrivals == 50 + 550 + 750 + 125
    times = list(timetable.due_times())
    assert len(times) == 1475
    assert times == sorted(times)
    assert max(times) < 50
    assert_windows_follow(timetable, times)
    # Each phase holds its own arrivals.
    assert sum(1 for t in times if t < 10) == 50
    assert sum(1 for t in times if 10 <= t < 30) == 550
    assert sum(1 for t in times if 30 <= t < 45) == 750
    assert sum(1 for t in times if t >= 45) == 125


def test_fractional_expected_arrivals() -> None:
    timetable = Timetable([ArrivalPhase(2.5, 3)])  # 7.5 arrivals offered
    times = list(timetable.due_times())
    assert len(times) == 8  # k = 0..7, all due before the end
    assert max(times) < 2.5


def test_empty_timetable_and_bad_shard_are_refused() -> None:
    with pytest.raises(ValueError):
        Timetable([])
    timetable = Timetable([ArrivalPhase(1, 10)])
    for shard, shards in ((1, 1), (-1, 2), (3, 3)):
        with pytest.raises(ValueError):
            list(timetable.due_times(shard, shards))


# --- sharding --------------------------------------------------------------------------------

RAMPED = [ArrivalPhase(10, 20), ArrivalPhase(20, 20, ramp_to=80), ArrivalPhase(5, 0)]


@pytest.mark.parametrize("shards", [1, 2, 3, 4, 5])
def test_shards_deal_the_timetable_round_robin(shards: int) -> None:
    timetable = Timetable(RAMPED)
    full = list(timetable.due_times())
    assert len(full) == 200 + 1000
    dealt = [list(timetable.due_times(shard, shards)) for shard in range(shards)]
    assert sorted(t for share in dealt for t in share) == full
    for shard, share in enumerate(dealt):
        assert share == full[shard::shards]
        assert len(share) in (len(full) // shards, math.ceil(len(full) / shards))


@pytest.mark.parametrize("shards", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("from_s", [0.0, 7.3, 10.0, 21.77, 34.9, 35.0, 40.0])
def test_redeal_from_an_offset(shards: int, from_s: float) -> None:
    timetable = Timetable(RAMPED)
    full = list(timetable.due_times())
    expected = [t for t in full if t >= from_s]
    dealt = [list(timetable.due_times(shard, shards, from_s)) for shard in range(shards)]
    assert sorted(t for share in dealt for t in share) == expected
    for share in dealt:
        assert share == sorted(share)
        assert all(t >= from_s for t in share)
    sizes = [len(share) for share in dealt]
    assert max(sizes) - min(sizes) <= 1


# --- Poisson -------------------------------------------------------------------------------


def test_poisson_is_reproducible_with_a_seed() -> None:
    phases = [ArrivalPhase(20, 50)]
    first = list(Timetable(phases, "poisson", seed=42).due_times())
    again = list(Timetable(phases, "poisson", seed=42).due_times())
    other = list(Timetable(phases, "poisson", seed=43).due_times())
    assert first == again
    assert first != other
    assert first == sorted(first)
    assert all(0 <= t < 20 for t in first)
    # Not the uniform timetable: the gaps vary.
    gaps = [b - a for a, b in itertools.pairwise(first)]
    assert max(gaps) > 3 * min(gaps)


@pytest.mark.parametrize("seed", range(5))
def test_poisson_count_is_within_four_sigma(seed: int) -> None:
    timetable = Timetable(
        [ArrivalPhase(20, 50), ArrivalPhase(20, 50, ramp_to=150)], "poisson", seed
    )
    expected = 1000 + 2000
    count = sum(1 for _ in timetable.due_times())
    assert abs(count - expected) <= 4 * math.sqrt(expected)


def test_poisson_follows_the_ramp() -> None:
    timetable = Timetable([ArrivalPhase(20, 0, ramp_to=400)], "poisson", seed=7)
    times = list(timetable.due_times())
    first_half = sum(1 for t in times if t < 10)
    second_half = len(times) - first_half
    # Offered: 1000 in the first half, 3000 in the second.
    assert abs(first_half - 1000) <= 4 * math.sqrt(1000)
    assert abs(second_half - 3000) <= 4 * math.sqrt(3000)


def test_poisson_shards_are_independent_and_add_up() -> None:
    timetable = Timetable([ArrivalPhase(30, 100)], "poisson", seed=3)
    expected = 3000
    shares = [list(timetable.due_times(shard, 4)) for shard in range(4)]
    for share in shares:
        assert share == sorted(share)
        assert abs(len(share) - expected / 4) <= 4 * math.sqrt(expected / 4)
    # Independent streams, not copies or shifts of one another.
    assert len({tuple(share[:20]) for share in shares}) == 4
    assert not set(shares[0]) & set(shares[1])
    total = sum(len(share) for share in shares)
    assert abs(total - expected) <= 4 * math.sqrt(expected)
    # Reproducible per shard.
    assert list(timetable.due_times(2, 4)) == shares[2]


def test_poisson_from_an_offset_starts_there() -> None:
    timetable = Timetable([ArrivalPhase(20, 100)], "poisson", seed=11)
    times = list(timetable.due_times(from_s=15.0))
    assert times
    assert min(times) >= 15.0
    assert abs(len(times) - 500) <= 4 * math.sqrt(500)


# --- Λ, Λ⁻¹, rate_at, phase_index_at -------------------------------------------------------


def test_rate_at_and_phase_index_at() -> None:
    timetable = Timetable(RAMPED)
    assert timetable.rate_at(-0.1) == 0
    assert timetable.rate_at(0) == 20
    assert timetable.rate_at(9.99) == 20
    assert timetable.rate_at(10) == 20
    assert timetable.rate_at(20) == pytest.approx(50)
    assert timetable.rate_at(29.999) == pytest.approx(80, abs=0.01)
    assert timetable.rate_at(30) == 0  # the quiet phase
    assert timetable.rate_at(35) == 0  # over
    assert timetable.rate_at(1000) == 0

    assert [timetable.phase_index_at(t) for t in (-5, 0, 9.99, 10, 29.99, 30, 34.9, 35, 99)] == [
        0, 0, 0, 1, 1, 2, 2, 2, 2,
    ]  # fmt: skip
    assert [timetable.phase_start(i) for i in range(3)] == [0, 10, 30]


def test_arrivals_by_clamps_outside_the_run() -> None:
    timetable = Timetable(RAMPED)
    assert timetable.arrivals_by(-3) == 0
    assert timetable.arrivals_by(0) == 0
    assert timetable.arrivals_by(10) == pytest.approx(200)
    assert timetable.arrivals_by(30) == pytest.approx(1200)
    assert timetable.arrivals_by(35) == 1200
    assert timetable.arrivals_by(1e6) == 1200
    assert timetable.time_of(0) == 0
    assert timetable.time_of(200) == pytest.approx(10)
    assert timetable.time_of(1199.999) < 30


# Rates are 0 or at least 0.01/s: below ~1e-6/s, time_of's slope cut-off (1e-12) bites.
RATES = st.just(0.0) | st.floats(0.01, 500)
phase_strategy = st.builds(
    ArrivalPhase,
    duration_s=st.floats(0.1, 100),
    arrival_rate=RATES,
    ramp_to=st.none() | RATES,
)


@settings(max_examples=200, deadline=None)
@given(phases=st.lists(phase_strategy, min_size=1, max_size=5), fraction=st.floats(0, 1))
def test_time_of_inverts_arrivals_by(phases: list[ArrivalPhase], fraction: float) -> None:
    timetable = Timetable(phases)
    total = timetable.expected_arrivals
    # Λ(Λ⁻¹(a)) = a for every count the timetable offers.
    arrivals = fraction * total
    if total > 0 and arrivals < total:
        when = timetable.time_of(arrivals)
        assert 0 <= when <= timetable.duration_s + 1e-9
        assert timetable.arrivals_by(when) == pytest.approx(arrivals, rel=1e-7, abs=1e-6)
    # Λ⁻¹(Λ(t)) = t wherever the rate is positive; across a quiet stretch, a time with the same
    # count (the end of the stretch: the next arrival is due when arrivals resume).
    t = fraction * timetable.duration_s
    back = timetable.time_of(timetable.arrivals_by(t))
    assert 0 <= back <= timetable.duration_s + 1e-9
    assert timetable.arrivals_by(back) == pytest.approx(timetable.arrivals_by(t), abs=1e-6)
    if all(min(p.arrival_rate, p.end_rate) > 0.01 for p in phases):
        assert back == pytest.approx(t, rel=1e-7, abs=1e-6)


@settings(max_examples=100, deadline=None)
@given(phases=st.lists(phase_strategy, min_size=1, max_size=4), t=st.floats(0, 500))
def test_arrivals_by_is_monotone_and_matches_the_rate(phases: list[ArrivalPhase], t: float) -> None:
    timetable = Timetable(phases)
    dt = 1e-3
    before, after = timetable.arrivals_by(t), timetable.arrivals_by(t + dt)
    assert after >= before - 1e-9
    if t + dt < timetable.duration_s and timetable.phase_index_at(t) == timetable.phase_index_at(
        t + dt
    ):
        # dΛ/dt is the rate (the trapezoid is exact for a linear rate).
        mean_rate = (timetable.rate_at(t) + timetable.rate_at(t + dt)) / 2
        assert (after - before) / dt == pytest.approx(mean_rate, rel=1e-4, abs=1e-4)


@settings(max_examples=60, deadline=None)
@given(
    phases=st.lists(
        st.builds(
            ArrivalPhase,
            duration_s=st.floats(0.5, 10),
            arrival_rate=st.just(0.0) | st.floats(0.01, 60),
            ramp_to=st.none() | st.just(0.0) | st.floats(0.01, 60),
        ),
        min_size=1,
        max_size=4,
    ),
    shards=st.integers(1, 5),
    from_fraction=st.floats(0, 1),
)
def test_sharded_redeal_matches_the_full_list(
    phases: list[ArrivalPhase], shards: int, from_fraction: float
) -> None:
    timetable = Timetable(phases)
    full = list(timetable.due_times())
    assert len(full) == math.ceil(timetable.expected_arrivals - 1e-9)
    assert full == sorted(full)
    from_s = from_fraction * timetable.duration_s
    dealt = sorted(t for shard in range(shards) for t in timetable.due_times(shard, shards, from_s))
    expected = [t for t in full if t >= from_s]
    # Only an arrival whose count is Λ(from_s) to within rounding may go either way.
    assert abs(len(dealt) - len(expected)) <= 1
    due = timetable.arrivals_by(from_s)
    for t in set(dealt) ^ set(expected):
        assert abs(full.index(t) - due) < 1e-6, (t, from_s)
