"""A small Node.js gateway speaking the plan's API (`server.js`), for tests of a Node.js target.

    with NodeGateway(["--block-ms", "200"], inspect=True) as gw:
        httpx.get(gw.url + "/health"); gw.inspector  # "127.0.0.1:PORT"

It answers as the reference gateway does (routes, status codes, JSON, the X-Api-Key check),
exports prom-client's default Node.js metrics beside the gateway's own, and has switches that
make a leak, a blocked event loop and GC churn measurable: `node server.js --help` lists them.
Its packages (`ws`, `prom-client`) are installed by `make nodegw` into `node_modules/` here.
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path
from typing import Any

from gateway.process import GatewayProcess, GatewayStartError

HERE = Path(__file__).resolve().parent
SERVER = HERE / "server.js"
# What node prints on stderr with --inspect: `Debugger listening on ws://127.0.0.1:9229/<id>`.
DEBUGGER = re.compile(r"Debugger listening on (ws://([^/\s]+)/\S+)")


def unavailable() -> str | None:
    """Why the Node.js gateway cannot run here, with the fix, or None when it can."""
    if shutil.which("node") is None:
        return "node is not installed: apt-get install nodejs npm"
    if not (HERE / "node_modules").is_dir():
        return "tests/nodegw/node_modules is missing: make nodegw"
    return None


class NodeGateway(GatewayProcess):
    """A running `node [--inspect=127.0.0.1:0] tests/nodegw/server.js ...` on a free loopback
    port: `url`, `pid`, and with `inspect=True` the inspector's `HOST:PORT` (`inspector`) and
    its WebSocket URL (`debugger_url`), on a free port that node chose."""

    module = "tests/nodegw/server.js"  # named in the errors of a failed start

    def __init__(
        self, args: list[str] | None = None, *, inspect: bool = False, **kwargs: Any
    ) -> None:
        super().__init__(args, **kwargs)
        self.inspect = inspect
        self.inspector = ""
        self.debugger_url = ""

    def command(self) -> list[str]:
        node = shutil.which("node") or "node"
        return [node, *(["--inspect=127.0.0.1:0"] if self.inspect else []), str(SERVER), *self.args]

    def start(self) -> NodeGateway:
        super().start()
        if self.inspect:
            self._find_inspector()
        return self

    def _find_inspector(self) -> None:
        # Node prints it before running the script, so it came before the listening line;
        # the wait only covers a reader thread that has not appended it yet.
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            for line in list(self.output):
                match = DEBUGGER.search(line)
                if match:
                    self.debugger_url, self.inspector = match.group(1), match.group(2)
                    return
            time.sleep(0.02)
        self.stop()
        raise GatewayStartError(
            "node printed no 'Debugger listening on ws://...': " + " | ".join(self.output)
        )
