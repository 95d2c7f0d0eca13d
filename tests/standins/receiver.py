"""A webhook receiver for tests: a loopback HTTP server in a thread that keeps what is POSTed.

    with WebhookReceiver() as hooks:
        ...  # give hooks.url to a gateway
        events = hooks.wait(lambda seen: len(seen) >= 2, timeout_s=5)

It can serve a socket bound elsewhere (`sock=`), e.g. inside the real gateways' network
namespace (tests.realgw.namespace.bind_in_namespace).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Hook:
    path: str
    body: Any  # the parsed JSON, or the text when it is not JSON


class WebhookReceiver:
    def __init__(self, sock: socket.socket | None = None) -> None:
        self.hooks: list[Hook] = []
        self.changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = raw.decode(errors="replace")
                with receiver.changed:
                    receiver.hooks.append(Hook(self.path, body))
                    receiver.changed.notify_all()
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:  # quiet: tests print what they need
                pass

        bind = sock is None
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler, bind_and_activate=bind)
        if sock is not None:
            self.server.socket.close()
            self.server.socket = sock
            sock.listen(64)
        self.server.daemon_threads = True
        host, port = self.server.socket.getsockname()[:2]
        self.url = f"http://{host}:{port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> WebhookReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)

    def wait(self, done: Callable[[list[Hook]], bool], timeout_s: float = 5.0) -> list[Hook]:
        """The hooks so far, once `done(hooks)` holds or `timeout_s` has passed."""
        deadline = time.monotonic() + timeout_s
        with self.changed:
            while not done(self.hooks) and time.monotonic() < deadline:
                self.changed.wait(max(0.0, deadline - time.monotonic()))
            return list(self.hooks)
