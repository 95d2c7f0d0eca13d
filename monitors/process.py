"""Resource samples of the gateway's process (psutil), once a second.

CPU % is computed from CPU-time deltas between two samples: `cpu_pct` is per core (100 = one
core busy, can exceed 100 for a multi-threaded process), `cpu_pct_total` is normalised to the
machine (100 = every core busy). Disk figures are the process's read/write bytes and operations
per second. psutil has no per-process network counters: `net_*_bytes_per_s` are the machine's
loopback-and-all-interfaces counters (labelled `host`), the closest honest figure; the gateway's
own byte counters, when its metrics export them, are better and are scraped separately.
"""

from __future__ import annotations

import time
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
    """Samples one process (and, when asked, its children)."""

    def __init__(self, pid: int, include_children: bool = False) -> None:
        self.process = psutil.Process(pid)
        self.include_children = include_children
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
                    open_files += proc.num_fds()
                    connections += len(proc.net_connections(kind="inet"))
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
