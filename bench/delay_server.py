"""A server with a known latency that records the ground truth of every request it answers.

    python -m bench.delay_server [--port 0] [--delay-ms 50 | --median-ms 50 --sigma 0.6]
                                 [--stall-every-s 5 --stall-s 1] [--seed 1]

Any request (keep-alive, with or without a body) is answered 200 after its delay: a fixed
`--delay-ms`, or one drawn from a seeded log-normal distribution (`--median-ms`, `--sigma`,
clipped to 1..1000 ms). With stalls, the last `--stall-s` of every `--stall-every-s` (from the
server's start) is a stall: a response due inside one waits for its end, as a gateway whose
event loop froze would. `GET /record` returns, as JSON, how long each request spent in the
server, in ms: from the kernel's receive timestamp of its last bytes (SO_TIMESTAMPNS, so the
time the server took to wake up counts) to its response written back; `GET /record?clear`
also forgets them. Plain sockets on an asyncio loop, so the record is the server's time and
not a framework's. Prints `listening on http://127.0.0.1:PORT` when ready.

Used by `make bench` (bench.latency) and by the shapes tests (the percentiles' accuracy).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import random
import socket
import struct
import time

RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n%s"
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
CMSG_SPACE = socket.CMSG_SPACE(16)


class Delays:
    """When each response is due: its delay, then the end of a stall it would fall into."""

    def __init__(
        self, delay_ms: float | None, median_ms: float, sigma: float, seed: int,
        stall_every_s: float = 0.0, stall_s: float = 1.0,
    ) -> None:  # fmt: skip
        self.delay_ms, self.median_ms, self.sigma = delay_ms, median_ms, sigma
        self.random = random.Random(seed)
        self.stall_every_s, self.stall_s = stall_every_s, stall_s
        self.start = time.time()

    def delay_s(self) -> float:
        if self.delay_ms is not None:
            return self.delay_ms / 1000
        delay_ms = self.median_ms * math.exp(self.random.gauss(0.0, self.sigma))
        return min(1000.0, max(1.0, delay_ms)) / 1000

    def due(self, arrived: float) -> float:
        """Wall-clock time at which the response to a request that arrived then is sent."""
        due = arrived + self.delay_s()
        if self.stall_every_s > 0:
            into = (due - self.start) % self.stall_every_s
            if into >= self.stall_every_s - self.stall_s:
                due += self.stall_every_s - into  # the end of the stall
        return due


class DelayServer:
    def __init__(self, delays: Delays) -> None:
        self.delays = delays
        self.record: list[float] = []
        self.loop = asyncio.get_running_loop()

    def accept(self, listener: socket.socket) -> None:
        conn, _ = listener.accept()
        conn.setblocking(False)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        # Responses on one connection go in order (HTTP/1.1): none before the previous one.
        state = {"buffer": bytearray(), "last_due": 0.0}
        self.loop.add_reader(conn, self.readable, conn, state)

    def readable(self, conn: socket.socket, state: dict) -> None:
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
        buffer: bytearray = state["buffer"]
        buffer += data
        while (head_end := buffer.find(b"\r\n\r\n")) >= 0:
            head = bytes(buffer[:head_end]).decode("latin-1")
            length = 0
            for line in head.split("\r\n")[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            end = head_end + 4 + length
            if len(buffer) < end:
                return  # the body's last bytes are still to come (and their timestamp)
            del buffer[:end]
            target = head.split(" ", 2)[1] if head.count(" ") >= 2 else ""
            if target.startswith("/record"):
                body = json.dumps(self.record).encode()
                if target.endswith("?clear"):
                    self.record = []
                self.respond(conn, body, None, b"application/json")
                continue
            due = max(self.delays.due(arrived), state["last_due"])
            state["last_due"] = due
            self.loop.call_later(due - time.time(), self.respond, conn, b"{}", arrived)

    def respond(
        self, conn: socket.socket, body: bytes, arrived: float | None,
        kind: bytes = b"application/json",
    ) -> None:  # fmt: skip
        try:
            conn.sendall(RESPONSE % (kind, len(body), body))
        except OSError:
            return
        if arrived is not None:
            self.record.append((time.time() - arrived) * 1000)


async def serve(port: int, delays: Delays) -> None:
    server = DelayServer(delays)
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(1024)
    listener.setblocking(False)
    server.loop.add_reader(listener, server.accept, listener)
    print(f"listening on http://127.0.0.1:{listener.getsockname()[1]}", flush=True)
    await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.delay_server", description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--delay-ms", type=float, help="a fixed delay (else log-normal)")
    parser.add_argument("--median-ms", type=float, default=50.0)
    parser.add_argument("--sigma", type=float, default=0.6)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--stall-every-s", type=float, default=0.0)
    parser.add_argument("--stall-s", type=float, default=1.0)
    args = parser.parse_args(argv)
    delays = Delays(args.delay_ms, args.median_ms, args.sigma, args.seed,
                    args.stall_every_s, args.stall_s)  # fmt: skip
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.port, delays))


if __name__ == "__main__":
    main()
