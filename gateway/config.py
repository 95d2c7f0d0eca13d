"""The reference gateway's settings: one table that feeds the dataclass, `--help` and env vars.

Every switch is a command-line flag (`--error-rate 0.1`) and an environment variable
(`GATEWAY_ERROR_RATE=0.1`); the flag wins. Defaults are chosen so that, on a 2-core machine,
the test plan's `sessions` and `webhooks` scenarios pass at full length and the stress ramp
breaks at the session cap with 503 + Retry-After (see README, "The reference gateway").
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
from dataclasses import dataclass, field
from typing import Any

ENV_PREFIX = "GATEWAY_"
LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")  # uvicorn's


def _meta(help: str, group: str) -> dict[str, Any]:
    return {"help": help, "group": group}


@dataclass(frozen=True)
class GatewayConfig:
    """Everything the gateway can be told. Field docs double as `--help` text."""

    # Server
    host: str = field(default="127.0.0.1", metadata=_meta("address to listen on", "server"))
    port: int = field(
        default=3000, metadata=_meta("port to listen on; 0 picks a free one", "server")
    )
    log_level: str = field(
        default="warning", metadata=_meta("uvicorn log level (access log is off)", "server")
    )
    require_api_key: bool = field(
        default=False,
        metadata=_meta(
            "demand X-Api-Key: 401 without a key, 403 with another key than the session's",
            "server",
        ),
    )
    allow_remote_webhooks: bool = field(
        default=False,
        metadata=_meta("let sessions register a webhookUrl that is not on loopback", "server"),
    )

    # Sessions
    max_sessions: int = field(
        default=5000,
        metadata=_meta("session cap; above it POST /api/sessions answers 503", "sessions"),
    )
    pairing_delay_s: float = field(
        default=0.5,
        metadata=_meta("seconds a new session stays 'initializing' before 'ready'", "sessions"),
    )
    session_idle_expiry_s: float = field(
        default=30.0,
        metadata=_meta(
            "seconds after which a session never used (no message, no subscriber) expires; "
            "0 disables",
            "sessions",
        ),
    )
    session_memory_kib: int = field(
        default=256,
        metadata=_meta("memory held by each live session (KiB), so it can be measured", "sessions"),
    )
    rate_limit: float = field(
        default=10.0,
        metadata=_meta(
            "messages per second per session (token bucket, burst of one second); "
            "above it 429 + Retry-After; 0 disables",
            "sessions",
        ),
    )

    # Delivery pipeline
    queue_size: int = field(
        default=10000,
        metadata=_meta("bounded outbound queue; when full, sends answer 503", "delivery"),
    )
    senders: int = field(
        default=100, metadata=_meta("concurrent senders draining the queue", "delivery")
    )
    delivery_latency_ms: float = field(
        default=50.0,
        metadata=_meta("simulated network time to send one message (ack 1, 'server')", "delivery"),
    )
    delivery_jitter_ms: float = field(
        default=20.0,
        metadata=_meta("uniform jitter (+/-) on the send and device latencies", "delivery"),
    )
    device_latency_ms: float = field(
        default=100.0,
        metadata=_meta("time from 'sent' to 'delivered' (ack 2, 'device')", "delivery"),
    )
    delivery_failure_rate: float = field(
        default=0.0,
        metadata=_meta("fraction of sends that fail (ack -1, 'error')", "delivery"),
    )
    webhook_attempts: int = field(
        default=3,
        metadata=_meta("attempts to POST an ack to a session's webhookUrl", "delivery"),
    )
    dedup_capacity: int = field(
        default=100_000,
        metadata=_meta("inbound webhook message ids remembered for idempotency", "delivery"),
    )

    # Fault switches
    latency_ms: float = field(
        default=0.0, metadata=_meta("added latency on every /api request (ms)", "faults")
    )
    latency_jitter_ms: float = field(
        default=0.0, metadata=_meta("uniform jitter (+/-) on the added latency (ms)", "faults")
    )
    error_rate: float = field(
        default=0.0,
        metadata=_meta("fraction of /api requests answered 500 (injected_fault)", "faults"),
    )
    stall_ms: float = field(
        default=0.0,
        metadata=_meta(
            "block the event loop this long (ms) every --stall-every-s, like a GC pause", "faults"
        ),
    )
    stall_every_s: float = field(default=5.0, metadata=_meta("period of the stalls (s)", "faults"))
    stall_on_signal: bool = field(
        default=False,
        metadata=_meta(
            "stall --stall-ms once at each SIGUSR1 instead of every --stall-every-s (a switch "
            "a test throws at a moment it knows)",
            "faults",
        ),
    )
    leak_kib_per_message: float = field(
        default=0.0,
        metadata=_meta("memory retained forever per accepted message (KiB)", "faults"),
    )
    crash_after_requests: int = field(
        default=0,
        metadata=_meta("exit abruptly on the N-th HTTP request (0: never)", "faults"),
    )

    def __post_init__(self) -> None:
        problems = list(self._problems())
        if problems:
            raise ValueError(problems[0])

    def _problems(self):
        for name in ("error_rate", "delivery_failure_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                yield f"--{_flag(name)} must be between 0 and 1"
        for name in (
            "max_sessions",
            "queue_size",
            "senders",
        ):
            if getattr(self, name) < 1:
                yield f"--{_flag(name)} must be at least 1"
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                yield f"--{_flag(f.name)} must be a finite number"
            if isinstance(value, int | float) and not isinstance(value, bool) and value < 0:
                yield f"--{_flag(f.name)} must not be negative"
        if self.log_level.lower() not in LOG_LEVELS:
            yield f"--log-level must be one of {', '.join(LOG_LEVELS)}"
        if not 0 <= self.port <= 65535:
            yield "--port must be between 0 and 65535"
        if self.stall_ms > 0 and self.stall_every_s <= 0:
            yield "--stall-every-s must be positive when --stall-ms is set"


def _flag(name: str) -> str:
    return name.replace("_", "-")


def _env_name(name: str) -> str:
    return ENV_PREFIX + name.upper()


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"not a boolean: {text!r}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m gateway",
        description=(
            "Reference WhatsApp HTTP gateway: the test plan's API with a simulated WhatsApp "
            "network, Prometheus metrics and fault switches. Every flag also reads the "
            f"environment variable shown beside it ({ENV_PREFIX}<FLAG>); the flag wins."
        ),
    )
    groups: dict[str, argparse._ArgumentGroup] = {}
    for f in dataclasses.fields(GatewayConfig):
        group_name = f.metadata["group"]
        group = groups.get(group_name) or groups.setdefault(
            group_name, parser.add_argument_group(group_name)
        )
        help_text = f"{f.metadata['help']} (default: {f.default}; env {_env_name(f.name)})"
        if f.type in ("bool", bool):
            group.add_argument(
                f"--{_flag(f.name)}", dest=f.name, action="store_true", default=None, help=help_text
            )
        else:
            group.add_argument(
                f"--{_flag(f.name)}",
                dest=f.name,
                type=_converter(f),
                default=None,
                metavar={"int": "N", "float": "NUM", "str": "TEXT"}[str(f.type)],
                help=help_text,
            )
    return parser


def _converter(f: dataclasses.Field):
    kind = {"int": int, "float": float, "str": str}[str(f.type)]

    def convert(text: str):
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {kind.__name__}, got {text!r}") from None

    convert.__name__ = kind.__name__
    return convert


def config_from_env_and_args(argv: list[str] | None = None) -> GatewayConfig:
    """Flags over environment over defaults. Raises ValueError with a one-line message."""
    args = build_parser().parse_args(argv)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(GatewayConfig):
        given = getattr(args, f.name)
        if given is not None:
            values[f.name] = given
            continue
        env_value = os.environ.get(_env_name(f.name))
        if env_value is None:
            continue
        try:
            if str(f.type) == "bool":
                values[f.name] = _parse_bool(env_value)
            else:
                values[f.name] = {"int": int, "float": float, "str": str}[str(f.type)](env_value)
        except ValueError:
            raise ValueError(f"{_env_name(f.name)}={env_value!r} is not a valid {f.type}") from None
    return GatewayConfig(**values)
