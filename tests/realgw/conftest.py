from tests.realgw.fixtures import evolution_gateway, waha_gateway  # noqa: F401
