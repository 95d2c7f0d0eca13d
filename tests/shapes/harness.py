"""A minimal locustfile for the shapes tests: scenario file in, results JSON out.

locust -f tests/shapes/harness.py --headless --scenario-file S.yaml --results R.json -H URL
"""

from __future__ import annotations

import itertools
import json
import os
import sys
import time

import gevent
from locust import between, events
from locust.runners import MasterRunner, WorkerRunner

from analysis.recorder import RequestRecorder
from shapes.arrivals import ArrivalShape
from shapes.burst import BurstShape
from shapes.scenario import ScenarioError, load_scenario
from users.base import ScenarioUser

_ids = itertools.count()


class WebhookPoster(ScenarioUser):
    def iteration(self) -> None:
        event = {
            "type": "message_create",
            "timestamp": int(time.time() * 1000),
            "message": {
                "id": f"{os.getpid()}-{next(_ids)}",
                "from": "5511900000000",
                "to": "5511912345678",
                "text": "shape test",
            },
        }
        self.client.post("/api/webhook", json=event, name="/api/webhook")


class Prober(ScenarioUser):
    def iteration(self) -> None:
        self.client.get("/probe", name="/probe")


CLASSES = {cls.__name__: cls for cls in (WebhookPoster, Prober)}
STATE: dict = {}


@events.init_command_line_parser.add_listener
def _options(parser) -> None:
    parser.add_argument("--scenario-file", default="")
    parser.add_argument("--results", default="")


@events.init.add_listener
def _wire(environment, **_) -> None:
    options = environment.parsed_options
    try:
        scenario = load_scenario(options.scenario_file, known_users=CLASSES)
    except ScenarioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    classes = []
    for name, spec in scenario.users.items():
        cls = CLASSES[name]
        cls.weight = spec.weight
        if scenario.think_time:
            cls.wait_time = between(scenario.think_time.min, scenario.think_time.max)
        classes.append(cls)
    if scenario.model == "burst":
        for cls in classes:
            cls.concurrency = max(cls.concurrency, scenario.load.iterations_per_user)
    runner = environment.runner
    if not isinstance(runner, MasterRunner):
        scenario.install_pacing(environment)
    STATE["recorder"] = RequestRecorder(environment)
    if isinstance(runner, WorkerRunner):
        return
    shape = scenario.build_shape(classes)
    shape.runner = runner
    environment.shape_class = shape
    STATE["shape"] = shape
    STATE["timeline"] = []
    gevent.spawn(_sample_users, environment, shape)


def _sample_users(environment, shape) -> None:
    while True:
        gevent.sleep(0.25)
        runner = environment.runner
        if runner.state in ("spawning", "running"):
            STATE["timeline"].append((shape.get_run_time(), runner.user_count))


@events.quitting.add_listener
def _write(environment, **_) -> None:
    if isinstance(environment.runner, WorkerRunner) or not environment.parsed_options.results:
        return
    shape = STATE.get("shape")
    results = {
        "histograms": STATE["recorder"].book.summary(),
        "timeline": STATE.get("timeline", []),
        "requests": environment.runner.stats.total.num_requests,
        "failures": environment.runner.stats.total.num_failures,
    }
    if isinstance(shape, ArrivalShape):
        results["arrivals"] = shape.counters().as_dict()
        results["lost_workers"] = shape.lost_workers
    if isinstance(shape, BurstShape):
        results["burst"] = {"ready": shape.ready, "done": shape.done, "fired_at": shape.fired_at}
    with open(environment.parsed_options.results, "w") as out:
        json.dump(results, out)
