"""Shared fixtures: a real reference gateway process on a free loopback port."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

# Locust monkey-patches the standard library with gevent when it is first imported, and pytest
# plugins (schemathesis) have imported ssl by then: patching it late recurses without end. Tests
# that import Locust in-process need no patching, so skip it for this process only; Locust runs
# started as subprocesses patch themselves, as the variable is gone again before they start.
if "LOCUST_SKIP_MONKEY_PATCH" not in os.environ:
    os.environ["LOCUST_SKIP_MONKEY_PATCH"] = "1"
    try:
        import locust  # noqa: F401
    finally:
        del os.environ["LOCUST_SKIP_MONKEY_PATCH"]

import httpx
import pytest

# The tests' targets are reference gateways and stand-ins on loopback, no phone behind them:
# every run they start may make numbers up (the test of the refusal takes this away again).
os.environ["SUITE_SYNTHETIC_NUMBERS"] = "1"
# The runs tests start are not the user's history (reports/history.sqlite): nothing is recorded
# unless a test of the history gives its own database.
os.environ["HISTORY_DB"] = "off"

from gateway.process import GatewayProcess

# For any test that asks: real gateways (tests.realgw, marked real_gateway), stand-ins and the
# Node.js gateway (tests.nodegw).
from tests.nodegw.fixtures import start_node_gateway  # noqa: F401
from tests.realgw.fixtures import (  # noqa: F401
    evolution_gateway,
    evolution_gateway_inspected,
    waha_gateway,
    waha_gateway_inspected,
)
from tests.standins.fixtures import start_standin, webhook_receiver  # noqa: F401


@pytest.fixture
def start_gateway() -> Iterator[Callable[..., GatewayProcess]]:
    """Start gateways with the given flags; all are stopped at the end of the test."""
    started: list[GatewayProcess] = []

    def start(*args: str, **kwargs) -> GatewayProcess:
        process = GatewayProcess(list(args), **kwargs).start()
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


@pytest.fixture(scope="module")
def gateway() -> Iterator[GatewayProcess]:
    """One default gateway shared by a test module (short pairing delay to keep tests quick)."""
    with GatewayProcess(["--pairing-delay-s", "0.2"]) as process:
        yield process


@pytest.fixture
def client(gateway: GatewayProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.url, timeout=10) as http:
        yield http
