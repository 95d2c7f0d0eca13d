"""A server with a known latency distribution that records the ground truth of every request.

    python -m tests.shapes.latency_server [--median-ms 50] [--sigma 0.6] [--seed 1]

`GET /probe` is answered after a delay drawn from a seeded log-normal distribution (median
`--median-ms`, clipped to 1..1000 ms); `GET /record` returns, as JSON, how long each probe spent
in the server: from the kernel's receive timestamp of its request (SO_TIMESTAMPNS, so the time
the server took to wake up counts) to the moment its response was written back. Plain sockets
on an asyncio loop, so the record is the server's time and not a framework's. Prints
`listening on http://127.0.0.1:PORT` when ready.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import socket
import struct
import time

RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s"
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
CMSG_SPACE = socket.CMSG_SPACE(16)


class LatencyServer:
    def __init__(self, median_ms: float, sigma: float, seed: int) -> None:
        self.delays = random.Random(seed)
        self.median_ms, self.sigma = median_ms, sigma
        self.record: list[float] = []
        self.loop = asyncio.get_running_loop()

    def delay_s(self) -> float:
        delay_ms = self.median_ms * math.exp(self.delays.gauss(0.0, self.sigma))
        return min(1000.0, max(1.0, delay_ms)) / 1000

    def accept(self, listener: socket.socket) -> None:
        conn, _ = listener.accept()
        conn.setblocking(False)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        buffer = bytearray()
        self.loop.add_reader(conn, self.readable, conn, buffer)

    def readable(self, conn: socket.socket, buffer: bytearray) -> None:
        try:
            data, ancillary, _, _ = conn.recvmsg(65536, CMSG_SPACE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data, ancillary = b"", []
        if not data:
            self.loop.remove_reader(conn)
            conn.close()
            return
        arrived = time.time()
        for level, kind, value in ancillary:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                seconds, nanoseconds = struct.unpack("qq", value[:16])
                arrived = seconds + nanoseconds / 1e9
        buffer += data
        while b"\r\n\r\n" in buffer:  # requests without bodies (GET) only
            end = buffer.index(b"\r\n\r\n") + 4
            head = bytes(buffer[:end])
            del buffer[:end]
            if head.split(b" ", 2)[1:2] == [b"/record"]:
                self.respond(conn, json.dumps(self.record).encode(), None)
            else:
                self.loop.call_later(self.delay_s(), self.respond, conn, b"ok", arrived)

    def respond(self, conn: socket.socket, body: bytes, arrived: float | None) -> None:
        try:
            conn.sendall(RESPONSE % (len(body), body))
        except OSError:
            return
        if arrived is not None:
            self.record.append((time.time() - arrived) * 1000)


async def serve(median_ms: float, sigma: float, seed: int) -> None:
    server = LatencyServer(median_ms, sigma, seed)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1024)
    listener.setblocking(False)
    server.loop.add_reader(listener, server.accept, listener)
    print(f"listening on http://127.0.0.1:{listener.getsockname()[1]}", flush=True)
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--median-ms", type=float, default=50.0)
    parser.add_argument("--sigma", type=float, default=0.6)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    asyncio.run(serve(args.median_ms, args.sigma, args.seed))


if __name__ == "__main__":
    main()
