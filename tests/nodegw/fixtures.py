"""Fixture `start_node_gateway` (Node.js gateways started for one test, all stopped after it),
registered for every test by tests/conftest.py."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.nodegw import NodeGateway, unavailable


@pytest.fixture
def start_node_gateway() -> Iterator[Callable[..., NodeGateway]]:
    """`start_node_gateway("--leak-kb-per-message", "64", inspect=True)` returns a started
    NodeGateway (`url`, `pid`, `inspector`); all are stopped after the test. Skips, naming the
    fix, where node or the gateway's packages are missing."""
    reason = unavailable()
    if reason is not None:
        pytest.skip(reason)
    started: list[NodeGateway] = []

    def start(*args: str, **kwargs: Any) -> NodeGateway:
        process = NodeGateway(list(args), **kwargs)
        started.append(process)
        return process.start()

    yield start
    for process in started:
        process.stop()
