"""Delivery tracking: acks matched to the messages they are about, and messages that got none.

A message sender tells its tracker when the gateway accepted a send (`sent`), an ack channel
(`users.ack_channels`) tells it what the gateway said about a message since (`acked`), and the
sender's iterations call `expire`, so that a message without a final ack within `timeout_s` is
undelivered. Each settled message is one request of its own, named `name` ("message delivered"),
reported through the `report` callback: its response time is the time from the send's answer to
the final ack, its exception why the message was not delivered. The failure ratio of that
request name is the delivery rate.

Outcomes, whatever the gateway calls them (the target profile's reader maps its acks to these):

| outcome | meaning | request | counter |
|---|---|---|---|
| "server" | the gateway's server has it (one tick) | none: still pending | messages_server_acked |
| "device", "read" | delivered (two ticks, or read) | success | messages_delivered |
| "failed" | the gateway gave up on it | RuntimeError("ack failed") | messages_failed |
| no final ack in time | | TimeoutError("not delivered within 30 s") | messages_undelivered |

An ack can be read before the answer to its own send (a busy generator reads the socket late,
a webhook overtakes the HTTP answer): up to `MAX_EARLY_ACKS` such final acks wait for their
send, which then settles at once, in 0 ms.

The tracker is not thread-safe and need not be: the sender and its ack channel are greenlets of
one Locust process.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

import gevent

Report = Callable[[str, float, Exception | None], None]
"""`report(name, started, exception)`: one request event, timed from `started`
(a `time.perf_counter()` value); `exception` None for a success."""

MAX_EARLY_ACKS = 10_000
SERVER = "server"
DELIVERED = frozenset({"device", "read"})
FAILED = "failed"
OUTCOMES = frozenset({SERVER, FAILED, *DELIVERED})


class DeliveryTracker:
    """The messages of one sender that await a final ack.

    - `report(name, started, exception)`: fires one request event (the sender's own, so that it
      lands in the sender's environment and request type).
    - `count(name)`: bumps a business counter.
    - `timeout_s`: how long a message may wait for its final ack.
    - `clock`: where "now" comes from; `time.perf_counter` (what `report` times against), or a
      fake one in tests. It must not go backwards: pending messages are kept in the order they
      were sent, which must be the order in which they fall due.
    """

    def __init__(
        self,
        report: Report,
        count: Callable[[str], None],
        timeout_s: float,
        name: str = "message delivered",
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.timeout_s = timeout_s
        self.name = name
        self._report = report
        self._count = count
        self._clock = clock
        # message id -> when its send was accepted, oldest first. An OrderedDict and not a dict:
        # its first item is found in O(1), where a dict's first item is found by skipping the
        # slots of the messages already removed from the front.
        self._pending: OrderedDict[str, float] = OrderedDict()
        # message id -> final outcome, for acks read before their send's answer, oldest first.
        self._early: OrderedDict[str, str] = OrderedDict()

    @property
    def pending(self) -> int:
        """How many messages still await their final ack."""
        return len(self._pending)

    def sent(self, message_id: str) -> None:
        """The gateway accepted a send of `message_id`, now: its wait for a final ack starts,
        or, if that ack was read already, it settles at once."""
        now = self._clock()
        outcome = self._early.pop(message_id, None)
        if outcome is not None:
            self._settle(outcome, now)
            return
        # An id sent again waits anew, from now: at the end, to keep the time order.
        self._pending[message_id] = now
        self._pending.move_to_end(message_id)

    def acked(self, message_id: str, outcome: str) -> None:
        """The gateway said `outcome` (one of `OUTCOMES`) about `message_id`.

        An ack about no pending message is kept, when final, as an early ack for a send still
        to come. Acks about messages already settled end up there too ("read" after "device",
        or another session's acks where a channel carries every session's): the oldest make
        room for new ones, so that such leftovers cannot crowd out the early acks still to be
        matched, which wait for milliseconds, not for 10,000 acks.
        """
        if outcome not in OUTCOMES:
            raise ValueError(f"unknown ack outcome {outcome!r}: one of {sorted(OUTCOMES)}")
        if message_id not in self._pending:
            if outcome != SERVER and message_id not in self._early:
                if len(self._early) >= MAX_EARLY_ACKS:
                    self._early.popitem(last=False)
                self._early[message_id] = outcome
            return
        if outcome == SERVER:
            self._count("messages_server_acked")
            return
        self._settle(outcome, self._pending.pop(message_id))

    def expire(self, force: bool = False) -> None:
        """Messages pending longer than `timeout_s` (all of them, if `force`) are undelivered.

        Costs one look at the oldest message when none is due: it stops at the first one that
        is not due, as all after it were sent later still.
        """
        now = self._clock()
        pending = self._pending
        while pending:
            message_id, sent_at = next(iter(pending.items()))
            if not force and now - sent_at <= self.timeout_s:
                return
            del pending[message_id]
            error = TimeoutError(f"not delivered within {self.timeout_s:g} s")
            self._report(self.name, sent_at, error)
            self._count("messages_undelivered")

    def wait(self, deadline_s: float, poll_s: float = 0.05) -> bool:
        """Wait (sleeping, so that the ack channel's greenlet reads on) until no message is
        pending, for at most `deadline_s` seconds; True if none is left. For `on_stop`,
        before `expire(force=True)`."""
        deadline = time.monotonic() + deadline_s
        while self._pending and time.monotonic() < deadline:
            gevent.sleep(min(poll_s, max(0.0, deadline - time.monotonic())))
        return not self._pending

    def _settle(self, outcome: str, sent_at: float) -> None:
        if outcome == FAILED:
            self._report(self.name, sent_at, RuntimeError("ack failed"))
            self._count("messages_failed")
        else:
            self._report(self.name, sent_at, None)
            self._count("messages_delivered")
