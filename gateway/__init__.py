"""The reference WhatsApp HTTP gateway: the embedded default target of the load test suite.

It speaks the test plan's API (sessions, messages, inbound webhooks, WebSocket events, /metrics),
simulates WhatsApp's network with a bounded queue and a pool of senders, and has fault switches
(latency, errors, stalls, leaks, crash) so that every detector of the suite can be proven. It knows
nothing of the suite: the suite starts it as a process (`gateway.process.GatewayProcess`).
"""

from gateway.app import create_app
from gateway.config import GatewayConfig

__all__ = ["GatewayConfig", "create_app"]
