"""Fixtures for the stand-ins' tests: stand-ins started per test, a webhook receiver, and the
real gateways (for the agreement test)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.realgw.fixtures import evolution_gateway, waha_gateway  # noqa: F401
from tests.standins import process
from tests.standins.process import StandinProcess
from tests.standins.receiver import WebhookReceiver


@pytest.fixture
def start_standin() -> Iterator[Callable[..., StandinProcess]]:
    """`start_standin("evolution", paired=True, pair_delay_s=0.1)`; all stopped after the test."""
    started: list[StandinProcess] = []

    def start(kind: str, **options: Any) -> StandinProcess:
        standin = process.start_standin(kind, **options)
        started.append(standin)
        return standin

    yield start
    for standin in started:
        standin.stop()


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as hooks:
        yield hooks
