"""The delivery tracker: acks matched to sends, early acks, expiry in time order."""

from __future__ import annotations

from collections import Counter

import gevent
import pytest

from users.delivery import MAX_EARLY_ACKS, DeliveryTracker

NAME = "message delivered"


class Clock:
    """A fake `time.perf_counter`: it says what the test sets."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Events:
    """What a tracker reports and counts."""

    def __init__(self) -> None:
        self.reports: list[tuple[str, float, Exception | None]] = []
        self.counts: Counter[str] = Counter()

    def report(self, name: str, started: float, exception: Exception | None) -> None:
        self.reports.append((name, started, exception))

    def count(self, name: str) -> None:
        self.counts[name] += 1

    def outcomes(self) -> list[tuple[float, str]]:
        """(when sent, "ok" or the exception's text), in the order reported."""
        return [
            (started, "ok" if error is None else str(error)) for _, started, error in self.reports
        ]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def events() -> Events:
    return Events()


@pytest.fixture
def tracker(clock: Clock, events: Events) -> DeliveryTracker:
    return DeliveryTracker(events.report, events.count, timeout_s=30, clock=clock)


@pytest.mark.parametrize("outcome", ["device", "read"])
def test_a_device_or_read_ack_delivers(
    tracker: DeliveryTracker, clock: Clock, events: Events, outcome: str
) -> None:
    clock.now = 1.0
    tracker.sent("m1")
    clock.now = 2.5
    tracker.acked("m1", outcome)
    assert events.reports == [(NAME, 1.0, None)]
    assert events.counts == {"messages_delivered": 1}
    assert tracker.pending == 0


def test_a_failed_ack_is_a_failure(tracker: DeliveryTracker, events: Events) -> None:
    tracker.sent("m1")
    tracker.acked("m1", "failed")
    assert events.outcomes() == [(0.0, "ack failed")]
    assert isinstance(events.reports[0][2], RuntimeError)
    assert events.counts == {"messages_failed": 1}


def test_a_server_ack_is_counted_and_the_message_waits_on(
    tracker: DeliveryTracker, events: Events
) -> None:
    tracker.sent("m1")
    tracker.acked("m1", "server")
    assert events.reports == [] and tracker.pending == 1
    assert events.counts == {"messages_server_acked": 1}
    tracker.acked("m1", "device")
    assert events.outcomes() == [(0.0, "ok")]


def test_acks_settle_only_their_own_message(tracker: DeliveryTracker, events: Events) -> None:
    for message_id in ("m1", "m2", "m3"):
        tracker.sent(message_id)
    tracker.acked("m2", "device")
    tracker.acked("m2", "read")  # after it was settled: nothing more
    assert len(events.reports) == 1 and tracker.pending == 2


def test_an_early_ack_settles_its_send_at_once(
    tracker: DeliveryTracker, clock: Clock, events: Events
) -> None:
    clock.now = 5.0
    tracker.acked("m1", "device")  # read before the send's answer was
    tracker.acked("m2", "failed")
    assert events.reports == [] and tracker.pending == 0
    clock.now = 6.0
    tracker.sent("m1")
    tracker.sent("m2")
    assert events.outcomes() == [(6.0, "ok"), (6.0, "ack failed")]  # 0 ms after the answer
    assert tracker.pending == 0


def test_an_early_server_ack_is_not_kept(tracker: DeliveryTracker, events: Events) -> None:
    tracker.acked("m1", "server")
    tracker.sent("m1")
    assert tracker.pending == 1 and events.reports == [] and events.counts == {}


def test_early_acks_are_bounded_and_the_oldest_make_room(
    tracker: DeliveryTracker, events: Events
) -> None:
    for n in range(MAX_EARLY_ACKS + 1):
        tracker.acked(f"e{n}", "device")
    tracker.sent("e0")  # dropped for the newest one: it waits as if it had no ack
    tracker.sent("e1")
    tracker.sent(f"e{MAX_EARLY_ACKS}")
    assert tracker.pending == 1 and len(events.reports) == 2


def test_an_unknown_outcome_is_an_error(tracker: DeliveryTracker) -> None:
    with pytest.raises(ValueError, match="unknown ack outcome 'played'"):
        tracker.acked("m1", "played")


def test_expiry_reports_what_is_due_oldest_first(
    tracker: DeliveryTracker, clock: Clock, events: Events
) -> None:
    for when, message_id in ((0.0, "a"), (10.0, "b"), (20.0, "c"), (30.0, "d")):
        clock.now = when
        tracker.sent(message_id)
    clock.now = 40.5
    tracker.expire()
    assert events.outcomes() == [
        (0.0, "not delivered within 30 s"),
        (10.0, "not delivered within 30 s"),
    ]
    assert all(isinstance(error, TimeoutError) for _, _, error in events.reports)
    assert events.counts == {"messages_undelivered": 2} and tracker.pending == 2
    tracker.expire(force=True)
    assert [started for started, _ in events.outcomes()] == [0.0, 10.0, 20.0, 30.0]
    assert tracker.pending == 0


def test_expiry_stops_at_the_first_message_not_due(
    tracker: DeliveryTracker, clock: Clock, events: Events
) -> None:
    """It looks no further than that one: a later send falls due later. A clock that goes
    back, which the tracker must never be given, shows it: "c", due, stays behind "b"."""
    for when, message_id in ((0.0, "a"), (100.0, "b"), (1.0, "c")):
        clock.now = when
        tracker.sent(message_id)
    clock.now = 50.0
    tracker.expire()
    assert events.outcomes() == [(0.0, "not delivered within 30 s")]
    assert tracker.pending == 2


def test_expiry_of_many_pending_takes_exactly_the_due_ones(
    tracker: DeliveryTracker, clock: Clock, events: Events
) -> None:
    for n in range(10_000):
        clock.now = n / 1000
        tracker.sent(f"m{n}")
    for n in range(0, 10_000, 7):  # delivered ones leave gaps
        tracker.acked(f"m{n}", "device")
    delivered = len(events.reports)
    clock.now = 30 + 4.9995  # m0 .. m4999 are due
    tracker.expire()
    expired = [started for started, error in events.outcomes()[delivered:]]
    assert expired == [n / 1000 for n in range(5000) if n % 7]
    assert tracker.pending == sum(1 for n in range(5000, 10_000) if n % 7)
    tracker.expire()  # nothing more is due
    assert len(events.reports) == delivered + len(expired)


def test_a_message_sent_again_waits_from_its_last_send(
    tracker: DeliveryTracker, clock: Clock, events: Events
) -> None:
    for when, message_id in ((0.0, "a"), (10.0, "b"), (20.0, "a")):
        clock.now = when
        tracker.sent(message_id)
    clock.now = 41.0  # "b" is due, "a" (sent again at 20) is not
    tracker.expire()
    assert events.outcomes() == [(10.0, "not delivered within 30 s")]
    assert tracker.pending == 1


def test_wait_returns_once_the_last_ack_came(events: Events) -> None:
    tracker = DeliveryTracker(events.report, events.count, timeout_s=30)
    tracker.sent("m1")
    acker = gevent.spawn_later(0.01, tracker.acked, "m1", "device")
    assert tracker.wait(10) is True
    acker.join()
    assert events.counts == {"messages_delivered": 1}


def test_wait_gives_up_at_its_deadline(events: Events) -> None:
    tracker = DeliveryTracker(events.report, events.count, timeout_s=30)
    tracker.sent("m1")
    assert tracker.wait(0.05) is False
    assert tracker.pending == 1 and events.reports == []
