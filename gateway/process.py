"""Start and stop the reference gateway as a child process (for the suite and the tests).

    with GatewayProcess(["--error-rate", "0.1"]) as gw:
        httpx.get(gw.url + "/health")

The gateway binds a free loopback port itself (`--port 0`) and reports it, so there is no race
between choosing a port and listening on it.
"""

from __future__ import annotations

import ctypes
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import deque
from pathlib import Path

# `gateway listening on ...`; the test stand-ins announce themselves the same way.
READY = re.compile(r"listening on (http://\S+)")
PROJECT_ROOT = Path(__file__).resolve().parent.parent


class GatewayStartError(RuntimeError):
    pass


class GatewayProcess:
    """A running `python -m gateway`, on a free loopback port unless told otherwise.

    Subclasses run another module with the same flags and announcement (`module`), or another
    program (`command()`), and say which path answers 200 once it is up (`health_path`)."""

    module = "gateway"
    health_path = "/health"

    def __init__(
        self,
        args: list[str] | None = None,
        *,
        host: str = "127.0.0.1",
        env: dict[str, str] | None = None,
        start_timeout_s: float = 20.0,
    ) -> None:
        self.args = list(args or [])
        if "--port" not in self.args:
            self.args += ["--port", "0"]
        if "--host" not in self.args:
            self.args += ["--host", host]
        self.env = env
        self.start_timeout_s = start_timeout_s
        self.url = ""
        self.proc: subprocess.Popen[str] | None = None
        self.output: deque[str] = deque(maxlen=200)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def command(self) -> list[str]:
        """The program and its arguments: `python -m <module> <args>`."""
        return [sys.executable, "-m", self.module, *self.args]

    def start(self) -> GatewayProcess:
        env = {**os.environ, **(self.env or {}), "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            self.command(),
            cwd=PROJECT_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            preexec_fn=_die_with_parent,  # prctl only, before exec: safe with threads
        )
        found = threading.Event()
        threading.Thread(target=self._read_output, args=(found,), daemon=True).start()
        if not found.wait(self.start_timeout_s):
            self.stop()
            raise GatewayStartError(
                f"the {self.module} did not start: " + (" | ".join(self.output) or "no output")
            )
        self._wait_healthy()
        return self

    def _read_output(self, found: threading.Event) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line.rstrip())
            match = READY.search(line)
            if match and not found.is_set():
                self.url = match.group(1)
                found.set()

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.url + self.health_path, timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise GatewayStartError(
            f"the {self.module} at {self.url} never answered {self.health_path}"
        )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout_s: float = 10.0) -> int | None:
        """Stop gracefully (SIGTERM), then by force; return the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def __enter__(self) -> GatewayProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


PR_SET_PDEATHSIG = 1
try:
    # Looked up here, in the parent: the pre-exec child must not load libraries (or run
    # ldconfig, as ctypes.util.find_library does) between fork and exec.
    _PRCTL = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # not Linux
    _PRCTL = None


def _die_with_parent() -> None:
    """Linux: the gateway gets SIGTERM when the thread that started it dies, even by
    `kill -9`: a load generator killed hard must not leave its embedded gateway running."""
    if _PRCTL is not None:
        _PRCTL(PR_SET_PDEATHSIG, signal.SIGTERM)
