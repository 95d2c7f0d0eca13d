"""The real gateways start, answer, create and delete one session, and stop (real_gateway)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.realgw.gateways import RealGateway

pytestmark = pytest.mark.real_gateway


def assert_main_process(gateway: RealGateway) -> None:
    # The process monitor reads /proc by PID, across namespaces: the PID must be node's own.
    assert Path(f"/proc/{gateway.pid}/comm").read_text().strip() == "node"
    assert os.readlink(f"/proc/{gateway.pid}/ns/net") != os.readlink("/proc/self/ns/net")


def test_evolution_creates_and_deletes_an_instance(evolution_gateway: RealGateway) -> None:
    gateway = evolution_gateway
    assert_main_process(gateway)
    assert gateway.count() == 0
    created = gateway.request(
        "POST", "/instance/create",
        {"instanceName": "smoke-1", "integration": "WHATSAPP-BAILEYS", "qrcode": False},
    )  # fmt: skip
    assert created.status == 201, created.body
    assert created.body["instance"]["instanceName"] == "smoke-1"
    assert gateway.count() == 1
    state = gateway.request("GET", "/instance/connectionState/smoke-1")
    assert state.body["instance"]["state"] == "close"
    assert gateway.delete("smoke-1").status == 200
    assert gateway.wait_count(0) == 0


def test_waha_creates_and_deletes_the_default_session(waha_gateway: RealGateway) -> None:
    gateway = waha_gateway
    assert_main_process(gateway)
    assert gateway.count() == 0
    created = gateway.request("POST", "/api/sessions", {"name": "default", "start": True})
    assert created.status == 201, created.body
    assert created.body["status"] == "STARTING"
    assert gateway.count() == 1
    assert gateway.delete("default").status == 200
    assert gateway.wait_count(0) == 0
    # The namespace helper runs commands where the gateway is: curl sees its /ping.
    ping = gateway.run(["curl", "-s", f"{gateway.url}/ping"])
    assert '"pong"' in ping.stdout
