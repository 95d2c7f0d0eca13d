"""The files of one run: Locust's CSVs (full history), the summary, the timeline, the report.

The folder is `reports/<scenario>-<UTC timestamp>/` unless `--report-dir` names one. Locust's
CSV writer streams into it from the start of the run (the monitors stream `samples.csv`);
`summary.json` and `timeline.json` are written when the run stops (again a moment later, once
workers' last reports are in, and once more at exit), each followed by the report: the
verdict, `report.json`, `report.md` and `report.html` (`analysis.report`), judged by the copy
of the criteria file kept in the folder.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gevent
from locust.stats import PERCENTILES_TO_REPORT, StatsCSVFileWriter

from analysis.counters import RunCounters
from analysis.criteria import CRITERIA_COPY
from analysis.files import write_atomically
from analysis.recorder import RequestRecorder
from analysis.summary import build_summary
from analysis.timeline import TIMELINE, StageTimeline

if TYPE_CHECKING:
    from locust.env import Environment

log = logging.getLogger("report")
REPORTS_DIR = Path("reports")
WORKER_GRACE_S = 1.0
CHECKPOINT_S = 5.0  # summary and timeline rewritten this often: a killed run keeps its data
INTERRUPTED = 130  # exit code of a run stopped by Ctrl-C or SIGTERM (128 + SIGINT)


def default_report_dir(scenario: str, started: float) -> Path:
    stamp = dt.datetime.fromtimestamp(started, dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return REPORTS_DIR / f"{Path(scenario).stem}-{stamp}"


class RunRecord:
    """Writes the run's folder; `describe_run()` gives the wiring's facts (scenario, target...)."""

    def __init__(
        self,
        environment: Environment,
        recorder: RequestRecorder,
        counters: RunCounters,
        describe_run: Callable[[], dict[str, Any]],
        report_dir: Callable[[float], Path],
        stages: StageTimeline | None = None,
        criteria_path: Callable[[], Path] | None = None,
        lang: Callable[[], str] = lambda: "en",
    ) -> None:
        self.environment = environment
        self.recorder = recorder
        self.counters = counters
        self.describe_run = describe_run
        self.report_dir = report_dir
        self.stages = stages
        self.criteria_path = criteria_path
        self.lang = lang
        self.extra: dict[str, Any] = {}  # recovery probe, abort: kept in timeline.json
        self.checkpointed: list[Callable[[], None]] = []  # called after each checkpoint
        self.written: list[Callable[[Path], None]] = []  # after each report of an ended run
        self.verdict: dict[str, Any] | None = None
        self.unreachable_at: float | None = None
        self.folder: Path | None = None
        self.started_at: float | None = None
        self.ended_at: float | None = None
        self.peak_users = 0
        self._csv: StatsCSVFileWriter | None = None
        self._greenlets: list[gevent.Greenlet] = []
        events = environment.events
        events.test_start.add_listener(self.on_test_start)
        events.test_stop.add_listener(self.on_test_stop)
        events.quitting.add_listener(self.on_quitting)

    def on_test_start(self, **_: Any) -> None:
        self._stop_greenlets()
        self.started_at, self.ended_at, self.peak_users = time.time(), None, 0
        self.extra, self.verdict = {}, None
        self.folder = self.report_dir(self.started_at)
        self.folder.mkdir(parents=True, exist_ok=True)
        if self.criteria_path is not None:
            criteria = self.criteria_path()
            if criteria.is_file():  # judged by this copy again by `make report`
                shutil.copyfile(criteria, self.folder / CRITERIA_COPY)
        if self.stages is not None:
            self.stages.start()
        self._csv = StatsCSVFileWriter(
            self.environment, PERCENTILES_TO_REPORT, str(self.folder / "locust"), full_history=True
        )
        self._greenlets = [
            gevent.spawn(self._csv.stats_writer),
            gevent.spawn(self._sample),
            gevent.spawn(self._checkpoints),
        ]

    def _sample(self) -> None:
        while True:
            runner = self.environment.runner
            if runner is not None:
                self.peak_users = max(self.peak_users, runner.user_count)
            gevent.sleep(0.5)

    def _checkpoints(self) -> None:
        """While the run goes: its summary (marked partial) and timeline, not the report. After
        a `kill -9`, `make report RUN=...` renders from these, a few seconds short at most."""
        while True:
            gevent.sleep(CHECKPOINT_S)
            if self.ended_at is not None:
                return
            try:
                self.checkpoint()
            except Exception:  # a full disk must not stop the load: the next one may do
                log.exception("checkpoint of the run's data failed")
                continue
            for listener in self.checkpointed:
                listener()

    def on_test_stop(self, **_: Any) -> None:
        if self.folder is None:
            return
        self.ended_at = time.time()
        if self.stages is not None:
            self.stages.stop(self.ended_at)
        self.write(render=False)  # the data at once; the report a moment later, or at exit
        # Cancelled by the next start (_stop_greenlets): it must not write the next run's folder.
        self._greenlets.append(gevent.spawn_later(WORKER_GRACE_S, self.write))

    def on_quitting(self, **_: Any) -> None:
        if self.folder is None:
            return
        if self.ended_at is None:
            self.ended_at = time.time()
            if self.stages is not None:
                self.stages.stop(self.ended_at)
        self._stop_greenlets()
        self.write()
        self.announce()

    def announce(self) -> None:
        """The verdict on stderr, and as the process's exit code (0, 1 Failed, 3 Degraded,
        130 interrupted: the verdict then covers what was measured before)."""
        if self.verdict is None or self.folder is None:
            return
        partial = bool(self.describe_run().get("partial"))
        reasons = "; ".join(
            f"{r['name']} {_shown(r)}" + f" (limit {r['op']} {r['limit']:g})"
            for r in self.verdict["reasons"]
        )
        failures = [
            f"target unreachable from {self.unreachable_at:g} s"
            if f == "target_unreachable"
            else f.replace("_", " ")
            for f in self.verdict["failures"]
        ]
        reasons = "; ".join(filter(None, [reasons, *failures]))
        print(
            f"verdict: {self.verdict['status'].upper()}{': ' + reasons if reasons else ''}"
            f"{' (partial: interrupted)' if partial else ''}"
            f" | report: {self.folder / 'report.html'}",
            file=sys.stderr,
            flush=True,
        )
        if getattr(self.environment.parsed_options, "headless", False):
            # The web UI's process outlives many runs: its exit code is not one run's verdict.
            code = INTERRUPTED if partial else int(self.verdict["exit_code"])
            self.environment.process_exit_code = code

    def _stop_greenlets(self) -> None:
        # Killed and waited for before the CSV files close: the writer must not write to them.
        gevent.killall(self._greenlets, block=True, timeout=5)
        self._greenlets = []
        if self._csv is not None:
            self._csv.close_files()
            self._csv = None

    def summary(self) -> dict[str, Any]:
        runner = self.environment.runner
        assert runner is not None
        run = self.describe_run()
        ended = self.ended_at or time.time()
        run.update(
            started_at=self.started_at,
            ended_at=ended,
            duration_s=ended - self.started_at if self.started_at else None,
            peak_users=self.peak_users,
        )
        return build_summary(
            stats=runner.stats, book=self.recorder.book, counters=self.counters, run=run
        )

    def timeline(self) -> dict[str, Any]:
        return {
            "windows": self.recorder.windows.encode(),
            "stages": self.stages.stages if self.stages is not None else [],
            **self.extra,
        }

    def checkpoint(self) -> None:
        """The data so far, marked partial, written while the load runs: on the event loop, in
        steps of a few milliseconds with a yield between them (in one go it held every request
        in flight 5-7 ms, each 5 s: the p99 of a 50 ms server read up to 2 ms high). The run
        may end during a yield: the final write is then the last word, and this one gives up."""
        folder = self.folder
        if folder is None:
            return
        summary = {**self.summary(), "partial": True}
        if not self._still_writing(folder):
            return
        write_atomically(folder / "summary.json", json.dumps(summary) + "\n")
        self.recorder.windows.encode_finished(pause=gevent.sleep)
        if not self._still_writing(folder):
            return
        timeline = json.dumps(self.timeline())
        if not self._still_writing(folder):
            return
        write_atomically(folder / TIMELINE, timeline + "\n")

    def _still_writing(self, folder: Path) -> bool:
        """Let the requests in flight go on; then whether the run still writes into `folder`."""
        gevent.sleep(0)
        return self.ended_at is None and self.folder is folder

    def write(self, render: bool = True) -> Path | None:
        """The summary and the timeline, then the report from them (as `make report` would);
        `render=False` the data only."""
        if self.folder is None:
            return None
        path = self.folder / "summary.json"
        summary = self.summary()
        if self.ended_at is None:  # the run is still going
            summary["partial"] = True
        _write_json(path, summary)
        _write_json(self.folder / TIMELINE, self.timeline())
        if not render:
            return path
        # Imported here: pandas and the report cost every Locust process (workers too) half a
        # second at start, and only the master renders.
        from analysis.report import write_report

        try:
            model = write_report(self.folder, lang=self.lang())
        except Exception as exc:  # the data is on disk: `make report` can try again
            log.exception("the report could not be rendered: %s", exc)
            return path
        self.verdict = model["verdict"]
        self.unreachable_at = model["run"].get("target_unreachable_from_s")
        if self.ended_at is not None:
            for listener in self.written:
                listener(self.folder)
        return path


def _shown(judgement: dict[str, Any]) -> str:
    if judgement["metric"] == "memory_leak":  # 1 or 0: the growth says more
        return f"detected ({judgement['note']})"
    return f"{judgement['value']:g} {judgement['unit']}".strip()


def _write_json(path: Path, data: dict[str, Any]) -> None:
    write_atomically(path, json.dumps(data, indent=2) + "\n")
