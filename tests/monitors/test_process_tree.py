"""The gateway's process tree, sampled: real processes that fork real children.

- a parent that touched memory before forking N children, each of which touches memory of its
  own: N + 1 processes counted, named, and PSS summed below RSS summed (their shared pages
  counted once), but above what the tree holds once;
- children not counted when told not to: one process;
- a child that exits takes no CPU back (no negative CPU);
- PSS between two readings follows the RSS (`monitors.pss`), within a page or so of the truth;
- which processes were counted reaches the monitor's summary (not the stored rows), from the
  sampler in this process, from the remote agent and from `python -m monitors`, each counting
  children by default and one process with `--no-children`.

Every process started here stops by itself (a bounded sleep) and is killed at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from monitors.process import ProcessSampler
from monitors.pss import ProportionalSets
from monitors.resources import ResourceMonitor
from tests.monitors.test_tools import LISTENING, Child, run_module

MB = 2**20
CHILDREN, SHARED_MB, PRIVATE_MB = 6, 32, 8
CHILD_NAME = "tree-child"
LIFETIME_S = 60  # every process here sleeps at most this long, then exits by itself

# A parent that touches SHARED_MB before forking (so the children share those pages, copy on
# write), then N children, named CHILD_NAME, that each touch PRIVATE_MB of their own. It says
# "ready" once every child has; "grow" on its stdin makes it touch 40 MB more, and it answers
# "grown"; "stop" ends the children, and it answers "reaped" once it has waited for them.
TREE = rf"""
import os, sys, time
n, shared_mb, private_mb = map(int, sys.argv[1:4])
def touched(mb):
    block = bytearray(mb * 2**20)
    for i in range(0, len(block), 4096):
        block[i] = 1
    return block
shared = touched(shared_mb)
ready_r, ready_w = os.pipe()
children = []
for _ in range(n):
    pid = os.fork()
    if pid == 0:
        with open("/proc/self/comm", "w") as comm:
            comm.write("{CHILD_NAME}")
        private = touched(private_mb)
        os.write(ready_w, b".")
        if private_mb == 0:  # a busy child: CPU, not memory
            end = time.monotonic() + {LIFETIME_S}
            while time.monotonic() < end:
                pass
        time.sleep({LIFETIME_S})
        os._exit(0)
    children.append(pid)
got = 0
while got < n:
    got += len(os.read(ready_r, n))
print("ready", flush=True)
grown = []
for line in sys.stdin:
    if line.strip() == "grow":
        grown.append(touched(40))
        print("grown", flush=True)
    elif line.strip() == "stop":
        for pid in children:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        print("reaped", flush=True)
time.sleep({LIFETIME_S})
"""


class Tree:
    """The parent process of a tree started from TREE, talked to over its stdin and stdout."""

    def __init__(self, children: int, shared_mb: int, private_mb: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", TREE, str(children), str(shared_mb), str(private_mb)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its own group: killed with its children at the end
        )
        self.pid = self.proc.pid
        self.expect("ready")

    def say(self, line: str, answer: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        self.expect(answer)

    def expect(self, answer: str, timeout: float = 20.0) -> None:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline().strip() if ready else ""
        assert line == answer, f"the tree said {line!r} within {timeout} s, not {answer!r}"

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        self.proc.wait(10)


@pytest.fixture
def tree() -> Iterator[Callable[..., Tree]]:
    started: list[Tree] = []

    def start(
        children: int = CHILDREN, shared_mb: int = SHARED_MB, private_mb: int = PRIVATE_MB
    ) -> Tree:
        started.append(Tree(children, shared_mb, private_mb))
        return started[-1]

    yield start
    for each in started:
        each.kill()


def test_a_tree_is_counted_with_its_shared_pages_once(tree) -> None:
    parent = tree()
    sample = ProcessSampler(parent.pid).sample()
    assert sample["processes"] == CHILDREN + 1
    root = psutil.Process(parent.pid).name()
    assert sample["tree"] == {"children": True, "names": {root: 1, CHILD_NAME: CHILDREN}}
    assert list(sample["tree"]["names"]) == [root, CHILD_NAME]  # the gateway's own first
    # RSS counts the shared pages in every process, PSS once: N times SHARED_MB apart, at least
    # half of that whatever the interpreter's own pages do.
    assert sample["rss_mb"] - sample["pss_mb"] > CHILDREN * SHARED_MB / 2, sample
    # PSS still counts all that the tree holds: the shared block once, each private one.
    assert sample["pss_mb"] > 0.9 * (SHARED_MB + CHILDREN * PRIVATE_MB), sample
    assert "pss_unreadable" not in sample  # this process may read its own children's


def test_without_children_one_process_is_counted(tree) -> None:
    parent = tree()
    family = ProcessSampler(parent.pid).sample()
    alone = ProcessSampler(parent.pid, include_children=False).sample()
    assert alone["processes"] == 1
    assert alone["tree"] == {"children": False, "names": {psutil.Process(parent.pid).name(): 1}}
    assert alone["pss_mb"] <= alone["rss_mb"] < family["rss_mb"] / 3
    assert alone["threads"] < family["threads"]


def test_a_child_that_exits_takes_no_cpu_back(tree) -> None:
    parent = tree(children=1, shared_mb=1, private_mb=0)  # one busy child
    sampler = ProcessSampler(parent.pid)
    sampler.sample()
    child = psutil.Process(parent.pid).children()[0]
    deadline = time.monotonic() + 10
    while sum(child.cpu_times()[:2]) < 0.3 and time.monotonic() < deadline:
        time.sleep(0.05)  # the child has used some CPU: its exit would take it away
    busy = sampler.sample()
    parent.say("stop", "reaped")
    after = sampler.sample()
    assert busy["processes"] == 2 and after["processes"] == 1
    assert busy["cpu_pct"] > 0
    rates = [key for key in after if key.endswith("_per_s") or key.startswith("cpu_pct")]
    assert rates and all(after[key] >= 0 for key in rates), after


def test_pss_between_readings_follows_the_rss(tree) -> None:
    parent = tree(children=0, shared_mb=1, private_mb=0)
    sampler = ProcessSampler(parent.pid, include_children=False)
    sampler.pss = ProportionalSets(refresh_samples=10**6)  # read once, then followed
    first = sampler.sample()
    parent.say("grow", "grown")
    second = sampler.sample()
    truth = psutil.Process(parent.pid).memory_full_info().pss / MB
    assert second["rss_mb"] - first["rss_mb"] > 35  # it grew 40 MB
    assert second["pss_mb"] == pytest.approx(truth, abs=1.0)


def rows_and_summary(monitor: ResourceMonitor) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    rows = [monitor.sample() for _ in range(2)]
    return rows, monitor.summary()["process_tree"]


def test_which_processes_were_counted_reaches_the_summary(tree) -> None:
    parent = tree()
    root = psutil.Process(parent.pid).name()
    rows, counted = rows_and_summary(ResourceMonitor(pid=parent.pid, metrics_url=None))
    assert all("tree" not in row for row in rows)  # not a figure of every stored row
    assert all(row["processes"] == CHILDREN + 1 for row in rows)
    names = {root: 1, CHILD_NAME: CHILDREN}
    assert counted == {
        "children": True,
        "most_processes": CHILDREN + 1,
        "names_at_most": names,
        "names_latest": names,
        "memory": "pss_mb",
    }
    _, alone = rows_and_summary(
        ResourceMonitor(pid=parent.pid, metrics_url=None, include_children=False)
    )
    assert alone is not None
    assert (alone["children"], alone["most_processes"], alone["memory"]) == (False, 1, "rss_mb")
    assert ResourceMonitor(pid=None, metrics_url=None).summary()["process_tree"] is None


@pytest.mark.parametrize("flag", [[], ["--no-children"]])
def test_the_agent_counts_children_unless_told_not_to(tree, flag: list[str]) -> None:
    parent = tree()
    agent = Child("monitors.agent", "--pid", str(parent.pid), "--listen-port", "0", *flag)
    try:
        url = agent.wait_for(LISTENING).group(1)
        with httpx.Client(base_url=url, timeout=5) as http:
            sample = http.get("/sample").json()
        _, counted = rows_and_summary(ResourceMonitor(pid=None, metrics_url=None, agent_url=url))
    finally:
        agent.stop()
    expected = 1 if flag else CHILDREN + 1
    assert sample["processes"] == expected and sum(sample["tree"]["names"].values()) == expected
    assert counted is not None
    assert counted["children"] is not bool(flag) and counted["most_processes"] == expected


@pytest.mark.parametrize("flag", [[], ["--no-children"]])
def test_the_monitor_command_counts_children_unless_told_not_to(
    tree, tmp_path: Path, flag: list[str]
) -> None:
    parent = tree()
    out = tmp_path / "watch"
    result = run_module(
        "monitors", "--pid", str(parent.pid), "--duration", "2.5", "--out", str(out),
        "--listen-port", "0", "--metrics-url", "off", *flag,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    counted = json.loads((out / "resources.json").read_text(encoding="utf-8"))["process_tree"]
    assert counted["most_processes"] == (1 if flag else CHILDREN + 1)
    assert counted["memory"] == ("rss_mb" if flag else "pss_mb")
    line = next(line for line in result.stdout.splitlines() if " | cpu " in line)
    assert (" | rss " if flag else f" MB ({CHILDREN + 1} processes) | ") in line, line


def test_a_load_run_counts_children_unless_told_not_to() -> None:
    from locust.argument_parser import get_parser

    from suite.options import add_options

    parser = get_parser(default_config_files=[])
    add_options(parser)

    def parsed(*flags: str) -> bool:
        return parser.parse_args(["-f", "locustfile.py", *flags]).monitor_children

    assert parsed() and parsed("--monitor-children") and not parsed("--no-monitor-children")
