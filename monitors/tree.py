"""The gateway's process tree: its process and, when asked, every descendant, found again at
each sample.

A real gateway may spend most of its memory and CPU in its children: wppconnect-server runs one
Chromium per session (5 sessions, 46 processes). On Linux the tree is found by one pass over
/proc, each process's parent read from its `stat`, with a pause every `SCAN_BATCH` entries:
psutil's `children(recursive=True)` makes the same pass in one go (about 1 ms on a host with
90 processes, ten times that with 1,000: a hold of the load generator's event loop), then
builds a `psutil.Process` for every child, which reads its `stat` once more. Here a child's
`Process` is built once and kept while it lives, keyed by its pid and start time (a reused pid
is another process). Elsewhere, psutil's `children` is used.

Each member is named as `ps` names it, by its command (`node`, `chrome`): the `comm` of its
`stat`, read anew at each scan since a fork that execs changes it; a `comm` at the kernel's 15
characters is cut short and is completed from the command line once per process.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import NamedTuple

import psutil

PROC = "/proc"
SCAN_BATCH = 32  # /proc/PID/stat reads between two pauses: about 0.25 ms
COMM_MAX = 15  # TASK_COMM_LEN - 1: a longer command is cut to this


class Member(NamedTuple):
    process: psutil.Process
    name: str


class _Stat(NamedTuple):
    ppid: int
    start: int  # clock ticks after boot: with the pid, who this process is
    comm: str


class ProcessTree:
    """`members()`: the root first, then its descendants alive now (with `include_children`)."""

    def __init__(
        self,
        root: psutil.Process,
        include_children: bool = True,
        pause: Callable[[], None] = lambda: None,
    ) -> None:
        self.root = root
        self.include_children = include_children
        self.pause = pause
        self._known: dict[tuple[int, int], psutil.Process] = {}
        self._full_names: dict[tuple[int, int, str], str] = {}
        self._root_start: int | None = None

    def members(self) -> list[Member]:
        if not self.include_children:
            return [Member(self.root, self.root.name())]
        if not os.path.isdir(PROC):
            return self._members_from_psutil()
        stats = self._scan()
        root = stats.get(self.root.pid)
        if self._root_start is None and root is not None:
            self._root_start = root.start
        if root is None or root.start != self._root_start:  # gone, or its pid reused since
            raise psutil.NoSuchProcess(self.root.pid)
        children: dict[int, list[int]] = {}
        for pid, stat in stats.items():
            children.setdefault(stat.ppid, []).append(pid)
        members = [Member(self.root, self._name(self.root.pid, root))]
        known: dict[tuple[int, int], psutil.Process] = {}
        queue = list(children.get(self.root.pid, ()))
        while queue:
            pid = queue.pop()
            stat = stats[pid]
            queue.extend(children.get(pid, ()))
            key = (pid, stat.start)
            process = self._known.get(key)
            if process is None:
                try:
                    process = psutil.Process(pid)
                except psutil.Error:
                    continue  # gone since the scan, or not ours to see
            known[key] = process
            members.append(Member(process, self._name(pid, stat)))
        self._known = known
        alive = {*known, (self.root.pid, root.start)}
        self._full_names = {k: v for k, v in self._full_names.items() if k[:2] in alive}
        return members

    def _members_from_psutil(self) -> list[Member]:
        try:
            processes = [self.root, *self.root.children(recursive=True)]
        except psutil.AccessDenied:
            processes = [self.root]
        members = []
        for process in processes:
            try:
                members.append(Member(process, process.name()))
            except psutil.NoSuchProcess:
                if process is self.root:
                    raise
            except psutil.Error:
                members.append(Member(process, "?"))
        return members

    def _scan(self) -> dict[int, _Stat]:
        """Every visible process's parent, start time and command, from /proc/PID/stat."""
        stats: dict[int, _Stat] = {}
        for index, entry in enumerate(os.listdir(PROC)):
            if not entry.isdigit():
                continue
            if index % SCAN_BATCH == SCAN_BATCH - 1:
                self.pause()
            stat = read_stat(int(entry))
            if stat is not None:
                stats[int(entry)] = stat
        return stats

    def _name(self, pid: int, stat: _Stat) -> str:
        if len(stat.comm) < COMM_MAX:
            return stat.comm
        key = (pid, stat.start, stat.comm)
        name = self._full_names.get(key)
        if name is None:
            try:
                process = self.root if pid == self.root.pid else psutil.Process(pid)
                name = process.name()  # completed from the command line
            except psutil.Error:
                name = stat.comm
            self._full_names[key] = name
        return name


def read_stat(pid: int) -> _Stat | None:
    """A process's parent, start time and command from /proc/PID/stat; None once it is gone."""
    try:
        with open(f"{PROC}/{pid}/stat", "rb", buffering=0) as handle:
            data = handle.read(4096)
    except OSError:
        return None
    # The command is in parentheses and may hold spaces or parentheses itself: the fields
    # that follow start after the last ')'.
    opening, closing = data.find(b"("), data.rfind(b")")
    fields = data[closing + 2 :].split()
    if opening < 0 or len(fields) < 20:
        return None
    comm = data[opening + 1 : closing].decode("utf-8", "replace")
    return _Stat(int(fields[1]), int(fields[19]), comm)
