"""`python -m tests.realgw.socketio_probe URL NAMESPACE [APIKEY]`: can a socket.io client join
NAMESPACE at URL (with `?apikey=` when given)? Prints one JSON line `{"connected", "error"}`.

A separate process, so that it can run inside the real gateways' namespace (`ip netns exec`)
or outside it for a stand-in, with the same client code either way.
"""

from __future__ import annotations

import json
import sys

import socketio


def probe(url: str, namespace: str, apikey: str | None) -> dict[str, object]:
    client = socketio.Client(reconnection=False)
    target = f"{url}?apikey={apikey}" if apikey else url
    try:
        client.connect(target, namespaces=[namespace], transports=["websocket"], wait_timeout=5)
    except socketio.exceptions.ConnectionError as exc:
        return {"connected": False, "error": str(exc)}
    client.disconnect()
    return {"connected": True, "error": None}


if __name__ == "__main__":
    print(json.dumps(probe(sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None)))
