"""Watch a gateway without load: its resources and metrics once a second, live.

    python -m monitors [--url http://127.0.0.1:3000] [--pid N] [--interval 1] [--out DIR]
                       [--listen-port 8090] [--duration S] [--metrics-url URL|off]
                       [--agent URL] [--no-children]

The same sampler as a load run (`ResourceMonitor`), on its own: to watch a gateway under real
traffic, or before and after a run. The process is `--pid`, or the one listening on the local
port of `--url`, with its children unless `--no-children` (a gateway that runs a browser per
session spends most of its memory there; memory is then PSS, which counts the pages they
share once, and the line says how many processes it counted); the metrics are
`<url>/metrics`; `--agent` polls a `python -m monitors.agent` beside a gateway on another
machine. Every sample goes to `DIR/samples.csv` (default
`reports/monitor-<UTC timestamp>/`) and one compact line on stdout:

    14:02:07 t=12s | rss 71.2 MB | cpu 14.0 % | queue 0 | sessions 212 (ready 180) | ws 4 | alerts -
    14:02:07 t=12s | pss 1105.3 MB (46 processes) | cpu 38.0 % | queue - | sessions 5 | ...

and is served as JSON (`{"sample": {...}, "process_tree": {...}, "alerts": [...], "notes":
[...]}`, `process_tree` as in a run's summary) on 127.0.0.1 only:
`GET /stream` is a Server-Sent Events stream, one event per sample (1 Hz by default), and
`GET /sample` the latest one. Ctrl-C or SIGTERM stop it (the samples file is closed, and the
peaks, means and alerts are written to `DIR/resources.json`); `--duration S` stops it by itself.
"""

# ruff: noqa: E402
from gevent import monkey

monkey.patch_all()  # first: httpx, psutil and the file writes all run under gevent

import argparse
import datetime as dt
import json
import mimetypes
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import gevent
import psutil
from gevent.event import Event
from gevent.pywsgi import WSGIServer

from monitors.feed import Feed, stream
from monitors.live import WEB_DIR, LiveView, gateway_point
from monitors.process import memory_column, pid_listening_on
from monitors.resources import ResourceMonitor
from monitors.storage import read_samples

USAGE_ERROR = 2
PROJECT_ROOT = Path(__file__).resolve().parent.parent
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


class UsageError(Exception):
    pass


def _figure(sample: dict[str, Any], key: str, unit: str = "", digits: int = 0) -> str:
    value = sample.get(key)
    if not isinstance(value, int | float):
        return "-"
    return f"{value:.{digits}f}{unit}"


def compact_line(latest: dict[str, Any], alerts: list[str]) -> str:
    """One sample as one line: memory, cpu, queue depth, sessions, WebSocket connections,
    alerts. Memory is RSS for a process alone, PSS for a tree (with its processes counted)."""
    now = dt.datetime.now().strftime("%H:%M:%S")
    column = memory_column(latest.get("processes"))
    memory = f"{column.removesuffix('_mb')} {_figure(latest, column, ' MB', 1)}"
    if column == "pss_mb":
        memory += f" ({_figure(latest, 'processes')} processes)"
    elif "rss_mb" not in latest:
        memory = f"rss {_figure(latest, 'target_rss_mb', ' MB', 1)}"
    sessions = _figure(latest, "sessions_active")
    if "sessions_ready" in latest:
        sessions += f" (ready {_figure(latest, 'sessions_ready')})"
    parts = [
        f"{now} t={latest.get('t', 0):.0f}s",
        memory,
        f"cpu {_figure(latest, 'cpu_pct', ' %', 1)}",
        f"queue {_figure(latest, 'queue_depth')}",
        f"sessions {sessions}",
        f"ws {_figure(latest, 'websocket_connections')}",
        f"alerts {','.join(alerts) or '-'}",
    ]
    return " | ".join(parts)


class Watch:
    """The monitor, its output (stdout lines, new notes on stderr) and its live JSON."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.url = args.url.rstrip("/")
        self.pid = self.find_pid()
        metrics_url = None if args.metrics_url == "off" else args.metrics_url
        self.feed = Feed()
        self.view = LiveView(self.view_payload)
        self.started_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        self.monitor = ResourceMonitor(
            pid=self.pid,
            metrics_url=metrics_url or self.url + "/metrics",
            agent_url=args.agent or None,
            include_children=args.children,
            on_sample=self.on_sample,
            interval_s=args.interval,
        )
        self.notes_shown = 0
        self.show_notes()

    def find_pid(self) -> int | None:
        args = self.args
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UsageError(f"--url {args.url!r} is not an http(s) URL")
        if args.pid is not None:
            if args.pid <= 0 or not psutil.pid_exists(args.pid):
                raise UsageError(f"no process with pid {args.pid}")
            return args.pid
        if parts.hostname not in LOOPBACK:
            if not args.agent:
                warn(f"{parts.hostname} is not this machine: no process figures without --agent")
            return None
        port = parts.port or (443 if parts.scheme == "https" else 80)
        pid = pid_listening_on(port)
        if pid is None:
            warn(f"nothing visible listens on local port {port}: no process figures (--pid N)")
        return pid

    def payload(self) -> dict[str, Any]:
        return {"target": self.url, "pid": self.pid, **self.monitor.live()}

    def view_payload(self) -> dict[str, Any]:
        """The live page's payload (`monitors.live`), in its monitor mode: no run, no verdict."""
        latest = self.monitor.latest
        live = self.monitor.live()
        return {
            "mode": "monitor",
            "time": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
            "run_id": self.started_at,
            "state": "monitoring",
            "target": self.url,
            "run": None,
            "stage": None,
            "load": None,
            "throughput": None,
            "latency": None,
            "verdict": None,
            "point": {"t": latest["t"], **gateway_point(latest)} if "t" in latest else None,
            "latest": {k: v for k, v in latest.items() if isinstance(v, int | float)},
            "stages": [],
            "alerts": live["alerts"],
            "notes": live["notes"],
            "ended": None,
        }

    def on_sample(self, latest: dict[str, Any]) -> None:
        print(compact_line(latest, sorted(self.monitor.watch.active)), flush=True)
        self.show_notes()
        self.feed.publish(self.payload())
        self.view.tick()

    def show_notes(self) -> None:
        for note in self.monitor.notes[self.notes_shown :]:
            warn(note)
        self.notes_shown = len(self.monitor.notes)

    # --- HTTP: /stream (Server-Sent Events), /sample ------------------------------------------

    def app(self, environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        path = environ.get("PATH_INFO", "/").rstrip("/")
        if environ.get("REQUEST_METHOD") != "GET":
            return self.respond(start_response, "405 Method Not Allowed", {"error": "get_only"})
        if path == "/sample":
            return self.respond(start_response, "200 OK", self.payload())
        if path in ("/stream", "/suite/stream"):
            start_response(
                "200 OK",
                [
                    ("Content-Type", "text/event-stream"),
                    ("Cache-Control", "no-cache"),
                    ("X-Accel-Buffering", "no"),
                ],
            )
            return stream(self.feed) if path == "/stream" else self.view.events()
        if path == "/suite/live":
            return self.respond(start_response, "200 OK", self.view.current())
        if path == "" or path.startswith("/suite/static/"):
            return self.page(start_response, path.removeprefix("/suite/static/") or "suite.html")
        return self.respond(
            start_response,
            "404 Not Found",
            {"error": "not_found", "detail": "GET /, /stream, /sample, /suite/live, /suite/stream"},
        )

    @staticmethod
    def page(start_response: Any, name: str) -> Iterator[bytes]:
        """The live page's files (`monitors/web/`), as the web UI serves them."""
        path = (WEB_DIR / name).resolve()
        if not path.is_file() or WEB_DIR not in path.parents:
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return iter([b"not found\n"])
        data = path.read_bytes()
        kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        start_response(
            "200 OK",
            [
                ("Content-Type", kind),
                ("Content-Length", str(len(data))),
                ("Cache-Control", "no-cache"),
            ],
        )
        return iter([data])

    @staticmethod
    def respond(start_response: Any, status: str, body: dict[str, Any]) -> Iterator[bytes]:
        data = json.dumps(body, separators=(",", ":")).encode()
        start_response(
            status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
        )
        return iter([data])


def warn(message: str) -> None:
    print(f"monitor: {message}", file=sys.stderr, flush=True)


def default_out() -> Path:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return PROJECT_ROOT / "reports" / f"monitor-{stamp}"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m monitors",
        description="Sample a gateway's resources and metrics without load; stream them live.",
    )
    parser.add_argument(
        "--url", default="http://127.0.0.1:3000", help="the gateway (default %(default)s)"
    )
    parser.add_argument("--pid", type=int, help="its process (default: the one on --url's port)")
    parser.add_argument(
        "--interval", type=float, default=1.0, help="seconds between samples (default 1)"
    )
    parser.add_argument(
        "--out", type=Path, help="folder for samples.csv (default reports/monitor-<timestamp>/)"
    )
    parser.add_argument(
        "--listen-port",
        type=int,
        default=8090,
        help="port on 127.0.0.1 for /stream and /sample (default 8090; 0: any free port)",
    )
    parser.add_argument(
        "--duration", type=float, default=0, help="stop after this many seconds (default: never)"
    )
    parser.add_argument(
        "--metrics-url", default="", help="the Prometheus endpoint (default <url>/metrics; 'off')"
    )
    parser.add_argument("--agent", default="", help="URL of a monitors.agent on another machine")
    parser.add_argument(
        "--children",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="count the process's children (and theirs) in its samples: memory as PSS, CPU "
        "summed (default; --no-children: the process alone)",
    )
    args = parser.parse_args(argv)
    if args.interval < 0.1:
        parser.error("--interval must be at least 0.1 s")
    if args.duration < 0:
        parser.error("--duration must not be negative")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        watch = Watch(args)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return USAGE_ERROR
    server = WSGIServer(("127.0.0.1", args.listen_port), watch.app, log=None)
    try:
        server.start()
    except OSError as exc:
        print(
            f"error: cannot listen on 127.0.0.1:{args.listen_port}: {exc.strerror or exc} "
            "(--listen-port)",
            file=sys.stderr,
        )
        return USAGE_ERROR
    out = args.out or default_out()
    samples = out / "samples.csv"
    stop = Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        gevent.signal_handler(signum, stop.set)
    watch.monitor.start(samples)
    port = server.server_port
    pid = f"pid {watch.pid}" if watch.pid else "no process"
    warn(f"watching {watch.url} ({pid}) every {args.interval:g} s; samples to {samples}")
    warn(f"live at http://127.0.0.1:{port}/stream (SSE) and /sample; Ctrl-C stops")
    warn(f"charts at http://127.0.0.1:{port}/")
    started = time.monotonic()
    deadline = started + args.duration if args.duration else float("inf")
    while not stop.is_set() and time.monotonic() < deadline:
        stop.wait(min(1.0, deadline - time.monotonic()))
        watch.show_notes()  # also when there is no sample to print (target unreachable)
    watch.monitor.close()
    watch.feed.close()
    watch.view.stop()
    server.stop(timeout=1)
    summary = {"target": watch.url, "pid": watch.pid, **watch.monitor.summary()}
    (out / "resources.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    rows = len(read_samples(samples))
    warn(f"stopped after {time.monotonic() - started:.0f} s: {rows} samples in {samples}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
