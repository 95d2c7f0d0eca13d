"""`python -m gateway`: run the reference gateway in the foreground.

Prints one line `gateway listening on http://HOST:PORT` once it accepts connections (with the
real port when `--port 0` asked for a free one); bad flags and busy ports are one-line errors
with exit code 2.
"""

from __future__ import annotations

import errno
import socket
import sys

import uvicorn
from prometheus_client import disable_created_metrics
from starlette.types import ASGIApp

from gateway.app import create_app
from gateway.config import GatewayConfig, config_from_env_and_args

USAGE_ERROR = 2


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise SystemExit(_fail(f"port {port} on {host} is already in use")) from None
        raise SystemExit(_fail(f"cannot listen on {host}:{port}: {exc.strerror}")) from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _fail(message: str) -> int:
    print(f"gateway: {message}", file=sys.stderr)
    return USAGE_ERROR


def serve(config: GatewayConfig) -> None:
    disable_created_metrics()  # the `_created` series only double the exposition's size
    sock = bind(config.host, config.port)
    serve_app(create_app(config), sock, log_level=config.log_level)


def serve_app(app: ASGIApp, sock: socket.socket, *, log_level: str, label: str = "gateway") -> None:
    """Serve `app` on a bound socket; print `<label> listening on http://HOST:PORT` once it
    accepts connections (the line a parent process waits for). The test stand-ins use it too."""
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            loop="uvloop",
            http="httptools",
            lifespan="on",
            access_log=False,
            log_level=log_level,
            timeout_graceful_shutdown=5,
            # Load generators keep idle connections for a while (an arrival pool waits between
            # arrivals): closing them after uvicorn's 5 s races with the next request on them.
            timeout_keep_alive=75,
        )
    )
    original_startup = server.startup

    async def startup(sockets=None) -> None:
        await original_startup(sockets=sockets)
        if server.started:
            print(f"{label} listening on http://{shown}:{port}", flush=True)

    server.startup = startup  # type: ignore[method-assign]
    server.run(sockets=[sock])


def main(argv: list[str] | None = None) -> int:
    try:
        config = config_from_env_and_args(argv)
    except ValueError as exc:
        return _fail(str(exc))
    serve(config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
