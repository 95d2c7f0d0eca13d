"""`RunRecord`'s checkpoints: written in steps while the load runs, never after the run's end.

A checkpoint yields to the event loop between its steps (so that requests in flight are not
held for its whole length); the run may stop during one of those yields, and the final write
(not partial) must then stay the last word on disk.
"""

from __future__ import annotations

import json
from pathlib import Path

import gevent
from locust import User, constant, task
from locust.env import Environment

from analysis.counters import RunCounters
from analysis.recorder import RequestRecorder
from analysis.run_record import RunRecord


class Idle(User):
    wait_time = constant(1)

    @task
    def nothing(self) -> None:
        pass


def record_in(folder: Path) -> tuple[RunRecord, RequestRecorder]:
    environment = Environment(user_classes=[Idle])
    environment.create_local_runner()
    recorder = RequestRecorder(environment, window_width=lambda: 0.1)
    record = RunRecord(
        environment, recorder, RunCounters(environment), lambda: {"scenario": "t", "target": "http://127.0.0.1:9"},
        lambda _: folder,
    )  # fmt: skip
    environment.events.test_start.fire(environment=environment)
    for i in range(30):
        environment.events.request.fire(
            request_type="POST", name="/api/webhook", response_time=1.0 + i,
            response_length=0, exception=None, context={},
        )  # fmt: skip
    return record, recorder


def test_a_checkpoint_writes_the_data_so_far_marked_partial(tmp_path):
    record, _ = record_in(tmp_path)
    record.checkpoint()
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["partial"] is True
    assert summary["totals"]["requests"] == 30
    assert "windows" in json.loads((tmp_path / "timeline.json").read_text())


def test_a_run_that_ends_during_a_checkpoint_keeps_its_final_summary(tmp_path):
    record, _ = record_in(tmp_path)
    checkpoint = gevent.spawn(record.checkpoint)
    gevent.sleep(0)  # the checkpoint has built its summary and yields
    assert not checkpoint.dead
    record.on_test_stop()  # the final data, at once
    checkpoint.join(timeout=5)
    assert checkpoint.successful()
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["partial"] is False, "the checkpoint overwrote the final summary"
    record._stop_greenlets()
