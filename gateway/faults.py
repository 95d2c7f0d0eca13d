"""Fault switches, each doing measurably what it says, so the suite's detectors can be proven.

- `FaultMiddleware`: added latency (with jitter) and injected 500s on `/api` requests, and the
  abrupt exit after N requests. Installed only when one of them is on: no cost otherwise.
- `stall_loop`: blocks the whole event loop for `stall_ms` every `stall_every_s`, on a fixed
  timetable, the way a long GC pause or a blocked Node.js event loop does; `stall_on_signal`:
  once at each SIGUSR1 instead, when whoever sends it wants to know the moment.
- `Leak`: memory retained forever per accepted message.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.errors import error_response

if TYPE_CHECKING:
    from gateway.config import GatewayConfig
    from gateway.metrics import GatewayMetrics

CRASH_EXIT_CODE = 70


class FaultMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        config: GatewayConfig,
        metrics: GatewayMetrics,
        rng: random.Random,
        routes: Sequence[BaseRoute] = (),
    ) -> None:
        self.app = app
        self.routes = routes
        self.latency_s = config.latency_ms / 1000
        self.jitter_s = config.latency_jitter_ms / 1000
        self.error_rate = config.error_rate
        self.crash_after = config.crash_after_requests
        self.rng = rng
        self.requests = 0
        self.injected_errors = metrics.faults_injected.labels(kind="error")
        self.injected_latency = metrics.faults_injected.labels(kind="latency")

    @staticmethod
    def wanted(config: GatewayConfig) -> bool:
        return bool(
            config.latency_ms
            or config.latency_jitter_ms
            or config.error_rate
            or config.crash_after_requests
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.requests += 1
        if self.crash_after and self.requests >= self.crash_after:
            print(
                f"gateway: crash switch: exiting abruptly on request {self.requests}",
                file=sys.stderr,
                flush=True,
            )
            os._exit(CRASH_EXIT_CODE)
        if scope["path"].startswith("/api/"):
            if self.latency_s > 0 or self.jitter_s > 0:
                delay = self.latency_s
                if self.jitter_s > 0:
                    delay = max(0.0, delay + self.rng.uniform(-self.jitter_s, self.jitter_s))
                self.injected_latency.inc()
                await asyncio.sleep(delay)
            if self.error_rate > 0 and self.rng.random() < self.error_rate:
                self.injected_errors.inc()
                self._name_route(scope)
                response = error_response(
                    500, "injected_fault", "Error injected by the gateway's --error-rate switch."
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _name_route(self, scope: Scope) -> None:
        """Answered before routing: find the route anyway, so metrics count it where it belongs."""
        for route in self.routes:
            match, _ = route.matches(scope)
            if match is Match.FULL:
                scope["route"] = route
                return


async def stall_loop(stall_ms: float, every_s: float, metrics: GatewayMetrics) -> None:
    """Block the event loop for `stall_ms` at t0 + k * every_s, for ever."""
    stalls = metrics.faults_injected.labels(kind="stall")
    start = time.monotonic()
    ticks = 0
    while True:
        ticks += 1
        await asyncio.sleep(max(0.0, start + ticks * every_s - time.monotonic()))
        stalls.inc()
        time.sleep(stall_ms / 1000)  # deliberately blocking: that is the fault


def stall_on_signal(stall_ms: float, metrics: GatewayMetrics) -> None:
    """Block the event loop for `stall_ms` at each SIGUSR1 (the loop's own signal handler)."""
    stalls = metrics.faults_injected.labels(kind="stall")

    def stall() -> None:
        stalls.inc()
        time.sleep(stall_ms / 1000)  # deliberately blocking: that is the fault

    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, stall)


class Leak:
    """Memory the leak switch retains for ever (written, so it is resident)."""

    def __init__(self, kib_per_message: float) -> None:
        self.bytes_per_message = int(kib_per_message * 1024)
        self.retained: list[bytes] = []
        self.total_bytes = 0

    def on_message_accepted(self) -> None:
        if self.bytes_per_message:
            self.retained.append(b"\x5a" * self.bytes_per_message)
            self.total_bytes += self.bytes_per_message
