"""k6-style VU stages: linear ramps of concurrent users, recomputed every tick (closed model).

Each stage ramps linearly from the previous stage's target (or `start_users`) to its own
`target` over its `duration_s`. Every tick (Locust ticks shapes once a second) the shape asks
for the user count the ramp has at that moment, with a spawn rate that reaches it at once: the
running count follows the line in one-second steps. One `spawn_rate` per stage, as with
Locust's own examples, lets a slow ramp swallow the next stage; this cannot.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from locust import LoadTestShape

from shapes.stage import StageMark

if TYPE_CHECKING:
    from locust.user import User


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


class StagesShape(LoadTestShape):
    """Drives Locust's user count along `VUStages`; ends the run when the last stage ends."""

    abstract = True  # built by the scenario wiring

    def __init__(self, stages: VUStages, user_classes: Sequence[type[User]] | None = None) -> None:
        super().__init__()
        self.stages = stages
        self.user_classes = list(user_classes) if user_classes else None

    def describe(self) -> str:
        t = min(self.get_run_time(), self.stages.duration_s)
        index = self.stages.stage_index_at(t)
        return (
            f"stage {index + 1}/{len(self.stages.stages)} | {t:.0f}s/{self.stages.duration_s:.0f}s"
            f" | target {self.stages.users_at(t):.0f} users"
        )

    def current_stage(self) -> StageMark:
        stages = self.stages
        t = min(self.get_run_time(), stages.duration_s)
        index = stages.stage_index_at(t)
        stage = stages.stages[index]
        before = stages.stages[index - 1].target if index else stages.start_users
        name = stage.name or f"stage {index + 1}"
        return StageMark(index, name, "users", before, stage.target, t - stages.stage_start(index))

    def tick(self) -> tuple[int, float, list[type[User]] | None] | None:
        t = self.get_run_time()
        if t >= self.stages.duration_s:
            return None
        target = round(self.stages.users_at(t))
        # Locust spawns floor(rate) users at once every floor(rate)/rate s: a rate of the whole
        # step makes the step happen now, not spread over the second after it.
        spawn_rate = float(max(1, abs(target - self.get_current_user_count())))
        return target, spawn_rate, self.user_classes
