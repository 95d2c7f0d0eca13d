"""The live verdict's child process: the report's judgement, off the load's event loop and
below the load on the CPU."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psutil

from analysis.live_report import NICENESS, ROOT, LiveReport


def test_the_judging_process_runs_below_the_load_and_answers_for_a_folder_it_cannot_read(
    tmp_path: Path,
) -> None:
    """10 below the load (docs/benchmarks.md: at equal priority its start took a third of a
    saturated generator's core); a folder with no run in it is an answer saying so, not a dead
    child."""
    report = LiveReport()
    try:
        assert report.ready()
        answer = report.judge(tmp_path / "no-run-here")
        assert answer["ok"] is False and answer["error"], answer
        child = report._child
        assert child is not None and child.poll() is None
        load = psutil.Process().nice()
        assert NICENESS == 10 and psutil.Process(child.pid).nice() == min(19, load + NICENESS)
        assert load < 19  # the load's own process is left as it was
    finally:
        report.close()
    assert report._child is None


# In a process patched by gevent as Locust's are: the pipes' waits are then cooperative, and
# `ready()`'s timeout can end one (in pytest's own process they block).
GIVING_UP = """
import locust  # noqa: F401  (gevent's monkey patching, as in any Locust process)
import json, sys
from analysis.live_report import LiveReport

report = LiveReport()
seen = [report.ready(timeout_s=0.001), report.ready(timeout_s=0.001)]
seen.append(report.judge(sys.argv[1] + "/no-run-here"))
seen.append(report.ready(timeout_s=5))
seen.append(report.judge(sys.argv[1] + "/nor-here"))
report.close()
print(json.dumps(seen))
"""


def test_a_judgement_asked_before_the_child_is_ready_gets_its_own_answer(tmp_path: Path) -> None:
    """A `ready()` that gives up leaves the child's "ready" line on the pipe: the next
    request's answer is the one after it."""
    done = subprocess.run(
        [sys.executable, "-c", GIVING_UP, str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    gave_up, asked_again, first, started, second = json.loads(done.stdout)
    assert (gave_up, asked_again) == (False, False)  # the imports take far longer than 1 ms
    assert first["ok"] is False and "no-run-here" in first["error"], first
    assert started is True  # started by now: answered at once
    assert second["ok"] is False and "nor-here" in second["error"], second
