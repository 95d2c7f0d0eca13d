"""k6-style VU stages: linear ramps of concurrent users, recomputed every tick (closed model).

Each stage ramps linearly from the previous stage's target (or `start_users`) to its own
`target` over its `duration_s`. Every tick (Locust ticks shapes once a second) the shape asks
for the user count the ramp has at that moment, with a spawn rate that reaches it at once: the
running count follows the line in one-second steps. One `spawn_rate` per stage, as with
Locust's own examples, lets a slow ramp swallow the next stage; this cannot. The stages as
data, without Locust, are `shapes.vu_stages`'s.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from locust import LoadTestShape

from shapes.stage import StageMark
from shapes.vu_stages import VUStage, VUStages

__all__ = ["StagesShape", "VUStage", "VUStages"]

if TYPE_CHECKING:
    from locust.user import User


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
