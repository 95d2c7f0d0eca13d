"""The base of the suite's users: one iteration of a scenario, paced by the load model."""

from __future__ import annotations

from typing import Any

from locust import constant, task
from locust.contrib.fasthttp import FastHttpUser

from shapes.pacing import pacing_of


class ScenarioUser(FastHttpUser):
    """A FastHttpUser whose single task is one paced iteration of `iteration()`.

    When an arrival-paced iteration starts late (its due time has passed), the lateness rides
    along in the request context of every request of that iteration, so that the recorder can
    measure latency from the due time.
    """

    abstract = True
    wait_time = constant(0)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._request_context: dict[str, Any] = {}

    def iteration(self) -> None:
        raise NotImplementedError

    @task
    def paced_iteration(self) -> None:
        pacing_of(self).run(self)

    def set_lateness(self, lateness_s: float | None) -> None:
        self._request_context = {} if lateness_s is None else {"lateness_ms": lateness_s * 1000}

    def context(self) -> dict[str, Any]:
        return self._request_context
