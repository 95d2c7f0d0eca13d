"""A socket.io stand-in for a gateway's ack events (Evolution API's, wppconnect-server's), run
as a process of its own, as a gateway is: python-socketio's ASGI server on uvicorn.

`python -m tests.users.socketio_gateway '{"namespace": "/i1", "key": "k", "script": [...]}'`
listens on a free loopback port and prints it as its first line. A client that connects to the
namespace with `?apikey=<key>` is sent the script's `[event, payload]` pairs in order; with
another key the namespace refuses it. For the test: `GET /seen`, the connects so far (query
string and headers), and `POST /disconnect`, which ends every connection from this side.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from typing import Any
from urllib.parse import parse_qs

import socketio
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


def app(namespace: str, key: str, script: list[tuple[str, Any]]) -> socketio.ASGIApp:
    sio = socketio.AsyncServer(async_mode="asgi")
    seen: list[dict[str, Any]] = []
    sids: set[str] = set()

    async def connect(sid: str, environ: dict[str, Any], auth: Any) -> bool:
        query = environ.get("QUERY_STRING", "")
        headers = {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in environ["asgi.scope"]["headers"]
        }
        seen.append({"query": parse_qs(query), "headers": headers})
        if parse_qs(query).get("apikey") != [key]:
            return False
        sids.add(sid)
        sio.start_background_task(push, sid)  # after the connect is answered
        return True

    async def push(sid: str) -> None:
        await asyncio.sleep(0)
        for event, payload in script:
            await sio.emit(event, payload, to=sid, namespace=namespace)

    async def disconnect(sid: str, *reason: Any) -> None:
        sids.discard(sid)

    async def seen_so_far(request: Request) -> JSONResponse:
        return JSONResponse(seen)

    async def disconnect_all(request: Request) -> JSONResponse:
        for sid in list(sids):
            await sio.disconnect(sid, namespace=namespace)
        return JSONResponse({"disconnected": len(sids)})

    sio.on("connect", connect, namespace=namespace)
    sio.on("disconnect", disconnect, namespace=namespace)
    control = Starlette(
        routes=[
            Route("/seen", seen_so_far),
            Route("/disconnect", disconnect_all, methods=["POST"]),
        ]
    )
    return socketio.ASGIApp(sio, other_asgi_app=control)


def main(config: dict[str, Any]) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    print(listener.getsockname()[1], flush=True)
    served = app(config["namespace"], config["key"], [tuple(pair) for pair in config["script"]])
    server = uvicorn.Server(uvicorn.Config(served, log_level="warning", lifespan="off"))
    server.run(sockets=[listener])


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
