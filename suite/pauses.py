"""The generator's own pauses: Python's cyclic garbage collector, kept off the load's path.

A full collection walks every object the process holds; with Locust, gevent, pydantic and
numpy loaded that took 50 ms on these machines, and 20 ms more with a pool of 2,000 arrival
users, during which no response is read: the requests in flight then read that much slower
than the server answered them (arrivals started up to 15 ms late). So everything alive when a
test starts (after one full collection, before any load) and when its users are first all up
(after a collection of the young generations) is moved to the permanent generation
(`gc.freeze()`, as forking web servers do): later collections walk only what the run creates.
Only the first spawn: what later ramps create stays collectable. Unfrozen when the test stops.
"""

from __future__ import annotations

import gc
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from locust.env import Environment


class FrozenAtStart:
    def __init__(self, environment: Environment) -> None:
        self.spawned = False
        events = environment.events
        events.test_start.add_listener(self.on_test_start)
        events.spawning_complete.add_listener(self.on_spawning_complete)
        events.test_stop.add_listener(self.on_test_stop)

    def on_test_start(self, **_: Any) -> None:
        self.spawned = False
        gc.collect()
        gc.freeze()

    def on_spawning_complete(self, **_: Any) -> None:
        if not self.spawned:
            self.spawned = True
            gc.collect(1)
            gc.freeze()

    def on_test_stop(self, **_: Any) -> None:
        gc.unfreeze()
