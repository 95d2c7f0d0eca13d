"""Tests marked `gevent` run in a process that gevent patched first, as a Locust run is.

This test process is not patched (tests/conftest.py), and greenlets that block in unpatched
sockets would stop each other. So the first `gevent` test of a module runs all of that module's
`gevent` tests in one patched pytest process (`tests.users.under_gevent`), and each test's
reports from there are reported here as its own, with no setup here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from gevent import monkey

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 150  # under pytest-timeout's 180 s, for the test that waits for them all

_reports = pytest.StashKey[dict[str, list[pytest.TestReport]]]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "gevent: runs in a process patched by gevent, as Locust runs (conftest.py)"
    )


def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> bool | None:
    if item.get_closest_marker("gevent") is None or monkey.is_module_patched("socket"):
        return None
    reports = item.config.stash.setdefault(_reports, {})
    if item.nodeid not in reports:
        reports.update(_run_patched(item))
    item.ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
    for report in reports.get(item.nodeid) or [_failed(item, "no report from the run")]:
        item.ihook.pytest_runtest_logreport(report=report)
    # What pytest's own teardown phase does: the fixtures of the tests before this one (in
    # this process) that the next test does not share are torn down now, else the next
    # test, in another module, finds them still set up.
    item.session._setupstate.teardown_exact(nextitem)
    item.ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
    return True


def _run_patched(item: pytest.Item) -> dict[str, list[pytest.TestReport]]:
    """The reports of all the `gevent` tests of `item`'s module, run in one patched process."""
    items = [
        other
        for other in item.session.items
        if other.path == item.path and other.get_closest_marker("gevent") is not None
    ]
    with tempfile.TemporaryDirectory() as folder:
        results = Path(folder) / "reports.json"
        command = [sys.executable, "-m", "tests.users.under_gevent", str(results)]
        try:
            proc = subprocess.run(
                [*command, *(other.nodeid for other in items)],
                cwd=ROOT,
                env={k: v for k, v in os.environ.items() if k != "LOCUST_SKIP_MONKEY_PATCH"},
                capture_output=True,
                text=True,
                timeout=TIMEOUT_S,
            )
        except subprocess.TimeoutExpired:
            return {
                other.nodeid: [_failed(other, f"no result in {TIMEOUT_S} s")] for other in items
            }
        if proc.returncode != 0 or not results.exists():
            text = f"exit {proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
            return {other.nodeid: [_failed(other, text)] for other in items}
        serialized = json.loads(results.read_text(encoding="utf-8"))
    hook = item.config.hook
    return {
        nodeid: [
            hook.pytest_report_from_serializable(config=item.config, data=data) for data in reports
        ]
        for nodeid, reports in serialized.items()
    }


def _failed(item: pytest.Item, text: str) -> pytest.TestReport:
    return pytest.TestReport(item.nodeid, item.location, {}, "failed", text, "call")
