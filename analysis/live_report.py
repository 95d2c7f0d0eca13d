"""The report's own judgement of a run while it goes, computed in a child process.

The live verdict must say what the report will say: it is `build_report` itself, on the files
the run keeps on disk while it goes (the summary and timeline of each checkpoint, the samples
as they stream). Judging takes tens of milliseconds on a short run and seconds on a day-long
one: done on the load's event loop, every request in flight would wait for it. So it runs in
a child process (`python -m analysis.live_report`), one JSON request a line on its stdin, one
JSON answer a line on its stdout; the parent waits on the pipe cooperatively (gevent), and
asks again only once the last answer is in.

The child costs the load as little as it can. It starts before the load: its start alone
(pandas and the report's imports) is a second of CPU here and seconds on a slow machine, and
at equal priority, started with the load, it took a third of a saturated generator's core for
the first seconds of a run (docs/benchmarks.md); a headless run waits for it to be `ready()`
(its first line, written unasked once its imports are done) before the load begins (the web
UI's process starts it long before anyone clicks). And it runs at a lower CPU priority (nice
+10): on a core the load needs, a judgement (a tenth of a second on a short run, seconds on a
day-long one) gets about a tenth of the core, so the load keeps its timing and the verdict
comes a little later. Not the lowest (+19: about 1.5 %): on a machine the load saturates the
live verdict and the report of `GET /report` would then take minutes, not seconds.

The child also renders the report on request (`render: true`: `GET /report` during a run),
so that the web UI's report is drawn off the loop too.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
ANSWER_TIMEOUT_S = 120.0  # a day-long run's first judgement (its samples' CSV) takes seconds
READY_TIMEOUT_S = 30.0  # a headless run waits no longer for the child before its load begins
NICENESS = 10  # added to the parent's: see the module's docstring


def brief(model: dict[str, Any]) -> dict[str, Any]:
    """What the live view shows of a report model: the verdict, every criterion, the leak."""
    leak = (model.get("analysis") or {}).get("leak") or {}
    breaking = (model.get("analysis") or {}).get("breaking_point") or {}
    return {
        "verdict": model["verdict"],
        "criteria": model["criteria"],
        "leak": {
            key: leak.get(key)
            for key in ("judged", "detected", "mb_per_hour", "low_mb_per_hour", "reason", "note")
        },
        "breaking_point": {
            key: breaking.get(key)
            for key in ("applicable", "held_every_stage", "last_good_stage", "first_bad_stage")
        },
    }


def answer(request: dict[str, Any]) -> dict[str, Any]:
    """One request of the parent's: judge (and render, if asked) the run in `folder`."""
    from analysis.report import build_report, criteria_for, write_report
    from analysis.run_data import load_run

    folder = Path(request["folder"])
    began = time.perf_counter()
    if request.get("render"):
        model = write_report(folder, lang=request.get("lang", "en"))
    else:
        model = build_report(load_run(folder), criteria_for(folder))
    return {"ok": True, **brief(model), "took_s": round(time.perf_counter() - began, 3)}


def main() -> int:
    """The child: answers until its stdin closes. A Ctrl-C at the terminal reaches the whole
    process group: the parent's handling of it decides when this child ends (it closes the
    pipe), so the child itself ignores it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.nice(NICENESS)
    import analysis.report  # noqa: F401  (pandas and the report's imports, once, before any request)

    if not _say({"ok": True, "ready": True}):  # its first line, unasked
        return 0
    for line in sys.stdin:
        try:
            reply = answer(json.loads(line))
        except Exception as exc:  # the run's files mid-write, a disk full: said, not fatal
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        if not _say(reply):
            return 0
    return 0


def _say(reply: dict[str, Any]) -> bool:
    """One line to the parent; False if the parent is gone (a usage error ended it before the
    child's imports were done, or a kill): then there is no one to tell, and nothing to say on
    the terminal either."""
    try:
        sys.stdout.write(json.dumps(reply, default=_plain) + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the exit's flush too
        return False
    return True


def _plain(value: Any) -> Any:
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item):
        return item()
    raise TypeError(f"not JSON: {type(value).__name__}")


class LiveReport:
    """The parent's side: `judge(folder)` and `render(folder, lang)` block the calling greenlet
    only (the pipes are gevent's under Locust's monkey patching), never the event loop. The
    child starts at the first request and is started again if it died."""

    def __init__(self) -> None:
        from gevent.lock import Semaphore

        self._child: subprocess.Popen[str] | None = None
        self._turn = Semaphore()  # one request on the pipe at a time: its answer is the next line
        self._ready_unread = False  # the child's first line, "ready", not read yet

    def start(self) -> None:
        """Start the child now (it imports pandas and the report, about a second, in its own
        process), so that the first judgement of a run is not late by that."""
        self._ensure()

    def ready(self, timeout_s: float = READY_TIMEOUT_S) -> bool:
        """Wait until the child has started (its imports done), at most `timeout_s`: a headless
        run calls it before its load begins, so that the child's start does not take CPU from
        the load. False if it is not ready by then: the child goes on starting, and the first
        verdict is late by the rest of its start."""
        import gevent

        with self._turn:
            child = self._ensure()
            assert child.stdout is not None
            with gevent.Timeout(timeout_s, False):
                if self._ready_unread:
                    self._ready_unread = not child.stdout.readline()
            return not self._ready_unread and child.poll() is None

    def _ensure(self) -> subprocess.Popen[str]:
        child = self._child
        if child is None or child.poll() is not None:
            self._ready_unread = True
            child = self._child = subprocess.Popen(
                [sys.executable, "-m", "analysis.live_report"],
                cwd=ROOT,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                bufsize=1,
            )
        return child

    def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        """The child's answer to one request, or {"ok": False, "error": ...}."""
        import gevent

        with self._turn:
            return self._ask(request, gevent)

    def _ask(self, request: dict[str, Any], gevent: Any) -> dict[str, Any]:
        try:
            child = self._ensure()
            assert child.stdin is not None and child.stdout is not None
            child.stdin.write(json.dumps(request) + "\n")
            child.stdin.flush()
            with gevent.Timeout(ANSWER_TIMEOUT_S):
                if self._ready_unread:  # its "ready" comes before any answer
                    self._ready_unread = not child.stdout.readline()
                line = child.stdout.readline()
        except (OSError, gevent.Timeout) as exc:
            self.close()
            return {"ok": False, "error": f"the judging process failed: {exc!r}"}
        if not line:
            self.close()
            return {"ok": False, "error": "the judging process ended"}
        return json.loads(line)

    def judge(self, folder: Path) -> dict[str, Any]:
        return self.ask({"folder": str(folder)})

    def render(self, folder: Path, lang: str = "en") -> dict[str, Any]:
        return self.ask({"folder": str(folder), "render": True, "lang": lang})

    def close(self) -> None:
        child, self._child = self._child, None
        if child is None:
            return
        try:
            if child.stdin is not None:
                child.stdin.close()
            child.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            child.kill()
            child.wait()


if __name__ == "__main__":
    raise SystemExit(main())
