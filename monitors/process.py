"""Resource samples of the gateway's process (psutil), once a second.

CPU % is computed from CPU-time deltas between two samples: `cpu_pct` is per core (100 = one
core busy, can exceed 100 for a multi-threaded process), `cpu_pct_total` is normalised to the
machine (100 = every core busy). Disk figures are the process's read/write bytes and operations
per second. psutil has no per-process network counters: `net_*_bytes_per_s` are the machine's
loopback-and-all-interfaces counters (labelled `host`), the closest honest figure; the gateway's
own byte counters, when its metrics export them, are better and are scraped separately.

`connections` counts the process's TCP and UDP sockets (listening ones included), what psutil's
`net_connections(kind="inet")` counts, but from the process's socket descriptors less its
Unix-domain ones: psutil reads /proc/net/tcp, which costs the kernel a walk of its whole TCP
table (10+ ms a read on a host with a few hundred TIME_WAIT sockets: 1 % of a core at 1 Hz).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psutil


@dataclass
class _Previous:
    at: float
    cpu_s: float
    read_bytes: int
    write_bytes: int
    read_ops: int
    write_ops: int
    net_sent: int
    net_recv: int


class ProcessSampler:
    """Samples one process (and, when asked, its children).

    `pause` is called between the reads of /proc that make up a sample: on an event loop
    (`gevent.sleep(0)`) a sample then holds it a few tenths of a millisecond at a time rather
    than one to two milliseconds in one go, which every response arriving meanwhile waited."""

    def __init__(
        self, pid: int, include_children: bool = False, pause: Callable[[], None] = lambda: None
    ) -> None:
        self.process = psutil.Process(pid)
        self.include_children = include_children
        self.pause = pause
        self.cores = psutil.cpu_count() or 1
        self._previous: _Previous | None = None

    def _processes(self) -> list[psutil.Process]:
        if not self.include_children:
            return [self.process]
        try:
            return [self.process, *self.process.children(recursive=True)]
        except psutil.Error:
            return [self.process]

    def sample(self) -> dict[str, Any]:
        """One sample; raises psutil.NoSuchProcess when the process is gone."""
        now = time.monotonic()
        rss = cpu_s = threads = open_files = connections = 0
        read_bytes = write_bytes = read_ops = write_ops = 0
        for proc in self._processes():
            try:
                with proc.oneshot():
                    rss += proc.memory_info().rss
                    times = proc.cpu_times()
                    cpu_s += times.user + times.system
                    threads += proc.num_threads()
                self.pause()
                open_files += proc.num_fds()
                connections += inet_sockets(proc)
                self.pause()
                io = proc.io_counters()
                read_bytes += io.read_bytes
                write_bytes += io.write_bytes
                read_ops += io.read_count
                write_ops += io.write_count
            except psutil.NoSuchProcess:
                if proc is self.process:
                    raise
            except psutil.AccessDenied:
                continue
            self.pause()
        net = psutil.net_io_counters()
        current = _Previous(
            now, cpu_s, read_bytes, write_bytes, read_ops, write_ops, net.bytes_sent, net.bytes_recv
        )
        sample: dict[str, Any] = {
            "rss_mb": round(rss / 2**20, 3),
            "threads": threads,
            "open_files": open_files,
            "connections": connections,
        }
        previous, self._previous = self._previous, current
        if previous is not None and now > previous.at:
            elapsed = now - previous.at
            cpu_pct = 100.0 * (cpu_s - previous.cpu_s) / elapsed
            sample.update(
                cpu_pct=round(cpu_pct, 2),
                cpu_pct_total=round(cpu_pct / self.cores, 2),
                disk_read_bytes_per_s=round((read_bytes - previous.read_bytes) / elapsed, 1),
                disk_write_bytes_per_s=round((write_bytes - previous.write_bytes) / elapsed, 1),
                disk_read_ops_per_s=round((read_ops - previous.read_ops) / elapsed, 2),
                disk_write_ops_per_s=round((write_ops - previous.write_ops) / elapsed, 2),
                host_net_sent_bytes_per_s=round((net.bytes_sent - previous.net_sent) / elapsed, 1),
                host_net_recv_bytes_per_s=round((net.bytes_recv - previous.net_recv) / elapsed, 1),
            )
        return sample


def inet_sockets(proc: psutil.Process) -> int:
    """The process's TCP/UDP sockets: its socket descriptors that are not Unix-domain (Linux);
    psutil's count elsewhere."""
    try:
        fd_dir = f"/proc/{proc.pid}/fd"
        inodes = set()
        for fd in os.listdir(fd_dir):
            try:
                target = os.readlink(f"{fd_dir}/{fd}")
            except OSError:
                continue  # closed meanwhile
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
        if not inodes:
            return 0
        with open(f"/proc/{proc.pid}/net/unix", encoding="ascii") as table:
            next(table, None)  # header; the inode is the 7th column
            unix = {line.split()[6] for line in table if len(line.split()) > 6}
        return len(inodes - unix)
    except FileNotFoundError:
        if not os.path.isdir("/proc"):
            return len(proc.net_connections(kind="inet"))
        raise psutil.NoSuchProcess(proc.pid) from None
    except PermissionError:
        raise psutil.AccessDenied(proc.pid) from None


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
