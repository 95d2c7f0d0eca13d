"""Real WAHA core and Evolution API, built by ../shared/realgw/install-*.sh, as test fixtures.

Each runs from its run script inside the network namespace `realgw` (loopback only), on its
usual port. `start()` waits until it answers, `stop()` deletes what sessions are left and
stops it by its PID (and Evolution's PostgreSQL, when this started it). Only one test process
drives them at a time (a file lock): two xdist workers would share the port and the database.

With `inspect_port` (`RealGateway(inspect_port=...)`, each class's `INSPECT_PORT` by default
in the `*_inspected` fixtures) the gateway's node serves the V8 inspector on 127.0.0.1 of the
namespace: `NODE_OPTIONS=--inspect=...` reaches it through the run script's `exec ... node`,
and `start()` checks that the port is that node's own (any other node the gateway started
would inherit the option, fail to bind and say so in the log).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gateway.process import _die_with_parent
from tests.realgw import namespace
from tests.realgw.namespace import Answer

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = Path(os.environ.get("REALGW_SCRIPTS") or ROOT.parent / "shared" / "realgw")
BUILD = Path(os.environ.get("REALGW_DIR") or Path(os.environ.get("TMPDIR", "/tmp")) / "realgw")
PGBIN = Path("/usr/lib/postgresql/15/bin")
READY_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 15.0
LOCK_WAIT_S = 150.0


class GatewayUnavailable(Exception):
    """The real gateway cannot run here; the message is the one-line reason to skip."""


class RealGateway:
    """One real gateway process in the namespace. Subclasses say how to talk to it."""

    kind = ""
    port = 0
    api_key = ""
    script = ""
    built_file = ""  # relative to BUILD: present once the install script has run
    ready_path = "/"
    list_path = ""  # answers a list of {"name": ...}: the gateway's own sessions
    delete_path = ""  # with {name}
    INSPECT_PORT = 0  # the V8 inspector's port when asked for one (the *_inspected fixtures)

    def __init__(self, inspect_port: int | None = None) -> None:
        self.url = f"http://127.0.0.1:{self.port}"
        self.inspect_port = inspect_port
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = BUILD / "run" / f"{self.kind}.pytest.log"
        self.start_s = 0.0  # how long start() took until the gateway answered

    @property
    def inspect_address(self) -> str:
        """`127.0.0.1:PORT` of its V8 inspector, inside the namespace (`--node-inspect`)."""
        if self.inspect_port is None:
            raise RuntimeError(f"{self.title()} was started without an inspector")
        return f"127.0.0.1:{self.inspect_port}"

    # --- availability and lifetime ------------------------------------------------------------

    @classmethod
    def unavailable(cls) -> str | None:
        """Why this gateway cannot run here (a one-line skip reason), or None."""
        if not (BUILD / cls.built_file).is_file() or not (SCRIPTS / cls.script).is_file():
            install = SCRIPTS / cls.script.replace("run-", "install-")
            return f"real {cls.title()} not built: run MIRROR=/work/.mirror bash {shown(install)}"
        return namespace.unavailable()

    @classmethod
    def title(cls) -> str:
        return {"evolution": "Evolution API", "waha": "WAHA"}.get(cls.kind, cls.kind)

    @property
    def pid(self) -> int:
        """The gateway's main process (node): the run script execs into it."""
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> RealGateway:
        try:
            namespace.ensure_namespace()
        except namespace.NamespaceError as exc:
            raise GatewayUnavailable(str(exc)) from None
        for port in (self.port, self.inspect_port):
            if port is not None and namespace.port_in_use(port):
                raise GatewayUnavailable(
                    f"port {port} in namespace {namespace.NS} is in use: another "
                    f"{self.title()} runs there (not started by this test)"
                )
        started = time.monotonic()
        self.before_start()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                ["bash", str(SCRIPTS / self.script)],
                env=self.environment(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent,  # a test run killed hard takes its gateway along
            )
        try:
            self._wait_ready()
            self._check_inspector()
            self.after_start()
        except BaseException:
            self.stop()
            raise
        self.start_s = time.monotonic() - started
        return self

    def environment(self) -> dict[str, str]:
        """The run script's environment: ours, where to run, and the inspector if asked."""
        env = {**os.environ, "R": str(BUILD), "NS": namespace.NS, "PORT": str(self.port)}
        if self.inspect_port is not None:
            inspect = f"--inspect=127.0.0.1:{self.inspect_port}"
            env["NODE_OPTIONS"] = " ".join(filter(None, [env.get("NODE_OPTIONS"), inspect]))
        return env

    def _check_inspector(self) -> None:
        """The inspector's port is listened on by the gateway's node (its PID) alone, and no
        other node of its told the log that it could not have the port."""
        if self.inspect_port is None:
            return
        listing = self.run(["ss", "-Hltnp", f"sport = :{self.inspect_port}"]).stdout
        owners = {int(pid) for pid in re.findall(r"pid=(\d+)", listing)}
        if owners != {self.pid}:
            raise RuntimeError(
                f"{self.title()}'s inspector port {self.inspect_port} is held by "
                f"{sorted(owners) or 'no process'}, not by its node ({self.pid}): {listing!r}"
            )
        log = self.log_path.read_text(errors="replace")
        if "Starting inspector on" in log:  # "... failed: address already in use"
            raise RuntimeError(f"another node of {self.title()}'s took the option: {self.tail()}")

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.title()} exited ({self.proc.returncode}): {self.tail()}")
            with contextlib.suppress(OSError):
                if self.request("GET", self.ready_path, timeout_s=2).status == 200:
                    return
            time.sleep(0.2)
        waited = f"{READY_TIMEOUT_S:.0f} s"
        raise RuntimeError(f"{self.title()} did not answer in {waited}: {self.tail()}")

    def stop(self) -> None:
        """Delete the sessions left, stop the process (SIGTERM, then SIGKILL)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(OSError, RuntimeError):
                self.delete_all()
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.after_stop()

    def tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "no log"
        return " | ".join(text.splitlines()[-lines:]) or "no output"

    def before_start(self) -> None:
        pass

    def after_start(self) -> None:
        pass

    def after_stop(self) -> None:
        pass

    # --- talking to it ------------------------------------------------------------------------

    def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
        timeout_s: float = 30.0,
    ) -> Answer:  # fmt: skip
        """An HTTP request from inside the namespace, with the gateway's key unless `headers`
        give one."""
        sent = {**self.auth_headers(), **(headers or {})}
        return namespace.request(self.url, method, path, body, sent, timeout_s)

    def auth_headers(self) -> dict[str, str]:
        return {}

    def command(self, command: list[str]) -> list[str]:
        """`command` as run inside the namespace (for Popen: a Locust run against the gateway)."""
        return ["ip", "netns", "exec", namespace.NS, *command]

    def run(self, command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        """Run `command` inside the namespace (`ip netns exec realgw ...`)."""
        return namespace.run_in_namespace(command, **kwargs)

    def names(self) -> list[str]:
        """The gateway's own list of its sessions (instances)."""
        answer = self.request("GET", self.list_path)
        if answer.status != 200 or not isinstance(answer.body, list):
            raise RuntimeError(f"GET {self.list_path} answered {answer.status}: {answer.body}")
        return [entry["name"] for entry in answer.body]

    def count(self) -> int:
        """The gateway's own count of its sessions (instances)."""
        return len(self.names())

    def delete(self, name: str) -> Answer:
        return self.request("DELETE", self.delete_path.format(name=name))

    def delete_all(self) -> None:
        for name in self.names():
            self.delete(name)

    def wait_count(self, expected: int, timeout_s: float = 10.0) -> int:
        """The count once it is `expected` (or the last one after `timeout_s`): Evolution
        removes a deleted instance a moment after its 200."""
        deadline = time.monotonic() + timeout_s
        while (count := self.count()) != expected and time.monotonic() < deadline:
            time.sleep(0.1)
        return count


class EvolutionGateway(RealGateway):
    """Evolution API v2.3.6 on :8080 with its private PostgreSQL (Unix socket only)."""

    kind = "evolution"
    port = 8080
    api_key = "loadtest-global-key"
    script = "run-evolution.sh"
    built_file = "src/evolution/dist/main.js"
    ready_path = "/"
    list_path = "/instance/fetchInstances"
    delete_path = "/instance/delete/{name}"
    INSPECT_PORT = 9229

    def __init__(self, inspect_port: int | None = None) -> None:
        super().__init__(inspect_port)
        self.pgdata = BUILD / "run" / "pg"
        self.pgsock = BUILD / "run" / "pgsock"
        self.postgres_was_running = False

    @classmethod
    def unavailable(cls) -> str | None:
        if not (PGBIN / "pg_ctl").is_file():
            return "PostgreSQL 15 is not installed: run bash ../shared/realgw/install-evolution.sh"
        return super().unavailable()

    def _pg_ctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        line = " ".join([str(PGBIN / "pg_ctl"), "-D", str(self.pgdata), *args])
        return subprocess.run(["su", "postgres", "-c", line], capture_output=True, text=True)

    def before_start(self) -> None:
        """Instances left in the database would reconnect at start, in a tight loop here:
        delete them first (with PostgreSQL up for that; the run script starts it otherwise)."""
        if not (self.pgdata / "PG_VERSION").is_file():
            return  # a fresh cluster: the run script creates it, empty
        self.postgres_was_running = self._pg_ctl("status").returncode == 0
        if not self.postgres_was_running:
            options = f"\"-c listen_addresses='' -k {self.pgsock}\""
            log = BUILD / "run" / "pglog" / "pg.log"
            self._pg_ctl("-l", str(log), "-o", options, "-w", "start")
        subprocess.run(
            [str(PGBIN / "psql"), "-h", str(self.pgsock), "-U", "postgres", "-d", "evolution",
             "-q", "-c", 'DELETE FROM "Instance"'],
            capture_output=True, check=False,
        )  # fmt: skip

    def after_stop(self) -> None:
        if not self.postgres_was_running:
            self._pg_ctl("-m", "fast", "stop")

    def auth_headers(self) -> dict[str, str]:
        return {"apikey": self.api_key}


class WahaGateway(RealGateway):
    """WAHA core 2024.10.8 (NOWEB engine) on :3000; one session, `default`."""

    kind = "waha"
    port = 3000
    api_key = "loadtest-key"  # the run script's WHATSAPP_API_KEY (core does not check it)
    script = "run-waha.sh"
    built_file = "src/waha/dist/main.js"
    ready_path = "/ping"
    list_path = "/api/sessions?all=true"  # stopped ones too
    delete_path = "/api/sessions/{name}"
    INSPECT_PORT = 9230

    def after_start(self) -> None:
        # WAHA keeps sessions on disk: one a previous run left would refuse `create default`.
        self.delete_all()

    def auth_headers(self) -> dict[str, str]:
        return {"X-Api-Key": self.api_key}


def shown(path: Path) -> str:
    """A path as the skip reason shows it: relative to the repository's parent when inside."""
    with contextlib.suppress(ValueError):
        return "../" + str(path.relative_to(ROOT.parent))
    return str(path)


_lock_depth = 0
_lock_file: Any = None


@contextlib.contextmanager
def exclusive() -> Iterator[None]:
    """Hold the real gateways for this process (reentrant: a module may use both)."""
    global _lock_depth, _lock_file
    if _lock_depth == 0:
        path = BUILD / "run" / "pytest-fixtures.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = path.open("w")
        deadline = time.monotonic() + LOCK_WAIT_S
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    handle.close()
                    raise GatewayUnavailable(
                        f"the real gateways are busy: another test process held {path}"
                        f" for {LOCK_WAIT_S:.0f} s"
                    ) from None
                time.sleep(0.5)
        _lock_file = handle
    _lock_depth += 1
    try:
        yield
    finally:
        _lock_depth -= 1
        if _lock_depth == 0:
            fcntl.flock(_lock_file, fcntl.LOCK_UN)
            _lock_file.close()
            _lock_file = None
