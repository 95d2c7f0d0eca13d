"""Which workers a distributed run had, and when it lost any (master only).

Locust's master marks a worker `missing` when its heartbeats stop (about 3 s) and drops it
when it quits; it goes on with the others, and the arrival engine deals the rate again among
them (`shapes.arrivals`). This notes, twice a second, every worker seen and every loss with
its time, for the report: the verdict of a run that lost a generator should say so.
"""

from __future__ import annotations

import time
from typing import Any

import gevent
from locust.runners import STATE_MISSING, MasterRunner


class WorkerWatch:
    def __init__(self, runner: MasterRunner, interval_s: float = 0.5) -> None:
        self.runner = runner
        self.interval_s = interval_s
        self.seen: dict[str, float] = {}
        self.lost: dict[str, dict[str, Any]] = {}
        self.started_at = time.time()
        self._greenlet: gevent.Greenlet | None = None

    def start(self) -> None:
        self.stop()
        self.seen, self.lost, self.started_at = {}, {}, time.time()
        self.note(self.started_at)
        self._greenlet = gevent.spawn(self._watch)

    def stop(self) -> None:
        if self._greenlet is not None:
            self._greenlet.kill(block=False)
            self._greenlet = None

    def _watch(self) -> None:
        while True:
            gevent.sleep(self.interval_s)
            self.note(time.time())

    def note(self, now: float) -> None:
        present = {}
        for worker_id, node in list(self.runner.clients.items()):
            present[worker_id] = node.state
            self.seen.setdefault(worker_id, now)
        for worker_id in self.seen:
            if worker_id in self.lost:
                continue
            state = present.get(worker_id)
            if state is None or state == STATE_MISSING:
                how = "stopped answering" if state == STATE_MISSING else "left"
                self.lost[worker_id] = {
                    "worker": worker_id,
                    "at_unix": now,
                    "at_s": round(now - self.started_at, 1),
                    "how": how,
                }

    def as_dict(self) -> dict[str, Any]:
        return {"seen": sorted(self.seen), "lost": list(self.lost.values())}
