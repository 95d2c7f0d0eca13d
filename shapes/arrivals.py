"""Open-model arrivals on Locust: a pool of users, a timetable, and latency from the due time.

Locust only has closed-model users, which slow down when the server does and so hide its
stalls. Here, as in k6's arrival-rate executors, a pool of users waits idle and the worker's
`ArrivalPacing` hands each arrival, at its due time, to an idle user of the chosen class:

- the timetable (`Timetable`) is fixed in advance, so the offered rate never depends on the server;
- the user runs one iteration and records how late it started (`set_lateness`), so latency is
  measured from the due time: queueing behind a stalled server or a busy generator counts;
- an arrival that finds no idle user (the pool, `max_in_flight`, is exhausted) is counted as
  dropped (k6's `dropped_iterations`), never silently skipped or delayed;
- a dealer that falls behind its timetable (the generator's own CPU is the limit) hands out
  the due arrivals a batch at a time, letting the requests in flight be read in between, and
  drops, as `dropped_late`, what it reaches more than `GIVE_UP_S` late.

Handing a backlog out all at once started as many requests as there were idle users, whose
responses then waited behind the new requests' sends: the pool ran dry and arrivals were
dropped with the generator at 60 % of the rate it serves when overloaded (docs/benchmarks.md).
Behind, the arrivals start late instead, and the lateness is measured.

The master's `ArrivalShape` sizes the pool, deals the timetable to the workers with a custom
message once the pool is spawned (worker i of n takes arrivals i, i+n, ...), deals again if the
set of workers changes, and ends the run when every worker has drained its share.
A local run uses the same messages, delivered in-process by Locust's `LocalRunner`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

import gevent
import greenlet
from locust import LoadTestShape
from locust.runners import STATE_RUNNING, MasterRunner
from locust.user.users import (
    LOCUST_STATE_RUNNING,
    LOCUST_STATE_STOPPING,
    LOCUST_STATE_WAITING,
)

from shapes.clock import PreciseClock
from shapes.pacing import ATTRIBUTE, PacedUser, install_pacing, listen
from shapes.stage import StageMark
from shapes.timetable import ArrivalPhase, Timetable

if TYPE_CHECKING:
    from locust.env import Environment
    from locust.user import User

MSG_START = "arrivals:start"
MSG_DRAINED = "arrivals:drained"
LOCAL_CLIENT = "local"
TIMER_SLACK_S = 0.002
SPIN_MIN_GAP_S = 5 * TIMER_SLACK_S  # spin at most a fifth of the time
PRECISE_MIN_GAP_S = 0.002  # arrivals this far apart are woken by a timerfd (shapes.clock)
BEHIND_S = 0.002  # a dealer this late is held up by the generator's own work, not by its timer
BEHIND_BATCH = 32  # arrivals handed out, when behind, before the requests in flight go first
GIVE_UP_S = 1.0  # an arrival the dealer reaches this late is dropped: the generator is overloaded

log = logging.getLogger("shapes.arrivals")


@dataclass
class ArrivalCounters:
    """What happened to the arrivals of one worker (or, summed, of the run)."""

    due: int = 0  # arrivals whose due time has come
    started: int = 0
    dropped: int = 0
    dropped_late: int = 0  # of `dropped`: reached by the dealer over `GIVE_UP_S` late
    completed: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    max_lateness_ms: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def total(cls, parts: Sequence[dict[str, float]]) -> ArrivalCounters:
        total = cls()
        for part in parts:
            for f in fields(cls):
                value = part.get(f.name, 0)
                if f.name.startswith("max_"):
                    setattr(total, f.name, max(getattr(total, f.name), value))
                else:
                    setattr(total, f.name, getattr(total, f.name) + value)
        return total


class IdlePool:
    """Users of one class waiting for an arrival; the most recently idle goes first.

    Last in, first out keeps a small set of users (and their warm connections) busy while the
    rest of the pool waits untouched, instead of cycling every arrival through every user.
    A waiting user is parked on the hub and switched to with its arrival's due time (a
    `time.monotonic()` value): the cheapest hand-over gevent has, since it happens for every
    arrival (an `AsyncResult` per arrival cost a twentieth of the generator at 3,000/s).
    """

    def __init__(self) -> None:
        self._waiting: list[greenlet.greenlet] = []
        self._hub = gevent.get_hub()

    def __len__(self) -> int:
        return len(self._waiting)

    def wait(self) -> float:
        """Block until an arrival is handed out; its due time."""
        me = greenlet.getcurrent()
        self._waiting.append(me)
        try:
            return self._hub.switch()
        except BaseException:
            # The user was stopped while idle: take it out so no arrival is handed to it.
            if me in self._waiting:
                self._waiting.remove(me)
            raise

    def hand_out(self, due: float) -> bool:
        if not self._waiting:
            return False
        self._hub.loop.run_callback(_resume, self._waiting.pop(), due)
        return True


def _resume(waiting: greenlet.greenlet, due: float) -> None:
    # A user killed after it was handed an arrival, before it ran, is not resumed.
    if not waiting.dead:
        waiting.switch(due)


class WeightedChoice:
    """Smooth weighted round robin: exact proportions, evenly interleaved, no randomness."""

    def __init__(self, weights: dict[str, float]) -> None:
        self._weights = {name: w for name, w in weights.items() if w > 0}
        self._total = sum(self._weights.values())
        self._current = dict.fromkeys(self._weights, 0.0)
        if len(self._weights) == 1:
            only = next(iter(self._weights))
            self.next = lambda: only  # type: ignore[method-assign]  # per arrival: no arithmetic

    def next(self) -> str:
        for name, weight in self._weights.items():
            self._current[name] += weight
        chosen = max(self._current, key=self._current.__getitem__)
        self._current[chosen] -= self._total
        return chosen


def timetable_to_message(timetable: Timetable) -> dict[str, Any]:
    return {
        "phases": [asdict(p) for p in timetable.phases],
        "distribution": timetable.distribution,
        "seed": timetable.seed,
    }


def timetable_from_message(data: dict[str, Any]) -> Timetable:
    return Timetable(
        [ArrivalPhase(**p) for p in data["phases"]], data["distribution"], data["seed"]
    )


class ArrivalPacing:
    """The worker side (or local runner): fires this worker's share of arrivals at idle users."""

    def __init__(self, environment: Environment, drain_timeout_s: float = 30.0) -> None:
        self.environment = environment
        self.drain_timeout_s = drain_timeout_s
        self.counters = ArrivalCounters()
        self._pools: dict[str, IdlePool] = {}
        self._dealer: gevent.Greenlet | None = None
        self._deal_id = 0
        runner = environment.runner
        assert runner is not None, "install arrivals once the runner exists (init event)"
        listen(runner, MSG_START, self._on_start)
        environment.events.test_start.add_listener(self._on_test_start)
        environment.events.test_stop.add_listener(lambda **_: self.stop())
        environment.events.report_to_master.add_listener(self._on_report_to_master)

    # --- the user's side -------------------------------------------------------------------

    def run(self, user: PacedUser) -> None:
        """Serve arrivals until the user is stopped, without going back to Locust's task loop
        in between: that trip (a `sleep(0)` behind every other ready greenlet) left a loaded
        generator with users neither idle nor busy, and arrivals dropped with users to spare.
        While idle the user counts as waiting, so a graceful stop ends it at once."""
        pool = self._pool(type(user).__name__)
        while True:
            user._state = LOCUST_STATE_WAITING  # type: ignore[attr-defined]
            due = pool.wait()
            user._state = LOCUST_STATE_RUNNING  # type: ignore[attr-defined]
            counters = self.counters
            counters.started += 1
            counters.in_flight += 1
            counters.max_in_flight = max(counters.max_in_flight, counters.in_flight)
            lateness_s = max(0.0, time.monotonic() - due)
            counters.max_lateness_ms = max(counters.max_lateness_ms, lateness_s * 1000)
            user.set_lateness(lateness_s)
            try:
                user.iteration()
            finally:
                user.set_lateness(None)
                counters.in_flight -= 1
                counters.completed += 1
                stopping = user._state == LOCUST_STATE_STOPPING  # type: ignore[attr-defined]
            if stopping:
                return

    def _pool(self, class_name: str) -> IdlePool:
        pool = self._pools.get(class_name)
        if pool is None:
            pool = self._pools[class_name] = IdlePool()
        return pool

    # --- the dealer's side -----------------------------------------------------------------

    def _on_start(self, environment: Environment, msg: Any, **_: Any) -> None:
        data = msg.data
        self.stop()
        self._deal_id = data["deal"]
        timetable = timetable_from_message(data["timetable"])
        self._dealer = gevent.spawn(
            self._deal,
            timetable,
            data["shard"],
            data["shards"],
            data["from_s"],
            data["weights"],
            data["deal"],
        )

    def _deal(
        self,
        timetable: Timetable,
        shard: int,
        shards: int,
        from_s: float,
        weights: dict[str, float],
        deal: int,
    ) -> None:
        t0 = time.monotonic() - from_s
        choose = WeightedChoice(weights)
        counters = self.counters
        clock = PreciseClock()
        previous = -math.inf
        behind = 0
        try:
            for due_s in timetable.due_times(shard, shards, from_s):
                due = t0 + due_s
                gap_s = due_s - previous
                previous = due_s
                # A timer of its own costs three system calls per arrival: worth it when arrivals
                # are sparse (the loop would sleep through the millisecond gevent's timer adds);
                # when they are dense the loop is awake anyway and gevent's timers batch them.
                if clock.precise and gap_s >= PRECISE_MIN_GAP_S:
                    clock.sleep_until(due)
                else:
                    _coarse_sleep_until(due, gap_s)
                counters.due += 1
                late_s = time.monotonic() - due
                if late_s > BEHIND_S:
                    if late_s > GIVE_UP_S:
                        counters.dropped += 1
                        counters.dropped_late += 1
                        continue
                    behind += 1
                    if behind % BEHIND_BATCH == 0:
                        gevent.idle()
                if not self._pool(choose.next()).hand_out(due):
                    counters.dropped += 1
        finally:
            clock.close()
        # Let the last iterations finish, within a bound, then tell the master.
        deadline = time.monotonic() + self.drain_timeout_s
        while counters.in_flight > 0 and time.monotonic() < deadline:
            gevent.sleep(0.05)
        self._send(MSG_DRAINED, {"deal": deal, "counters": counters.as_dict()})

    def stop(self) -> None:
        if self._dealer is not None:
            self._dealer.kill(block=False)
            self._dealer = None

    def _send(self, msg_type: str, data: dict[str, Any]) -> None:
        runner = self.environment.runner
        if runner is not None:
            runner.send_message(msg_type, data)

    def _on_test_start(self, **_: Any) -> None:
        self.counters = ArrivalCounters()

    def _on_report_to_master(self, client_id: str, data: dict[str, Any]) -> None:
        data["arrivals"] = self.counters.as_dict()


def _coarse_sleep_until(due: float, gap_s: float) -> None:
    """With gevent's timers, which fire up to a millisecond late (dense arrivals, or no timerfd).
    When arrivals are sparse, wake a little early and yield, when the loop is idle, until the
    due time; when they are dense, that would keep the process busy all the time and slow every
    request down, so the timer's own lateness (under a millisecond) is accepted, and measured."""
    spin = gap_s >= SPIN_MIN_GAP_S
    wait = due - time.monotonic()
    if wait > (TIMER_SLACK_S if spin else 0.0):
        gevent.sleep(wait - (TIMER_SLACK_S if spin else 0.0))
    while spin and time.monotonic() < due:
        gevent.sleep(0)


class ArrivalShape(LoadTestShape):
    """Master (or local) side: spawn the pool, deal the timetable, stop when all have drained."""

    abstract = True  # built by the scenario wiring, not picked up from a locustfile by Locust

    def __init__(
        self,
        timetable: Timetable,
        user_classes: Sequence[type[User]],
        max_in_flight: int,
        spawn_rate: float = 1000.0,
        drain_timeout_s: float = 30.0,
        spawn_timeout_s: float = 60.0,
    ) -> None:
        super().__init__()
        self.timetable = timetable
        self.user_classes = list(user_classes)
        self.max_in_flight = max_in_flight
        self.spawn_rate = spawn_rate
        self.drain_timeout_s = drain_timeout_s
        self.spawn_timeout_s = spawn_timeout_s
        self._registered_on: object | None = None
        self._reset()

    def _reset(self) -> None:
        self.started_at: float | None = None
        self.deal = 0
        self.dealt_to: tuple[str, ...] = ()
        self.drained: set[str] = set()
        self.reports: dict[str, dict[str, float]] = {}
        self.lost_workers: list[tuple[float, str]] = []

    def reset_time(self) -> None:
        super().reset_time()
        self._reset()

    @property
    def weights(self) -> dict[str, float]:
        return {cls.__name__: float(getattr(cls, "weight", 1) or 1) for cls in self.user_classes}

    def elapsed(self) -> float:
        return 0.0 if self.started_at is None else time.monotonic() - self.started_at

    def describe(self) -> str:
        """Progress: phase, time, offered rate, dropped arrivals."""
        timetable = self.timetable
        elapsed = min(self.elapsed(), timetable.duration_s)
        index = timetable.phase_index_at(elapsed)
        dropped = self.counters().dropped
        phases, total_s = len(timetable.phases), timetable.duration_s
        return (
            f"phase {index + 1}/{phases} | {elapsed:.0f}s/{total_s:.0f}s"
            f" | {timetable.rate_at(elapsed):.0f} arrivals/s | dropped {dropped}"
        )

    def current_stage(self) -> StageMark:
        timetable = self.timetable
        elapsed = min(self.elapsed(), timetable.duration_s)
        index = timetable.phase_index_at(elapsed)
        phase = timetable.phases[index]
        name = phase.name or f"phase {index + 1}"
        into = elapsed - timetable.phase_start(index) if self.started_at is not None else 0.0
        return StageMark(index, name, "arrivals/s", phase.arrival_rate, phase.end_rate, into)

    def on_spawned(self) -> None:
        """All users are up (Locust's `spawning_complete`): start the timetable now rather
        than at the next tick, up to a second later."""
        if self.started_at is None and self.runner is not None:
            self.started_at = time.monotonic()
            self._deal(from_s=0.0)

    def counters(self) -> ArrivalCounters:
        """The run's arrival counters so far (workers report every few seconds)."""
        if not isinstance(self.runner, MasterRunner):
            pacing = getattr(self.runner.environment, ATTRIBUTE, None)
            if isinstance(pacing, ArrivalPacing):
                return pacing.counters
        return ArrivalCounters.total(list(self.reports.values()))

    def tick(self) -> tuple[int, float, list[type[User]]] | None:
        self._register()
        load = (self.max_in_flight, self.spawn_rate, self.user_classes)
        if self.started_at is None:
            spawned = self.runner.state == STATE_RUNNING and (
                self.runner.user_count >= self.max_in_flight
            )
            if spawned or self.get_run_time() > self.spawn_timeout_s:
                self.started_at = time.monotonic()
                self._deal(from_s=0.0)
            return load
        elapsed = self.elapsed()
        workers = self._workers()
        if workers != self.dealt_to and elapsed < self.timetable.duration_s:
            for lost in set(self.dealt_to) - set(workers):
                self.lost_workers.append((elapsed, lost))
                log.warning("worker %s lost at %.1f s: dealing arrivals again", lost, elapsed)
            self._deal(from_s=elapsed)
        if elapsed >= self.timetable.duration_s:
            all_drained = set(self.dealt_to) <= self.drained
            if all_drained or elapsed >= self.timetable.duration_s + self.drain_timeout_s:
                return None
        return load

    def _workers(self) -> tuple[str, ...]:
        runner = self.runner
        if isinstance(runner, MasterRunner):
            return tuple(sorted(node.id for node in runner.clients.values() if node.state in (
                "ready", "spawning", "running")))  # fmt: skip
        return (LOCAL_CLIENT,)

    def _deal(self, from_s: float) -> None:
        self.deal += 1
        self.dealt_to = self._workers()
        self.drained = set()
        for shard, client_id in enumerate(self.dealt_to):
            data = {
                "deal": self.deal,
                "shard": shard,
                "shards": len(self.dealt_to),
                "from_s": from_s,
                "weights": self.weights,
                "timetable": timetable_to_message(self.timetable),
            }
            if isinstance(self.runner, MasterRunner):
                self.runner.send_message(MSG_START, data, client_id=client_id)
            else:
                self.runner.send_message(MSG_START, data)

    def _register(self) -> None:
        runner = self.runner
        if self._registered_on is runner:
            return
        self._registered_on = runner
        listen(runner, MSG_DRAINED, self._on_drained)
        runner.environment.events.worker_report.add_listener(self._on_worker_report)

    def _on_drained(self, environment: Environment, msg: Any, **_: Any) -> None:
        if msg.data["deal"] == self.deal:
            self.drained.add(msg.node_id)
        self.reports[msg.node_id] = msg.data["counters"]

    def _on_worker_report(self, client_id: str, data: dict[str, Any]) -> None:
        if "arrivals" in data:
            self.reports[client_id] = data["arrivals"]


def install_arrivals(environment: Environment, drain_timeout_s: float = 30.0) -> ArrivalPacing:
    """Make this process's users arrival-paced (call from Locust's `init` event)."""
    pacing = ArrivalPacing(environment, drain_timeout_s)
    install_pacing(environment, pacing)
    return pacing
