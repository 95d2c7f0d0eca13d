"""k6-style VU stages as data: linear ramps of concurrent users, the count at any moment.

Each stage ramps linearly from the previous stage's target (or `start_users`) to its own
`target` over its `duration_s`. Without Locust: scenarios and criteria are read (the live
verdict's process among them) without importing it; `shapes.stages.StagesShape` drives
Locust's user count along them.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class VUStage:
    duration_s: float
    target: int
    name: str | None = None


class VUStages:
    """The user count over time of a list of stages."""

    def __init__(self, stages: Sequence[VUStage], start_users: int = 0) -> None:
        if not stages:
            raise ValueError("at least one stage is needed")
        self.stages = tuple(stages)
        self.start_users = start_users
        self._starts: list[float] = []
        elapsed = 0.0
        for stage in self.stages:
            self._starts.append(elapsed)
            elapsed += stage.duration_s
        self.duration_s = elapsed

    @property
    def peak_users(self) -> int:
        return max(self.start_users, *(s.target for s in self.stages))

    def stage_index_at(self, t: float) -> int:
        return max(0, min(bisect.bisect_right(self._starts, t) - 1, len(self.stages) - 1))

    def stage_start(self, index: int) -> float:
        return self._starts[index]

    def users_at(self, t: float) -> float:
        if t >= self.duration_s:
            return float(self.stages[-1].target)
        index = self.stage_index_at(max(0.0, t))
        stage = self.stages[index]
        before = self.stages[index - 1].target if index else self.start_users
        if stage.duration_s <= 0:
            return float(stage.target)
        progress = (t - self._starts[index]) / stage.duration_s
        return before + (stage.target - before) * progress
