"""The pytest fixtures `evolution_gateway` and `waha_gateway` (see tests.realgw), and the same
gateways with their V8 inspector on (`evolution_gateway_inspected`, `waha_gateway_inspected`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.realgw.gateways import (
    EvolutionGateway,
    GatewayUnavailable,
    RealGateway,
    WahaGateway,
    exclusive,
)


def _running(kind: type[RealGateway], *, inspected: bool = False) -> Iterator[RealGateway]:
    reason = kind.unavailable()
    if reason is not None:
        pytest.skip(reason)
    try:
        with exclusive():
            gateway = kind(kind.INSPECT_PORT if inspected else None)
            try:
                gateway.start()
            except GatewayUnavailable as exc:
                pytest.skip(str(exc))
            try:
                yield gateway
            finally:
                gateway.stop()
    except GatewayUnavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def evolution_gateway() -> Iterator[RealGateway]:
    """Real Evolution API v2.3.6 on 127.0.0.1:8080 in namespace realgw, global key
    `loadtest-global-key`, no instances at the start; stopped (instances deleted) after."""
    yield from _running(EvolutionGateway)


@pytest.fixture(scope="module")
def waha_gateway() -> Iterator[RealGateway]:
    """Real WAHA core 2024.10.8 on 127.0.0.1:3000 in namespace realgw, no sessions at the
    start; stopped (sessions deleted) after."""
    yield from _running(WahaGateway)


@pytest.fixture(scope="module")
def evolution_gateway_inspected() -> Iterator[RealGateway]:
    """`evolution_gateway` with node's V8 inspector on 127.0.0.1:9229 inside the namespace
    (`gateway.inspect_address`, for --node-inspect)."""
    yield from _running(EvolutionGateway, inspected=True)


@pytest.fixture(scope="module")
def waha_gateway_inspected() -> Iterator[RealGateway]:
    """`waha_gateway` with node's V8 inspector on 127.0.0.1:9230 inside the namespace."""
    yield from _running(WahaGateway, inspected=True)
