"""The scenario chosen for a run, made into Locust's shape and its users' pacing at every start.

Locust instantiates one shape per process and may run it many times (the web UI's start
button), with options that the UI can change between runs. `ScenarioShape` therefore loads the
scenario named by the current options when a run starts and delegates to the model's shape;
`ScenarioPacing` does the same on every process that runs users (workers get the master's
options with each spawn message).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from locust import LoadTestShape
from locust.runners import STATE_RUNNING, STATE_SPAWNING, MasterRunner

from shapes.arrivals import ArrivalPacing
from shapes.burst import BurstPacing
from shapes.pacing import ClosedLoop, install_pacing
from shapes.scenario import ArrivalsLoad, BurstLoad, Scenario, load_scenario
from shapes.stage import StageMark

if TYPE_CHECKING:
    from locust.env import Environment
    from locust.user import User


def scenario_from_options(
    environment: Environment, user_classes: Mapping[str, type[User]]
) -> Scenario:
    options = environment.parsed_options
    return load_scenario(
        options.scenario, time_scale=float(options.time_scale), known_users=user_classes
    )


def configure_users(scenario: Scenario, user_classes: Mapping[str, type[User]]) -> list:
    """Weights, options, think time and connection pool of the scenario's user classes."""
    from locust import between, constant

    chosen = []
    for name, spec in scenario.users.items():
        cls = user_classes[name]
        cls.weight = spec.weight
        cls.options = dict(spec.options)
        think = scenario.think_time
        cls.wait_time = between(think.min, think.max) if think else constant(0)
        if isinstance(scenario.load, BurstLoad):
            # Every iteration of a burst is in flight at once: one connection each.
            cls.concurrency = max(10, scenario.load.iterations_per_user)
        chosen.append(cls)
    return chosen


class ScenarioPacing:
    """Per process that runs users: the pacing of the current scenario, switched at each start."""

    def __init__(
        self,
        environment: Environment,
        load: Callable[[], Scenario],
        classes: Mapping[str, type[User]],
    ) -> None:
        self.environment = environment
        self.load = load
        self.classes = classes
        self.arrivals = ArrivalPacing(environment)
        self.burst = BurstPacing(environment, iterations_per_user=1)
        self.closed = ClosedLoop()
        # Registered after the pacings': their counters reset first, then the model is chosen.
        environment.events.test_start.add_listener(self.on_test_start)

    def on_test_start(self, **_: Any) -> None:
        scenario = self.load()
        configure_users(scenario, self.classes)
        if scenario.model == "arrivals":
            load = scenario.load
            self.arrivals.drain_timeout_s = (
                load.drain_timeout if isinstance(load, ArrivalsLoad) else 30.0
            )
            install_pacing(self.environment, self.arrivals)
        elif scenario.model == "burst":
            assert isinstance(scenario.load, BurstLoad)
            self.burst.iterations_per_user = scenario.load.iterations_per_user
            install_pacing(self.environment, self.burst)
        else:
            install_pacing(self.environment, self.closed)


class ScenarioShape(LoadTestShape):
    """Master (or local): the shape of the scenario named by the options at each start."""

    abstract = True  # set on the environment by the wiring, not found in a locustfile

    def __init__(self, load: Callable[[], Scenario], classes: Mapping[str, type[User]]) -> None:
        super().__init__()
        self.load = load
        self.classes = classes
        self.scenario: Scenario | None = None
        self.delegate: LoadTestShape | None = None
        self.stopped = False
        self.finished = False  # the plan ran to its end (or a criterion ended it)
        self._listening_on: object | None = None

    def stop_now(self) -> None:
        """End the run at the next tick, as if the plan had ended (criteria abort it)."""
        self.stopped = True

    def reset_time(self) -> None:
        super().reset_time()
        self.stopped = self.finished = False
        self.scenario = self.load()
        chosen = configure_users(self.scenario, self.classes)
        self.delegate = self.scenario.build_shape(chosen)
        self.delegate.runner = self.runner
        self.delegate.reset_time()

    def tick(self):
        self._listen()
        if self.stopped:
            return self._end()
        if self.delegate is None:
            self.reset_time()
        assert self.delegate is not None
        load = self.delegate.tick()
        return self._end() if load is None else load

    def _end(self) -> None:
        """A master ends a shape with `quit()`, which leaves workers half a second to report:
        a thousand users take longer to stop, and their last requests would be missing from
        the totals. Stop them first, waiting for their final reports (as the web UI's stop
        button does), then end."""
        self.finished = True
        runner = self.runner
        if isinstance(runner, MasterRunner) and runner.state in (STATE_RUNNING, STATE_SPAWNING):
            runner.stop()
        return None

    def _listen(self) -> None:
        runner = self.runner
        if runner is None or self._listening_on is runner:
            return
        self._listening_on = runner
        runner.environment.events.spawning_complete.add_listener(self._on_spawning_complete)

    def _on_spawning_complete(self, **_: Any) -> None:
        on_spawned = getattr(self.delegate, "on_spawned", None)
        if on_spawned is not None:
            on_spawned()

    def current_stage(self) -> StageMark | None:
        current = getattr(self.delegate, "current_stage", None)
        return current() if current else None

    def describe(self) -> str:
        describe = getattr(self.delegate, "describe", None)
        return describe() if describe else "starting"
