"""The live verdict's child process: the report's judgement, off the load's event loop and
below the load on the CPU."""

from __future__ import annotations

from pathlib import Path

import psutil

from analysis.live_report import LiveReport


def test_the_judging_process_runs_below_the_load_and_answers_for_a_folder_it_cannot_read(
    tmp_path: Path,
) -> None:
    """At nice 19 (docs/benchmarks.md: at equal priority its start took a third of a saturated
    generator's core); a folder with no run in it is an answer saying so, not a dead child."""
    report = LiveReport()
    try:
        answer = report.judge(tmp_path / "no-run-here")
        assert answer["ok"] is False and answer["error"], answer
        child = report._child
        assert child is not None and child.poll() is None
        assert psutil.Process(child.pid).nice() == 19
        assert psutil.Process().nice() < 19  # the load's own process is left as it was
    finally:
        report.close()
    assert report._child is None
