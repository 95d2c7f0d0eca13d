"""A Node.js gateway from inside: its V8 inspector, over the Chrome DevTools Protocol.

A gateway started with `node --inspect=127.0.0.1:9229 ...` (or `NODE_OPTIONS=--inspect=...`)
serves the protocol on that port: `GET /json/list` names the WebSocket of its one target, and
every message on it is JSON, a call `{"id", "method", "params"}` answered by `{"id", "result"}`
(or `"error"`), or an event `{"method", "params"}` (a heap snapshot arrives as events). The
client here is websocket-client (already the suite's) over a gevent socket, one reader greenlet
dispatching answers and events, so that a call that waits (a heap snapshot takes seconds)
stalls no other sampler.

What the suite evaluates inside the gateway is the probe below (`PROBE_INSTALL`): read-only,
it adds one global, `__loadSuiteProbe`, holding Node's own `perf_hooks` instruments (a
histogram of how late an unref'd 10 ms timer runs, and a PerformanceObserver of GC entries),
and reads `process.memoryUsage()`; nothing of the gateway's is called or changed. `close()`
removes it: the observer disconnected, the timer cleared, the global deleted. The inspector itself
must be reachable from the suite only: `--node-inspect` takes loopback addresses unless
`--allow-remote` (the protocol runs any code it is sent, with the gateway's rights).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
from collections.abc import Callable
from typing import Any

import gevent
import gevent.event
import gevent.socket
import httpx
import websocket

from gateway.state import is_loopback_host

log = logging.getLogger("monitors")
CONNECT_TIMEOUT_S = 5.0
CALL_TIMEOUT_S = 10.0
MB = 2**20


class InspectorError(Exception):
    """Why the inspector cannot be used, in one line."""


def parse_address(text: str, *, allow_remote: bool = False) -> tuple[str, int]:
    """`HOST:PORT` (`[::1]:9229` for IPv6) of a Node inspector; loopback unless allowed."""
    host, sep, port_text = text.strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise InspectorError(f"--node-inspect {text!r}: expected HOST:PORT, e.g. 127.0.0.1:9229")
    if not allow_remote and not is_loopback_host(host):
        raise InspectorError(
            f"--node-inspect {text!r}: not a loopback address; the inspector runs any code it "
            "is sent, so reach it through a tunnel, or pass --allow-remote"
        )
    return host, int(port_text)


def debugger_url(host: str, port: int, timeout_s: float = CONNECT_TIMEOUT_S) -> str:
    """The WebSocket of the inspector's Node target (`/json/list`)."""
    netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        targets = httpx.get(f"http://{netloc}/json/list", timeout=timeout_s).json()
    except (httpx.HTTPError, ValueError) as exc:
        raise InspectorError(
            f"no Node inspector at {netloc} ({type(exc).__name__}): start the gateway with "
            f"node --inspect={netloc}"
        ) from exc
    for target in targets if isinstance(targets, list) else []:
        if isinstance(target, dict) and target.get("webSocketDebuggerUrl"):
            return str(target["webSocketDebuggerUrl"])
    raise InspectorError(f"the inspector at {netloc} lists no target to attach to")


class CdpSession:
    """One connection to an inspector: `call()` by id, `on()` for events."""

    def __init__(self, url: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
        parsed = httpx.URL(url)
        try:
            sock = gevent.socket.create_connection((parsed.host, parsed.port), timeout_s)
            self.ws = websocket.create_connection(url, socket=sock, timeout=timeout_s)
        except (OSError, websocket.WebSocketException) as exc:
            raise InspectorError(f"cannot attach to the inspector at {url}: {exc}") from exc
        self.ws.settimeout(None)  # the reader waits as long as the gateway is silent
        self.ids = itertools.count(1)
        self.pending: dict[int, gevent.event.AsyncResult] = {}
        self.handlers: dict[str, Callable[[dict[str, Any]], None]] = {}
        self.closed = False
        self.reader = gevent.spawn(self._read)

    def on(self, event: str, handler: Callable[[dict[str, Any]], None] | None) -> None:
        """Call `handler(params)` for each `event` (None: stop)."""
        if handler is None:
            self.handlers.pop(event, None)
        else:
            self.handlers[event] = handler

    def call(
        self, method: str, params: dict[str, Any] | None = None, timeout_s: float = CALL_TIMEOUT_S
    ) -> dict[str, Any]:
        """The call's result; InspectorError for an error answer, a timeout or a lost link."""
        if self.closed:
            raise InspectorError("the inspector's connection is closed")
        call_id = next(self.ids)
        answer = gevent.event.AsyncResult()
        self.pending[call_id] = answer
        try:
            self.ws.send(json.dumps({"id": call_id, "method": method, "params": params or {}}))
            message = answer.get(timeout=timeout_s)
        except gevent.Timeout as exc:
            raise InspectorError(f"{method}: no answer in {timeout_s:g} s") from exc
        except (OSError, websocket.WebSocketException) as exc:
            raise InspectorError(f"{method}: the inspector's connection failed: {exc}") from exc
        finally:
            self.pending.pop(call_id, None)
        if "error" in message:
            error = message["error"]
            raise InspectorError(f"{method}: {error.get('message', error)}")
        return dict(message.get("result") or {})

    def _read(self) -> None:
        try:
            while True:
                message = json.loads(self.ws.recv())
                if "id" in message:
                    answer = self.pending.get(message["id"])
                    if answer is not None:
                        answer.set(message)
                else:
                    handler = self.handlers.get(message.get("method", ""))
                    if handler is not None:
                        handler(message.get("params") or {})
        except (OSError, ValueError, websocket.WebSocketException) as exc:
            lost = InspectorError(f"the inspector's connection ended: {exc or type(exc).__name__}")
        else:  # pragma: no cover - recv() returns or raises
            lost = InspectorError("the inspector's connection ended")
        self.closed = True
        for answer in list(self.pending.values()):
            answer.set_exception(lost)

    def close(self) -> None:
        self.closed = True
        self.reader.kill(block=False)
        # A close frame, without waiting for the reply: the reader is gone.
        with contextlib.suppress(OSError, websocket.WebSocketException):
            self.ws.send_close()
        self.ws.shutdown()


# Evaluated once with the console's `require` (includeCommandLineAPI). The GC observer's
# callback runs after the collection: `floor` is the heap used just after the latest major GC,
# the live heap as closely as can be read without forcing a collection. Event-loop delay is
# timed by the probe's own 10 ms interval (how late each turn came) rather than perf_hooks'
# monitorEventLoopDelay: resetting that one at a read that lands inside a long block (the
# inspector runs a call at V8's next interrupt check, even in a busy loop) lost the block.
PROBE_INSTALL = """(() => {
  if (globalThis.__loadSuiteProbe) return 'present';
  const { createHistogram, PerformanceObserver, constants } = require('perf_hooks');
  const delay = createHistogram();
  let last = process.hrtime.bigint();
  const timer = setInterval(() => {
    const now = process.hrtime.bigint();
    delay.record(Math.max(1, Number(now - last) - 10e6));
    last = now;
  }, 10);
  timer.unref();
  const gc = { count: 0, pauseMs: 0, major: 0, floor: null };
  const observer = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      gc.count += 1;
      gc.pauseMs += entry.duration;
      const kind = entry.detail ? entry.detail.kind : entry.kind;
      if (kind === constants.NODE_PERFORMANCE_GC_MAJOR) {
        gc.major += 1;
        gc.floor = process.memoryUsage().heapUsed;
      }
    }
  });
  observer.observe({ entryTypes: ['gc'] });
  globalThis.__loadSuiteProbe = {
    read() {
      const m = process.memoryUsage();
      const out = {
        rss: m.rss, heapUsed: m.heapUsed, heapTotal: m.heapTotal, external: m.external,
        arrayBuffers: m.arrayBuffers, gcCount: gc.count, gcPauseMs: gc.pauseMs,
        gcMajor: gc.major, floor: gc.floor, delayCount: delay.count,
        delayP50: delay.count ? delay.percentile(50) / 1e6 : null,
        delayP99: delay.count ? delay.percentile(99) / 1e6 : null,
        delayMax: delay.count ? delay.max / 1e6 : null,
      };
      delay.reset();
      return JSON.stringify(out);
    },
    remove() {
      observer.disconnect();
      clearInterval(timer);
      delete globalThis.__loadSuiteProbe;
      return 'removed';
    },
  };
  return 'installed';
})()"""
PROBE_READ = "globalThis.__loadSuiteProbe ? globalThis.__loadSuiteProbe.read() : null"
PROBE_REMOVE = "globalThis.__loadSuiteProbe ? globalThis.__loadSuiteProbe.remove() : 'absent'"


def evaluate(session: CdpSession, expression: str, *, console_api: bool = False) -> Any:
    """The value of a JavaScript expression in the gateway (InspectorError if it threw)."""
    result = session.call(
        "Runtime.evaluate",
        {"expression": expression, "returnByValue": True, "includeCommandLineAPI": console_api},
    )
    if "exceptionDetails" in result:
        details = result["exceptionDetails"]
        text = (details.get("exception") or {}).get("description") or details.get("text")
        raise InspectorError(f"the probe failed in the gateway: {str(text).splitlines()[0]}")
    return (result.get("result") or {}).get("value")


class NodeInspector:
    """The sampler of a Node.js gateway's heap, GC and event loop, once a second.

    Figures (MB, counts and ms per sample interval): `heap_used_mb`, `heap_total_mb`,
    `heap_external_mb`, `heap_array_buffers_mb`, `node_rss_mb`; `heap_after_gc_mb` (the heap
    used just after a major collection, only in a sample that saw one); `gc_count`,
    `gc_pause_ms`, `gc_major_count` since the previous sample; `eventloop_delay_p50_ms`,
    `eventloop_delay_p99_ms`, `eventloop_delay_max_ms` over the interval (how late a 10 ms
    timer's turns came, into a perf_hooks histogram reset at each sample). Where the probe
    cannot be installed, heap used and total from `Runtime.getHeapUsage` only.
    """

    name = "node inspector"
    figures = (
        "heap_used_mb", "heap_total_mb", "heap_external_mb", "heap_array_buffers_mb",
        "node_rss_mb", "heap_after_gc_mb", "gc_count", "gc_pause_ms", "gc_major_count",
        "eventloop_delay_p50_ms", "eventloop_delay_p99_ms", "eventloop_delay_max_ms",
    )  # fmt: skip

    def __init__(self, session: CdpSession, *, owns_session: bool = False) -> None:
        self.session = session
        self.owns_session = owns_session
        self.notes: list[str] = []
        self.probe = False
        self.previous: dict[str, Any] | None = None
        try:
            self.probe = evaluate(session, PROBE_INSTALL, console_api=True) in (
                "installed",
                "present",
            )
        except InspectorError as exc:
            self.notes.append(f"{exc}: heap from Runtime.getHeapUsage only")

    @classmethod
    def attach(cls, address: str, *, allow_remote: bool = False) -> NodeInspector:
        host, port = parse_address(address, allow_remote=allow_remote)
        return cls(CdpSession(debugger_url(host, port)), owns_session=True)

    def sample(self) -> dict[str, Any]:
        if not self.probe:
            usage = self.session.call("Runtime.getHeapUsage")
            return {
                "heap_used_mb": round(usage.get("usedSize", 0) / MB, 3),
                "heap_total_mb": round(usage.get("totalSize", 0) / MB, 3),
            }
        text = evaluate(self.session, PROBE_READ)
        if not isinstance(text, str):  # removed by someone else, or a restarted gateway
            raise InspectorError("the probe is gone from the gateway")
        now = json.loads(text)
        before, self.previous = self.previous, now
        sample: dict[str, Any] = {
            "heap_used_mb": round(now["heapUsed"] / MB, 3),
            "heap_total_mb": round(now["heapTotal"] / MB, 3),
            "heap_external_mb": round(now["external"] / MB, 3),
            "heap_array_buffers_mb": round(now["arrayBuffers"] / MB, 3),
            "node_rss_mb": round(now["rss"] / MB, 3),
        }
        if now["delayCount"]:
            for key, field in (("p50", "delayP50"), ("p99", "delayP99"), ("max", "delayMax")):
                sample[f"eventloop_delay_{key}_ms"] = round(now[field], 3)
        if before is not None:
            sample["gc_count"] = now["gcCount"] - before["gcCount"]
            sample["gc_pause_ms"] = round(now["gcPauseMs"] - before["gcPauseMs"], 3)
            sample["gc_major_count"] = now["gcMajor"] - before["gcMajor"]
            if sample["gc_major_count"] > 0 and now["floor"] is not None:
                sample["heap_after_gc_mb"] = round(now["floor"] / MB, 3)
        return sample

    def close(self) -> None:
        """Remove the probe from the gateway (and let go of the connection, if it is its own)."""
        if self.probe and not self.session.closed:
            try:
                evaluate(self.session, PROBE_REMOVE)
            except InspectorError as exc:
                log.warning("the probe could not be removed from the gateway: %s", exc)
        self.probe = False
        if self.owns_session:
            self.session.close()
