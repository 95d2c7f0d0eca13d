"""A CPU flame graph of a running Python gateway, recorded with py-spy (a sampling profiler).

    python -m monitors.profile --pid N --duration S --out FILE.svg [--rate 100]

wraps `py-spy record --pid N --duration S --format flamegraph --output FILE.svg`: py-spy reads
the target's stacks from outside (ptrace), 100 times a second, without restarting it or
changing its code. Ctrl-C or SIGTERM stop the recording early and still write the graph.
Anything that prevents a profile is one line on stderr: no such process (exit code 2), py-spy
missing, not allowed to attach (ptrace not permitted: root, `kernel.yama.ptrace_scope=0`, or
`docker run --cap-add SYS_PTRACE`), or a process that is not Python (exit code 1).

`locust -f locustfile.py --profile-gateway` (and `make profile`) start this for the run's
gateway (`ProfilerProcess`) and stop it when the run ends: `<run folder>/gateway-profile.svg`.
A Node.js gateway has its own profilers: see docs/profiling.md.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import psutil

USAGE_ERROR = 2
FAILED = 1
NOT_PERMITTED = re.compile(
    r"permission denied|operation not permitted|os error (1|13)\b|elevated permissions", re.I
)
NOT_PYTHON = re.compile(r"failed to find python version|not a python|failed to find python", re.I)
SAMPLES = re.compile(r"Samples: (\d+)")


class ProfileError(Exception):
    def __init__(self, message: str, code: int = FAILED) -> None:
        super().__init__(message)
        self.code = code


def find_py_spy() -> str:
    """py-spy beside this interpreter (the venv's), else on PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("py-spy")
    if found is None:
        raise ProfileError("py-spy is not installed (pip install -r requirements.txt)")
    return found


def explain(output: str, pid: int) -> str:
    """One line for why py-spy failed, from its output."""
    if NOT_PERMITTED.search(output):
        return (
            f"py-spy cannot attach to pid {pid}: ptrace not permitted (run as root or as the "
            "gateway's user, set kernel.yama.ptrace_scope=0, or docker run --cap-add SYS_PTRACE)"
        )
    if NOT_PYTHON.search(output):
        return (
            f"pid {pid} is not a Python process: py-spy profiles Python only "
            "(docs/profiling.md: Node.js gateways)"
        )
    if not psutil.pid_exists(pid):
        return f"process {pid} ended before py-spy could attach"
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if line.lower().startswith("error")]
    return f"py-spy failed on pid {pid}: " + ((errors or lines or ["no output"])[0])


def record(pid: int, duration_s: float, out: Path, rate: int = 100) -> int:
    """Record the flame graph; returns the number of samples. Raises ProfileError."""
    if pid <= 0 or not psutil.pid_exists(pid):
        raise ProfileError(f"no process with pid {pid}", USAGE_ERROR)
    if duration_s <= 0:
        raise ProfileError("--duration must be positive", USAGE_ERROR)
    out.parent.mkdir(parents=True, exist_ok=True)
    command = [find_py_spy(), "record", "--pid", str(pid), "--duration"]
    command += [str(max(1, math.ceil(duration_s))), "--rate", str(rate)]
    command += ["--format", "flamegraph", "--output", str(out)]
    proc = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "RUST_BACKTRACE": "0"},
    )

    def stop_early(signum: int, frame: object) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # py-spy stops sampling and writes the graph

    previous = {s: signal.signal(s, stop_early) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        output, _ = proc.communicate()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if proc.returncode != 0 or not out.is_file():
        raise ProfileError(explain(output, pid))
    match = SAMPLES.search(output)
    return int(match.group(1)) if match else 0


class ProfilerProcess:
    """`python -m monitors.profile` as a child of the suite, stopped when the run ends."""

    def __init__(self, pid: int, duration_s: float, out: Path) -> None:
        self.out = out
        command = [sys.executable, "-m", "monitors.profile", "--pid", str(pid)]
        command += ["--duration", f"{duration_s:.0f}", "--out", str(out)]
        # Its own session: a Ctrl-C on the terminal reaches Locust, which stops it in order.
        self.proc = subprocess.Popen(command, start_new_session=True)

    def stop(self, timeout_s: float = 20.0) -> int | None:
        """Stop the recording now (the graph is still written); wait at most `timeout_s`."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            print(f"profile: no flame graph within {timeout_s:.0f} s: stopped", file=sys.stderr)
            return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m monitors.profile",
        description="Record a CPU flame graph (SVG) of a running Python process with py-spy.",
    )
    parser.add_argument("--pid", type=int, required=True, help="the Python process to profile")
    parser.add_argument(
        "--duration", type=float, required=True, help="seconds to record (Ctrl-C stops earlier)"
    )
    parser.add_argument("--out", type=Path, required=True, help="the flame graph to write (.svg)")
    parser.add_argument("--rate", type=int, default=100, help="samples per second (default 100)")
    args = parser.parse_args(argv)
    try:
        samples = record(args.pid, args.duration, args.out, args.rate)
    except ProfileError as exc:
        print(f"profile: error: {exc}", file=sys.stderr)
        return exc.code
    print(f"profile: CPU flame graph of pid {args.pid} ({samples} samples): {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
