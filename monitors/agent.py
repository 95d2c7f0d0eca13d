"""A remote agent: the gateway's process samples, served over HTTP from the gateway's machine.

    python -m monitors.agent --pid N | --port P [--host 127.0.0.1] [--listen-port 9464]
                             [--no-children]

`GET /sample` answers the JSON of one `ProcessSampler.sample()` (RSS and PSS, CPU, threads,
open files, connections, disk I/O, summed over the process and its children unless
`--no-children`, and which processes those were; CPU % and rates are computed against the
previous `/sample` call, so poll it from one client at a steady pace: the suite does, once a
second). `GET /health`
answers the PID sampled. The process is the one given by `--pid`, or the one listening on the
local TCP port `--port` (looked up again if it restarts).

The agent listens on 127.0.0.1 unless told otherwise. For a gateway on another machine, run it
there bound to that machine's address, and give the suite its URL:

    python -m monitors.agent --port 3000 --host 10.0.0.5          # on the gateway's machine
    locust -f locustfile.py ... -H http://10.0.0.5:3000 --allow-remote \\
        --monitor-agent http://10.0.0.5:9464                      # on the load generator

It has no authentication: bind it to an address only your own network reaches. Bad input (no
such process, nothing listening on the port, a listen address in use) is one line on stderr
and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import psutil

from monitors.process import ProcessSampler, pid_listening_on

USAGE_ERROR = 2


class AgentError(Exception):
    """Bad input: reported as one line on stderr, exit code 2."""


class Agent:
    """The sampled process, found again by its port when it has been restarted."""

    def __init__(self, pid: int | None, port: int | None, include_children: bool) -> None:
        self.port = port
        self.include_children = include_children
        self.lock = threading.Lock()
        self.sampler = self._sampler(pid if pid is not None else self._pid_on_port())

    def _pid_on_port(self) -> int:
        assert self.port is not None
        pid = pid_listening_on(self.port)
        if pid is None:
            raise AgentError(
                f"nothing is listening on local port {self.port} (or its process belongs to "
                "another user: run the agent as that user, or pass --pid)"
            )
        return pid

    def _sampler(self, pid: int) -> ProcessSampler:
        try:
            return ProcessSampler(pid, self.include_children)
        except psutil.NoSuchProcess:
            raise AgentError(f"no process with pid {pid}") from None
        except psutil.AccessDenied:
            raise AgentError(f"cannot read process {pid}: access denied") from None

    @property
    def pid(self) -> int:
        return self.sampler.process.pid

    def sample(self) -> tuple[int, dict[str, Any]]:
        """(HTTP status, body): 200 and the sample, or 503 and why there is none."""
        with self.lock:
            try:
                return 200, self.sampler.sample()
            except psutil.NoSuchProcess:
                if self.port is not None:
                    try:
                        self.sampler = self._sampler(self._pid_on_port())
                        return 200, self.sampler.sample()
                    except (AgentError, psutil.Error):
                        pass
                detail = f"process {self.pid} is gone"
                return 503, {"error": "process_gone", "detail": detail}
            except psutil.Error as exc:
                detail = f"cannot sample process {self.pid}: {type(exc).__name__}"
                return 503, {"error": "sample_failed", "detail": detail}


def make_handler(agent: Agent) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "monitors-agent"

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0].rstrip("/")
            if path == "/sample":
                self._json(*agent.sample())
            elif path == "/health":
                self._json(200, {"status": "ok", "pid": agent.pid})
            else:
                detail = "GET /sample or /health"
                self._json(404, {"error": "not_found", "detail": detail})

        def _json(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body, separators=(",", ":")).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # one poll a second for hours: no access log

    return Handler


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m monitors.agent",
        description="Serve a local process's resource samples at GET /sample (JSON).",
    )
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--pid", type=int, help="the process to sample")
    which.add_argument("--port", type=int, help="sample the process listening on this TCP port")
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1; on another machine: its own address)",
    )
    parser.add_argument(
        "--listen-port", type=int, default=9464, help="port to listen on (default 9464; 0: any)"
    )
    parser.add_argument(
        "--children",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="count the process's children (and theirs) in its samples (default; "
        "--no-children: the process alone)",
    )
    return parser.parse_args(argv)


def serve(args: argparse.Namespace) -> ThreadingHTTPServer:
    if args.pid is not None and args.pid <= 0:
        raise AgentError(f"no process with pid {args.pid}")
    if args.port is not None and not 0 < args.port < 65536:
        raise AgentError(f"--port {args.port} is not a TCP port")
    agent = Agent(args.pid, args.port, args.children)
    try:
        server = ThreadingHTTPServer((args.host, args.listen_port), make_handler(agent))
    except OSError as exc:
        raise AgentError(
            f"cannot listen on {args.host}:{args.listen_port}: {exc.strerror or exc}"
        ) from None
    server.daemon_threads = True
    host, port = server.server_address[:2]
    print(f"monitor agent for pid {agent.pid} on http://{host}:{port}/sample", file=sys.stderr)
    sys.stderr.flush()
    return server


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        server = serve(args)
    except AgentError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return USAGE_ERROR
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _interrupt)
    sys.exit(main())
