"""Run tests in a process that gevent patched first, as Locust patches itself on import.

`python -m tests.users.under_gevent REPORTS.json NODEID...` runs pytest on the given tests and
writes their reports (pytest's serializable form, as pytest-xdist ships them) to REPORTS.json,
for `tests/users/conftest.py` to replay in the test run that asked for them.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

# First of the third-party imports, before pytest's: Locust patches the standard library with
# gevent when it is imported (unless LOCUST_SKIP_MONKEY_PATCH is set, which conftest.py drops).
import locust  # noqa: F401
import pytest
from gevent import monkey


class Reports:
    """A pytest plugin that keeps every report of every test."""

    def __init__(self) -> None:
        self.reports: dict[str, list[dict[str, Any]]] = {}
        self.config: pytest.Config | None = None

    def pytest_configure(self, config: pytest.Config) -> None:
        self.config = config

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        assert self.config is not None
        data = self.config.hook.pytest_report_to_serializable(config=self.config, report=report)
        self.reports.setdefault(report.nodeid, []).append(data)


def main(results: str, nodeids: list[str]) -> int:
    if not monkey.is_module_patched("socket"):
        print("under_gevent: Locust did not patch the standard library", file=sys.stderr)
        return 3
    plugin = Reports()
    # Only the plugins these tests use: each one takes time to load, for every run.
    os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    code = pytest.main(["-q", "-p", "no:cacheprovider", "-p", "pytest_timeout", *nodeids], [plugin])
    with open(results, "w", encoding="utf-8") as file:
        json.dump(plugin.reports, file)
    return 0 if code in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED) else int(code)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2:]))
