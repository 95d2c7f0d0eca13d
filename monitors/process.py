"""Resource samples of the gateway's process tree (psutil), once a second.

The tree is the gateway's process and, by default, every descendant of it (`monitors.tree`):
a gateway that runs a browser per session spends most of its memory and CPU there. Figures
are summed over the processes counted, and `processes` says how many there were; `tree` says
which, by command, and whether children were looked for: `{"children": true, "names": {"node":
1, "chrome": 45}}` (not a figure: `ResourceMonitor` keeps it apart from the stored samples).

Memory: `rss_mb` sums resident memory, which counts a page shared by several processes once in
each (Chromium's renderers share most of their code and much of their data: RSS summed over 46
processes is far above what they hold), and `pss_mb` sums the proportional set size, which
counts a shared page once, divided among the processes that map it; the kernel computes it at
each read, at a cost that grows with the memory, so it is read in turn (`monitors.pss`). Where
a process's PSS cannot be read (another user's process, or not Linux), its RSS is counted in
`pss_mb` instead and `pss_unreadable` says for how many.
Which of the two is the gateway's memory is `memory_column`'s rule.

CPU % is computed from CPU-time deltas between two samples: `cpu_pct` is per core (100 = one
core busy, can exceed 100 for a multi-threaded process or a tree), `cpu_pct_total` is
normalised to the machine (100 = every core busy). CPU time is followed process by process: a
tree's CPU over an interval is what each process there at both ends used in it, plus all the
time of each process born in it; one that exits takes its last fraction of a second with it.
(The sum of the tree's CPU times would drop when a child exits, a negative CPU, and its
children's times, which the kernel adds to a parent's when it reaps a child, would count a
child twice when it exits in the middle of a sample.) Disk figures are the read/write bytes
and operations per second. psutil has no per-process network counters:
`net_*_bytes_per_s` are the machine's loopback-and-all-interfaces counters (labelled `host`),
the closest honest figure; the gateway's own byte counters, when its metrics export them, are
better and are scraped separately. `connections` and `open_files`: `monitors.sockets`.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import psutil

from monitors.pss import ProportionalSets
from monitors.sockets import SocketCount, inet_sockets
from monitors.tree import ProcessTree

__all__ = [
    "CountedProcesses",
    "ProcessSampler",
    "inet_sockets",
    "memory_column",
    "names_text",
    "pid_listening_on",
]
MB = 2**20


def memory_column(most_processes: float | None) -> str:
    """The sampled figure that is the gateway's memory, given the most processes counted at
    once: `pss_mb` for a tree of more than one (shared pages counted once, not once in every
    process), `rss_mb` for a process alone (its PSS would move with whatever else on the
    machine maps the same libraries: the load generator's own Python starting, say)."""
    return "pss_mb" if (most_processes or 1) > 1 else "rss_mb"


TIMES = "\u00d7"  # the multiplication sign, as in the report: "node \u00d71, chrome \u00d745"


def names_text(names: dict[str, int]) -> str:
    """`{"node": 1, "chrome": 45}` as people read it, each name times its count."""
    return ", ".join(f"{name} {TIMES}{count}" for name, count in names.items())


@dataclass
class CountedProcesses:
    """Which processes a run's samples counted, from each sample's `tree`: the most at once
    and which they were then, the latest, and whether children were looked for."""

    children: bool | None = None  # None: no sample said (no process sampled)
    most: int = 0
    at_most: dict[str, int] = field(default_factory=dict)
    latest: dict[str, int] = field(default_factory=dict)

    def observe(self, tree: dict[str, Any]) -> None:
        names = {str(name): int(count) for name, count in (tree.get("names") or {}).items()}
        self.children = bool(tree.get("children"))
        self.latest = names
        if sum(names.values()) > self.most:
            self.most, self.at_most = sum(names.values()), names

    def as_dict(self) -> dict[str, Any] | None:
        """For summary.json: `memory` names the figure that is the gateway's memory."""
        if self.children is None:
            return None
        return {
            "children": self.children,
            "most_processes": self.most,
            "names_at_most": self.at_most,
            "names_latest": self.latest,
            "memory": memory_column(self.most),
        }


class _Counters(NamedTuple):
    """A process's cumulative counters, of which its rates are differences."""

    cpu_s: float = 0.0
    read_bytes: int = 0
    write_bytes: int = 0
    read_ops: int = 0
    write_ops: int = 0


@dataclass
class _Reading:
    """What a sample keeps for the next one's rates."""

    at: float
    counters: dict[psutil.Process, _Counters]  # psutil.Process hashes by pid and start time
    net_sent: int
    net_recv: int


class ProcessSampler:
    """Samples one process and, with `include_children` (the default), its descendants.

    `pause` is called between the reads of /proc that make up a sample: on an event loop
    (`gevent.sleep(0)`) a sample then holds it a few tenths of a millisecond at a time rather
    than one to two milliseconds in one go (more for a tree), which every response arriving
    meanwhile waited."""

    def __init__(
        self, pid: int, include_children: bool = True, pause: Callable[[], None] = lambda: None
    ) -> None:
        self.process = psutil.Process(pid)
        self.include_children = include_children
        self.pause = pause
        self.tree = ProcessTree(self.process, include_children, pause)
        self.pss = ProportionalSets()
        self.cores = psutil.cpu_count() or 1
        self._previous: _Reading | None = None

    def sample(self) -> dict[str, Any]:
        """One sample; raises psutil.NoSuchProcess when the process is gone."""
        now = time.monotonic()
        members = self.tree.members()
        self.pss.plan([proc for proc, _ in members])
        self.pause()
        rss = pss = unreadable = threads = open_files = 0
        sockets = SocketCount()
        held: list[set[str] | int] = []
        names: Counter[str] = Counter()
        counters: dict[psutil.Process, _Counters] = {}
        for proc, name in members:
            try:
                with proc.oneshot():
                    times = proc.cpu_times()
                    proc_threads = proc.num_threads()
                self.pause()
                proc_rss, proc_pss = self.pss.memory(proc)
            except psutil.NoSuchProcess:
                if proc is self.process:
                    raise
                continue  # exited since the scan: not counted
            except psutil.AccessDenied:
                continue
            finally:
                self.pause()
            names[name] += 1
            threads += proc_threads
            rss += proc_rss
            pss += proc_rss if proc_pss is None else proc_pss
            unreadable += proc_pss is None
            cpu_s = times.user + times.system
            counters[proc] = _Counters(cpu_s)
            try:
                descriptors, proc_sockets = sockets.read(proc)
                self.pause()
                io = proc.io_counters()
            except psutil.NoSuchProcess:
                if proc is self.process:
                    raise
                continue
            except psutil.AccessDenied:
                continue  # another user's process: its memory and CPU are counted, not these
            finally:
                self.pause()
            open_files += descriptors
            held.append(proc_sockets)
            counters[proc] = _Counters(
                cpu_s, io.read_bytes, io.write_bytes, io.read_count, io.write_count
            )
        net = psutil.net_io_counters()
        reading = _Reading(now, counters, net.bytes_sent, net.bytes_recv)
        sample: dict[str, Any] = {
            "rss_mb": round(rss / MB, 3),
            "pss_mb": round(pss / MB, 3),
            "processes": sum(names.values()),
            "threads": threads,
            "open_files": open_files,
            "connections": sum(sockets.inet(s) for s in held),
        }
        if unreadable:
            sample["pss_unreadable"] = unreadable
        previous, self._previous = self._previous, reading
        if previous is not None and reading.at > previous.at:
            sample.update(self._rates(previous, reading))
        root = members[0].name
        # The gateway's own process first, then its children, the most numerous first.
        ordered = sorted(names.items(), key=lambda item: (item[0] != root, -item[1], item[0]))
        sample["tree"] = {"children": self.include_children, "names": dict(ordered)}
        return sample

    def _rates(self, previous: _Reading, current: _Reading) -> dict[str, float]:
        """CPU % and the per-second rates since the previous sample, process by process (see
        the module's docstring): each one's counters less their values then, all of them for
        a process born since."""
        elapsed = current.at - previous.at
        used = [0.0] * len(_Counters._fields)
        for proc, counts in current.counters.items():
            before = previous.counters.get(proc, _Counters())
            for i, (now, then) in enumerate(zip(counts, before, strict=True)):
                used[i] += now - then
        cpu_s, read_bytes, write_bytes, read_ops, write_ops = used
        cpu_pct = 100.0 * cpu_s / elapsed

        def per_s(value: float, digits: int = 1) -> float:
            return round(value / elapsed, digits)

        return {
            "cpu_pct": round(cpu_pct, 2),
            "cpu_pct_total": round(cpu_pct / self.cores, 2),
            "disk_read_bytes_per_s": per_s(read_bytes),
            "disk_write_bytes_per_s": per_s(write_bytes),
            "disk_read_ops_per_s": per_s(read_ops, 2),
            "disk_write_ops_per_s": per_s(write_ops, 2),
            "host_net_sent_bytes_per_s": per_s(current.net_sent - previous.net_sent),
            "host_net_recv_bytes_per_s": per_s(current.net_recv - previous.net_recv),
        }


def pid_listening_on(port: int) -> int | None:
    """The local process listening on `port` (TCP), if any can be seen."""
    try:
        connections = psutil.net_connections(kind="tcp")
    except psutil.AccessDenied:
        return None
    for conn in connections:
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
            return conn.pid
    return None
