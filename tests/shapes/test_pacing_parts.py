"""The arrival engine's parts on their own: the precise clock, the idle pool, the dealer
behind its timetable, the GC freeze."""

from __future__ import annotations

import gc
import time

import gevent
import pytest
from locust import User, task
from locust.env import Environment

from shapes.arrivals import ArrivalPacing, IdlePool
from shapes.clock import PreciseClock
from shapes.timetable import ArrivalPhase, Timetable
from suite.pauses import FrozenAtStart


def test_the_precise_clock_never_wakes_early_and_lets_others_run() -> None:
    clock = PreciseClock()
    assert clock.precise  # Linux: a timerfd
    ticks = []
    ticker = gevent.spawn(lambda: [ticks.append(gevent.sleep(0.001)) for _ in range(20)])
    try:
        for _ in range(20):
            due = time.monotonic() + 0.002
            clock.sleep_until(due)
            assert time.monotonic() >= due
        clock.sleep_until(time.monotonic() - 1)  # a deadline passed: no wait at all
    finally:
        clock.close()
    ticker.join(timeout=5)
    assert len(ticks) == 20  # the loop kept running while the clock waited


def test_the_clock_falls_back_to_gevent_sleep_without_a_timerfd(monkeypatch) -> None:
    monkeypatch.setattr("shapes.clock._libc", lambda: None)
    clock = PreciseClock()
    assert not clock.precise
    due = time.monotonic() + 0.01
    clock.sleep_until(due)
    assert time.monotonic() >= due - 0.002  # gevent's timer, millisecond resolution
    clock.close()


def test_the_idle_pool_hands_out_last_in_first_out() -> None:
    pool = IdlePool()
    got: dict[str, float] = {}

    def user(name: str) -> None:
        got[name] = pool.wait()

    users = [gevent.spawn(user, name) for name in "abc"]
    gevent.sleep(0)
    assert len(pool) == 3
    assert pool.hand_out(1.0) and pool.hand_out(2.0)
    gevent.sleep(0)
    assert got == {"c": 1.0, "b": 2.0}
    assert len(pool) == 1
    users[0].kill()  # stopped while idle: out of the pool, nothing handed to it
    assert len(pool) == 0 and not pool.hand_out(3.0)


def test_a_user_killed_after_its_arrival_was_handed_out_is_not_resumed() -> None:
    pool = IdlePool()
    user = gevent.spawn(pool.wait)
    gevent.sleep(0)
    assert pool.hand_out(1.0)
    user.kill(block=True)  # before the hand-over ran
    gevent.sleep(0.01)  # the hand-over runs now: it must not switch into a dead greenlet
    assert user.dead and len(pool) == 0


class Nobody(User):
    @task
    def nothing(self) -> None:
        pass


def dealing(rate: float, seconds: float, users: int, busy_s: float) -> tuple[ArrivalPacing, dict]:
    """A dealer at `rate` for `seconds` to `users` idle greenlets (each "request" a 1 ms sleep)
    whose event loop is blocked for `busy_s` at 0.1 s (the generator's own work), with a timer
    due during the block: how many arrivals were dealt before the block and when that timer
    ran, and how many were served."""
    environment = Environment(user_classes=[Nobody])
    environment.create_local_runner()
    pacing = ArrivalPacing(environment, drain_timeout_s=5)
    pool = pacing._pool("Nobody")

    def user() -> None:
        while True:
            pool.wait()
            seen["served"] = seen.get("served", 0) + 1
            gevent.sleep(0.001)

    seen: dict = {}
    greenlets = [gevent.spawn(user) for _ in range(users)]
    gevent.sleep(0)

    def block() -> None:  # the whole loop, as a busy generator would
        seen["before"] = pacing.counters.due
        time.sleep(busy_s)

    gevent.spawn_later(0.1, block)
    gevent.spawn_later(0.1 + busy_s / 2, lambda: seen.update(handed=pacing.counters.due))
    timetable = Timetable([ArrivalPhase(seconds, rate)])
    dealer = gevent.spawn(pacing._deal, timetable, 0, 1, 0.0, {"Nobody": 1.0}, 1)
    dealer.join(timeout=seconds + busy_s + 10)
    gevent.killall(greenlets)
    return pacing, seen


def test_a_dealer_behind_hands_out_a_batch_then_lets_the_loop_run() -> None:
    # 0.3 s blocked at 2,000/s: 600 arrivals due at once. Handed out in one go, the timer due
    # during the block (a response in flight) would run after all of them.
    pacing, seen = dealing(rate=2000, seconds=0.6, users=1000, busy_s=0.3)
    counters = pacing.counters
    # A batch is 32; on a loaded machine the dealer may already be idling when the block ends.
    assert seen["before"] <= 600 and seen["handed"] - seen["before"] <= 64, seen
    assert counters.due == 1200 and counters.dropped == 0, counters


def test_a_dealer_a_second_behind_drops_what_is_that_late() -> None:
    # 1.5 s blocked at 100/s: what fell due in the block's first half second is over 1 s late.
    pacing, seen = dealing(rate=100, seconds=2.0, users=200, busy_s=1.5)
    counters = pacing.counters
    assert counters.due == 200
    assert 40 <= counters.dropped_late <= 60 and counters.dropped == counters.dropped_late
    assert seen["served"] + counters.dropped == counters.due, (seen, counters)


@pytest.fixture
def events():
    from locust.env import Environment

    environment = Environment()
    yield environment.events
    gc.unfreeze()


def test_the_collector_skips_what_was_alive_at_start_until_the_test_stops(events) -> None:
    FrozenAtStart(type("Env", (), {"events": events})())
    assert gc.get_freeze_count() == 0
    events.test_start.fire(environment=None)
    frozen = gc.get_freeze_count()
    assert frozen > 1000  # the suite's imports at least
    events.spawning_complete.fire(user_count=1)
    assert gc.get_freeze_count() >= frozen
    again = gc.get_freeze_count()
    events.spawning_complete.fire(user_count=2)  # later ramps stay collectable
    assert gc.get_freeze_count() == again
    events.test_stop.fire(environment=None)
    assert gc.get_freeze_count() == 0


def test_locusts_per_second_counts_are_trimmed_to_the_last_minutes() -> None:
    from locust.stats import RequestStats

    from suite.stats_trim import KEEP_S, trim

    stats = RequestStats()
    now = 1_790_000_000.0
    for second in range(3600):
        stats.log_request("POST", "/api/webhook", 5, 10)
        stats.get("/api/webhook", "POST").num_reqs_per_sec[int(now) - second] += 1
        stats.total.num_reqs_per_sec[int(now) - second] += 1
        stats.get("/api/webhook", "POST").num_fail_per_sec[int(now) - second] += 1
    assert trim(stats, now) == 3 * (3600 - KEEP_S - 1)  # seconds 121..3599 ago, in 3 dicts
    entry = stats.get("/api/webhook", "POST")
    counts = (entry.num_reqs_per_sec, entry.num_fail_per_sec, stats.total.num_reqs_per_sec)
    for per_second in counts:
        assert min(k for k in per_second if k <= now) >= int(now) - KEEP_S
        assert len([k for k in per_second if k <= now]) <= KEEP_S + 1
    assert entry.num_requests == 3600  # the totals are untouched
