"""Fixtures `start_standin` (stand-ins started for one test, all stopped after it) and
`webhook_receiver` (a loopback receiver of webhooks), registered for every test by
tests/conftest.py."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

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
def webhook_receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as hooks:
        yield hooks
