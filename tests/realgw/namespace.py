"""The network namespace `realgw` (loopback only) that the real gateways run in, from Python.

Clients of a real gateway must be inside it. Commands go through `ip netns exec`; sockets are
made by one thread that has joined the namespace (setns(2) moves only the calling thread), and
a socket stays in the namespace it was made in whichever thread then uses it. So a test can
talk HTTP to the gateway, or receive its webhooks, without a process per request.
"""

from __future__ import annotations

import ctypes
import http.client
import json
import os
import shutil
import socket
import subprocess
import time
from concurrent.futures import BrokenExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

NS = os.environ.get("REALGW_NS", "realgw")
NETNS_DIR = "/var/run/netns"
CLONE_NEWNET = 0x40000000


def unavailable() -> str | None:
    """Why namespaces cannot be used here, or None."""
    if os.geteuid() != 0:
        return "not root: `ip netns` needs root"
    if shutil.which("ip") is None:
        return "no `ip` command (iproute2)"
    return None


def ensure_namespace() -> None:
    """Create `realgw` with loopback up, as the run scripts do, if it is not there, and join
    it from the socket thread; NamespaceError when either cannot be done here."""
    try:
        if not os.path.exists(os.path.join(NETNS_DIR, NS)):
            subprocess.run(["ip", "netns", "add", NS], check=True, capture_output=True)
        run_in_namespace(["ip", "link", "set", "lo", "up"], check=True)
        _thread_inside().submit(lambda: None).result()
    except (subprocess.CalledProcessError, OSError, BrokenExecutor) as exc:
        raise NamespaceError(f"network namespace {NS} cannot be used here: {exc}") from None


class NamespaceError(RuntimeError):
    """The namespace cannot be made or joined (no CAP_SYS_ADMIN, no netns support)."""


def run_in_namespace(
    command: list[str], **kwargs: Any
) -> subprocess.CompletedProcess[str]:  # fmt: skip
    """`ip netns exec realgw <command>`, with text output captured unless told otherwise."""
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    return subprocess.run(["ip", "netns", "exec", NS, *command], **kwargs)


def _join_namespace() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(os.path.join(NETNS_DIR, NS), os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns into network namespace " + NS)
    finally:
        os.close(fd)


_inside: ThreadPoolExecutor | None = None


def _thread_inside() -> ThreadPoolExecutor:
    global _inside
    if _inside is None:
        _inside = ThreadPoolExecutor(1, "realgw-netns", initializer=_join_namespace)
    return _inside


def connect_in_namespace(host: str, port: int, timeout_s: float = 5.0) -> socket.socket:
    future = _thread_inside().submit(socket.create_connection, (host, port), timeout_s)
    return future.result()


def bind_in_namespace(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A TCP socket bound inside the namespace (not yet listening)."""

    def bind() -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        return sock

    return _thread_inside().submit(bind).result()


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    try:
        connect_in_namespace(host, port, timeout_s=1.0).close()
    except OSError:
        return False
    return True


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any  # parsed JSON, or the text ("" for an empty body)
    elapsed_s: float


class _NamespacedConnection(http.client.HTTPConnection):
    def connect(self) -> None:
        self.sock = connect_in_namespace(self.host, self.port, self.timeout or 30.0)


def request(
    url: str, method: str, path: str, body: Any = None,
    headers: dict[str, str] | None = None, timeout_s: float = 30.0, inside: bool = True,
) -> Answer:  # fmt: skip
    """One HTTP request with a JSON body to `url` (http://127.0.0.1:PORT): inside the
    namespace, or (`inside=False`) from here, so that a stand-in gets the very same request."""
    parts = urlsplit(url)
    kind = _NamespacedConnection if inside else http.client.HTTPConnection
    connection = kind(parts.hostname or "127.0.0.1", parts.port or 80, timeout=timeout_s)
    sent_headers = {"Content-Type": "application/json", **(headers or {})}
    payload = None if body is None else json.dumps(body)
    started = time.monotonic()
    try:
        connection.request(method, path, body=payload, headers=sent_headers)
        response = connection.getresponse()
        raw = response.read().decode(errors="replace")
    finally:
        connection.close()
    try:
        parsed: Any = json.loads(raw) if raw else ""
    except ValueError:
        parsed = raw
    return Answer(response.status, parsed, time.monotonic() - started)
