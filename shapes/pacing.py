"""Pacing: when a user runs its next iteration. The one seam between users and load models.

A user of the suite only knows how to run one iteration of its scenario (`iteration()`); the
load model decides when: in a closed loop (k6 stages: as soon as the previous one and the think
time are over), on an arrival's ticket (Artillery phases: when the timetable says so), or all
at once after every user is ready (a burst). The pacing of a run hangs on its Locust
environment, so every run, and every test, gets its own.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import gevent

if TYPE_CHECKING:
    from locust.env import Environment
    from locust.user import User

ATTRIBUTE = "scenario_pacing"


class PacedUser(Protocol):
    environment: Environment

    def iteration(self) -> None: ...

    def set_lateness(self, lateness_s: float) -> None: ...


class Pacing(Protocol):
    def run(self, user: PacedUser) -> None:
        """Run the user's next iteration (or iterations) when the load model says so."""
        ...


class ClosedLoop:
    """k6-style VUs: iterate back to back; the user class's `wait_time` is the think time.

    A user's first iteration starts at a random moment within `stagger_s` of its spawn. Locust
    adds a stage's users in batches, one a second (`shapes.stages`), where k6 adds VUs one by
    one: 140 users starting in the same instant send 140 requests at once, and the generator's
    own queue (one core, one request after the other) then shows as 100 ms of "latency" that
    the gateway never caused. Spread over the second the batch stands for, the ramp is even.
    """

    def __init__(self, stagger_s: float = 1.0) -> None:
        self.stagger_s = stagger_s

    def run(self, user: PacedUser) -> None:
        if self.stagger_s > 0 and not getattr(user, "_staggered", False):
            user._staggered = True  # type: ignore[attr-defined]
            gevent.sleep(random.uniform(0, self.stagger_s))
        user.iteration()


def install_pacing(environment: Environment, pacing: Pacing) -> None:
    setattr(environment, ATTRIBUTE, pacing)


def pacing_of(user: User) -> Pacing:
    return getattr(user.environment, ATTRIBUTE, None) or _CLOSED_LOOP


_CLOSED_LOOP = ClosedLoop()


def listen(runner: Any, msg_type: str, listener: Callable[..., None]) -> None:
    """Route a custom message to `listener`, replacing an earlier listener of the same type.

    Shapes and pacings are rebuilt for every run (the scenario may change in the web UI), and
    Locust's master rebuilds a shape twice at the first start; `register_message` refuses a
    second listener, so the newest object takes the message over instead.
    """
    runner.custom_messages.pop(msg_type, None)
    runner.register_message(msg_type, listener)
