"""Open descriptors and TCP/UDP sockets of the processes of one sample, from /proc.

`connections` counts a process's TCP and UDP sockets (listening ones included), what psutil's
`net_connections(kind="inet")` counts, but from the process's socket descriptors less its
Unix-domain ones: psutil reads /proc/net/tcp, which costs the kernel a walk of its whole TCP
table (10+ ms a read on a host with a few hundred TIME_WAIT sockets: 1 % of a core at 1 Hz).

A Unix-domain socket is listed in the table of the network namespace it was made in, which
need not be that of every process holding it: a sandboxed Chromium renderer has a namespace
of its own, and holds sockets its browser made. So the tables of every namespace met in a
sample are read, each once, and a socket is Unix-domain if any of them lists it. One listing
of /proc/PID/fd gives both the descriptor count and the sockets.
"""

from __future__ import annotations

import os

import psutil

PROC = "/proc"


class SocketCount:
    """Feed the sample's processes to `read`; then `inet` counts each one's TCP/UDP sockets."""

    def __init__(self) -> None:
        self._namespaces: set[str] = set()
        self._unix: set[str] = set()

    def read(self, proc: psutil.Process) -> tuple[int, set[str] | int]:
        """(open descriptors, its socket inodes) on Linux; (descriptors, inet count) elsewhere.
        Raises psutil.NoSuchProcess or psutil.AccessDenied as psutil would."""
        if not os.path.isdir(PROC):
            return proc.num_fds(), len(proc.net_connections(kind="inet"))
        pid = proc.pid
        try:
            fd_dir = f"{PROC}/{pid}/fd"
            descriptors = os.listdir(fd_dir)
            inodes = set()
            for fd in descriptors:
                try:
                    target = os.readlink(f"{fd_dir}/{fd}")
                except OSError:
                    continue  # closed meanwhile
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
            if inodes:
                self._read_unix_table(pid)
            return len(descriptors), inodes
        except FileNotFoundError:
            raise psutil.NoSuchProcess(pid) from None
        except PermissionError:
            raise psutil.AccessDenied(pid) from None

    def inet(self, sockets: set[str] | int) -> int:
        """How many of a process's sockets (from `read`) are not Unix-domain."""
        return sockets if isinstance(sockets, int) else len(sockets - self._unix)

    def _read_unix_table(self, pid: int) -> None:
        namespace = os.readlink(f"{PROC}/{pid}/ns/net")
        if namespace in self._namespaces:
            return
        with open(f"{PROC}/{pid}/net/unix", encoding="ascii") as table:
            next(table, None)  # header; the inode is the 7th column
            for line in table:
                fields = line.split()
                if len(fields) > 6:
                    self._unix.add(fields[6])
        self._namespaces.add(namespace)


def inet_sockets(proc: psutil.Process) -> int:
    """One process's TCP/UDP sockets."""
    count = SocketCount()
    return count.inet(count.read(proc)[1])
