"""Real gateways (WAHA core, Evolution API) as pytest fixtures, when ../shared/realgw built them.

`evolution_gateway` and `waha_gateway` (module scope, in tests.realgw.fixtures, registered for
every test by tests/conftest.py) start one in
the loopback-only network namespace `realgw` and yield a `RealGateway`: `url`, `api_key`, `pid`
(its node process, for the process monitor), `count()` (its own count of sessions),
`request(...)` and `run([...])` inside the namespace. Tests that use them are marked
`real_gateway`; where the gateway is not built, or namespaces need root we lack, they skip.
"""
