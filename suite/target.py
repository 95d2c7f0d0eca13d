"""The target of a run: the embedded reference gateway when none is given, and the safety rule.

Load only ever goes to the configured target, and only to loopback unless `--allow-remote`
(or `ALLOW_REMOTE=1`) says otherwise.
"""

from __future__ import annotations

import shlex
import socket
from urllib.parse import urlsplit

from gateway.process import GatewayProcess, GatewayStartError
from gateway.state import is_loopback_host


class TargetError(ValueError):
    """A target the suite refuses or cannot reach; the message is one line."""


def is_loopback_url(url: str) -> bool:
    return is_loopback_host(urlsplit(url).hostname or "")


def check_target(url: str, allow_remote: bool) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TargetError(f"target {url!r} is not an http(s) URL")
    if not allow_remote and not is_loopback_url(url):
        raise TargetError(
            f"target {parts.hostname} is not on loopback; pass --allow-remote (or ALLOW_REMOTE=1)"
            " to load a remote gateway"
        )


def check_reachable(url: str, timeout_s: float = 3.0) -> None:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname, port), timeout=timeout_s).close()
    except OSError as exc:
        raise TargetError(f"target {url} is unreachable: {exc.strerror or exc}") from None


def start_embedded_gateway(extra_args: str = "") -> GatewayProcess:
    try:
        return GatewayProcess(shlex.split(extra_args)).start()
    except (GatewayStartError, ValueError) as exc:
        raise TargetError(f"the embedded gateway did not start: {exc}") from None
