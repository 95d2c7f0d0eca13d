"""A burst: N users get ready, then each fires M iterations at once; the run ends when all answered.

This is the plan's message-concurrency scenario (10 sessions x 50 messages): every user sets
itself up in `on_start` (creates its session and waits until it is ready); its first paced
iteration then reports "ready" and waits. When all N users of the run are ready (summed over the
workers by the master) the master says "fire", and every user runs M iterations concurrently.
Latency is measured from the fire signal. A user that has answered all M stops itself.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import gevent
from gevent.event import Event
from locust import LoadTestShape
from locust.exception import StopUser

from shapes.pacing import PacedUser, install_pacing, listen
from shapes.stage import StageMark

if TYPE_CHECKING:
    from locust.env import Environment
    from locust.user import User

MSG_READY = "burst:ready"
MSG_FIRE = "burst:fire"
MSG_DONE = "burst:done"


class BurstPacing:
    """Worker (or local) side of a burst."""

    def __init__(self, environment: Environment, iterations_per_user: int) -> None:
        self.environment = environment
        self.iterations_per_user = iterations_per_user
        self.fired = Event()
        self.fired_at = 0.0
        runner = environment.runner
        assert runner is not None, "install the burst once the runner exists (init event)"
        listen(runner, MSG_FIRE, self._on_fire)
        environment.events.test_start.add_listener(self._on_test_start)

    def run(self, user: PacedUser) -> None:
        self._send(MSG_READY, {"users": 1})
        self.fired.wait()
        gevent.joinall(
            [gevent.spawn(self._one, user) for _ in range(self.iterations_per_user)],
            raise_error=False,
        )
        # Done once the user has stopped, `on_stop` included (a message sender waits there for
        # its last acks, then deletes its session): the run ends, and kills users, only then.
        greenlet = getattr(user, "greenlet", None)
        if greenlet is not None:
            greenlet.link(lambda _: self._send(MSG_DONE, {"users": 1}))
        else:
            self._send(MSG_DONE, {"users": 1})
        raise StopUser()

    def _one(self, user: PacedUser) -> None:
        user.set_lateness(max(0.0, time.monotonic() - self.fired_at))
        user.iteration()

    def _on_fire(self, environment: Environment, msg: Any, **_: Any) -> None:
        self.fired_at = time.monotonic()
        self.fired.set()

    def _on_test_start(self, **_: Any) -> None:
        self.fired.clear()

    def _send(self, msg_type: str, data: dict[str, Any]) -> None:
        runner = self.environment.runner
        if runner is not None:
            runner.send_message(msg_type, data)


class BurstShape(LoadTestShape):
    """Master (or local) side: spawn N users, fire when all are ready, end when all are done."""

    abstract = True  # built by the scenario wiring

    def __init__(
        self,
        users: int,
        user_classes: list[type[User]] | None = None,
        timeout_s: float = 300.0,
        spawn_rate: float = 100.0,
    ) -> None:
        super().__init__()
        self.users = users
        self.user_classes = user_classes
        self.timeout_s = timeout_s
        self.spawn_rate = spawn_rate
        self._registered_on: object | None = None
        self._reset()

    def _reset(self) -> None:
        self.ready = 0
        self.done = 0
        self.fired_at: float | None = None

    def reset_time(self) -> None:
        super().reset_time()
        self._reset()

    def describe(self) -> str:
        state = "fired" if self.fired_at is not None else "getting ready"
        return f"burst {state} | ready {self.ready}/{self.users} | done {self.done}/{self.users}"

    def current_stage(self) -> StageMark:
        if self.fired_at is None:
            return StageMark(0, "getting ready", "users", self.users, self.users)
        return StageMark(1, "burst", "users", self.users, self.users)

    def tick(self) -> tuple[int, float, list[type[User]] | None] | None:
        self._register()
        if self.done >= self.users or self.get_run_time() > self.timeout_s:
            return None
        return self.users, self.spawn_rate, self.user_classes

    def _register(self) -> None:
        runner = self.runner
        if self._registered_on is runner:
            return
        self._registered_on = runner
        listen(runner, MSG_READY, self._on_ready)
        listen(runner, MSG_DONE, self._on_done)

    def _on_ready(self, environment: Environment, msg: Any, **_: Any) -> None:
        self.ready += msg.data["users"]
        if self.ready >= self.users and self.fired_at is None:
            self.fired_at = self.get_run_time()
            # A broadcast to every worker (locally, the message comes straight back).
            self.runner.send_message(MSG_FIRE, None)

    def _on_done(self, environment: Environment, msg: Any, **_: Any) -> None:
        self.done += msg.data["users"]


def install_burst(environment: Environment, iterations_per_user: int) -> BurstPacing:
    """Make this process's users burst-paced (call from Locust's `init` event)."""
    pacing = BurstPacing(environment, iterations_per_user)
    install_pacing(environment, pacing)
    return pacing
