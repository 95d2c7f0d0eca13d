"""Pacing: when a user runs its next iteration. The one seam between users and load models.

A user of the suite only knows how to run one iteration of its scenario (`iteration()`); the
load model decides when: in a closed loop (k6 stages: as soon as the previous one and the think
time are over), on an arrival's ticket (Artillery phases: when the timetable says so), or all
at once after every user is ready (a burst). The pacing of a run hangs on its Locust
environment, so every run, and every test, gets its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

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
    """k6-style VUs: iterate back to back; the user class's `wait_time` is the think time."""

    def run(self, user: PacedUser) -> None:
        user.iteration()


def install_pacing(environment: Environment, pacing: Pacing) -> None:
    setattr(environment, ATTRIBUTE, pacing)


def pacing_of(user: User) -> Pacing:
    return getattr(user.environment, ATTRIBUTE, None) or _CLOSED_LOOP


_CLOSED_LOOP = ClosedLoop()
