"""The timetable of an open model: when each arrival is due, for Artillery-style arrival phases.

A phase offers `arrival_rate` new arrivals per second for `duration_s` seconds, ramping linearly to
`ramp_to` when given. The cumulative number of arrivals due by time t, Λ(t), is the integral of
the rate; the k-th arrival (k = 0, 1, ...) of the uniform timetable is due at Λ⁻¹(k), so any
window holds the offered number of arrivals to within one. A Poisson timetable draws unit-mean
exponential gaps in Λ-space instead (a non-homogeneous Poisson process by time rescaling).

Arrivals are dealt to `shards` workers like cards: shard i takes arrivals i, i + shards, ...
Each worker computes its own share from the same timetable, so the total rate holds exactly
whatever the number of workers, and a new deal can start from any time (a worker was lost).
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

Distribution = Literal["uniform", "poisson"]


@dataclass(frozen=True)
class ArrivalPhase:
    """`duration_s` seconds of arrivals at `arrival_rate`/s, or ramping linearly to `ramp_to`/s."""

    duration_s: float
    arrival_rate: float
    ramp_to: float | None = None
    name: str | None = None

    @property
    def end_rate(self) -> float:
        return self.arrival_rate if self.ramp_to is None else self.ramp_to

    @property
    def expected_arrivals(self) -> float:
        return (self.arrival_rate + self.end_rate) / 2 * self.duration_s

    def rate_at(self, t: float) -> float:
        """Offered rate `t` seconds into the phase."""
        if self.duration_s <= 0:
            return self.arrival_rate
        return self.arrival_rate + (self.end_rate - self.arrival_rate) * t / self.duration_s

    def arrivals_by(self, t: float) -> float:
        """Λ within the phase: arrivals due in its first `t` seconds."""
        slope = (self.end_rate - self.arrival_rate) / self.duration_s if self.duration_s else 0.0
        return self.arrival_rate * t + slope * t * t / 2

    def time_of(self, arrivals: float) -> float:
        """Λ⁻¹ within the phase: when `arrivals` (0 <= arrivals <= expected) are due."""
        if arrivals <= 0:
            return 0.0
        r0 = self.arrival_rate
        half_slope = (self.end_rate - r0) / (2 * self.duration_s) if self.duration_s else 0.0
        if abs(half_slope) < 1e-12:
            return arrivals / r0
        # Root of half_slope t² + r0 t - arrivals = 0, in the form that stays exact as slope -> 0.
        discriminant = max(0.0, r0 * r0 + 4 * half_slope * arrivals)
        return 2 * arrivals / (r0 + math.sqrt(discriminant))


class Timetable:
    """Due times (seconds from the start of the run) of the arrivals of a list of phases."""

    def __init__(
        self,
        phases: Sequence[ArrivalPhase],
        distribution: Distribution = "uniform",
        seed: int | None = None,
    ) -> None:
        if not phases:
            raise ValueError("a timetable needs at least one phase")
        self.phases = tuple(phases)
        self.distribution = distribution
        self.seed = seed
        self._starts: list[float] = []  # time each phase starts
        self._due_before: list[float] = []  # Λ at each phase start
        elapsed, due = 0.0, 0.0
        for phase in self.phases:
            self._starts.append(elapsed)
            self._due_before.append(due)
            elapsed += phase.duration_s
            due += phase.expected_arrivals
        self.duration_s = elapsed
        self.expected_arrivals = due

    def phase_index_at(self, t: float) -> int:
        """The phase running at time `t` (the last one once the timetable is over)."""
        return max(0, min(bisect.bisect_right(self._starts, t) - 1, len(self.phases) - 1))

    def phase_start(self, index: int) -> float:
        return self._starts[index]

    def rate_at(self, t: float) -> float:
        if t < 0 or t >= self.duration_s:
            return 0.0
        index = self.phase_index_at(t)
        return self.phases[index].rate_at(t - self._starts[index])

    def arrivals_by(self, t: float) -> float:
        """Λ(t): arrivals due in [0, t)."""
        if t <= 0:
            return 0.0
        if t >= self.duration_s:
            return self.expected_arrivals
        index = self.phase_index_at(t)
        return self._due_before[index] + self.phases[index].arrivals_by(t - self._starts[index])

    def time_of(self, arrivals: float) -> float:
        """Λ⁻¹: when the arrival count reaches `arrivals`."""
        index = bisect.bisect_right(self._due_before, arrivals) - 1
        # Skip phases that offer nothing (rate 0 throughout) or that this count has passed.
        while index < len(self.phases) - 1 and (
            arrivals >= self._due_before[index] + self.phases[index].expected_arrivals
        ):
            index += 1
        phase = self.phases[index]
        return self._starts[index] + phase.time_of(arrivals - self._due_before[index])

    def due_times(self, shard: int = 0, shards: int = 1, from_s: float = 0.0) -> Iterator[float]:
        """Due times of this shard's arrivals at or after `from_s`, in order."""
        if not 0 <= shard < shards:
            raise ValueError(f"shard {shard} is not in 0..{shards - 1}")
        if self.distribution == "poisson":
            yield from self._poisson(shard, shards, from_s)
            return
        total = self.expected_arrivals
        # The first global index k >= Λ(from_s) with k ≡ shard (mod shards).
        first = math.ceil(self.arrivals_by(from_s) - 1e-9)
        k = first + (shard - first) % shards
        while k < total - 1e-9:
            yield self.time_of(k)
            k += shards

    def _poisson(self, shard: int, shards: int, from_s: float) -> Iterator[float]:
        # Each shard is an independent Poisson process at 1/shards of the rate; their sum is
        # a Poisson process at the full rate. Seeded per shard so runs can be repeated.
        rng = random.Random(None if self.seed is None else self.seed * 1_000_003 + shard)
        position = self.arrivals_by(from_s)
        total = self.expected_arrivals
        while True:
            position += rng.expovariate(1.0) * shards
            if position >= total:
                return
            yield self.time_of(position)
