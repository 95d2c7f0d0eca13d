"""Each process's resident memory and proportional set size (PSS), at a cost a 1 Hz sampler
can pay.

PSS counts a page shared by N processes as 1/N in each: summed over a process tree it counts
shared pages once, where RSS counts them once in every process. The kernel has it in
/proc/PID/smaps_rollup (psutil's `memory_full_info` reads that file, falling back to the longer
smaps), but computes it at each read by walking the process's page tables: about 4 µs per MB
resident here (160 µs for a 40 MB Python process), so 10-15 ms a second for a tree of Chromium
processes holding a few GB, against 7 µs for the RSS in /proc/PID/statm.

So RSS is read at every sample, and PSS in turn: a process's PSS the first time it is seen,
then, at each sample, a `1 / REFRESH_SAMPLES` share of the others, those read longest ago:
every process once every `REFRESH_SAMPLES` samples, the cost spread evenly over them. In
between, a process's PSS is its last reading moved by its RSS's change since: a page a
process adds is its own, in RSS and PSS alike, until it forks. What that misses is sharing
that changes without RSS changing: after a fork the parent's pages are shared with the child,
the child's PSS is read at once, the parent's comes down at its next reading, and the sum
stands above the truth by the child's share of them for up to `REFRESH_SAMPLES` samples.

Where PSS cannot be read (another user's process: smaps_rollup needs the rights of a debugger,
statm does not; or not Linux) the process's RSS stands for it, and the reading says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import psutil

REFRESH_SAMPLES = 10


@dataclass
class _Reading:
    pss: int | None  # None: not readable
    rss: int  # the RSS at that reading
    sample: int  # the sample it was made at


class ProportionalSets:
    """Call `plan` with the sample's processes, then `memory` for each."""

    def __init__(self, refresh_samples: int = REFRESH_SAMPLES) -> None:
        self.refresh_samples = refresh_samples
        self._readings: dict[psutil.Process, _Reading] = {}
        self._due: set[psutil.Process] = set()
        self._sample = 0
        self._owed = 0.0  # readings owed to the turn, a fraction of one carried over

    def plan(self, processes: list[psutil.Process]) -> None:
        """Decide whose PSS this sample reads: the new ones, and the longest unread."""
        self._sample += 1
        alive = set(processes)
        self._readings = {p: r for p, r in self._readings.items() if p in alive}
        known = sorted(self._readings, key=lambda p: self._readings[p].sample)
        self._owed += len(known) / self.refresh_samples
        turn = math.floor(self._owed)
        self._owed -= turn
        self._due = (alive - set(known)) | set(known[:turn])

    def memory(self, proc: psutil.Process) -> tuple[int, int | None]:
        """(RSS, PSS) in bytes, PSS None where it cannot be read. Raises psutil's errors."""
        if proc not in self._due:
            last = self._readings.get(proc)
            if last is not None:
                rss = proc.memory_info().rss
                if last.pss is None:
                    return rss, None
                return rss, min(rss, max(0, last.pss + rss - last.rss))
        rss, pss = read(proc)
        self._readings[proc] = _Reading(pss, rss, self._sample)
        return rss, pss


def read(proc: psutil.Process) -> tuple[int, int | None]:
    """(RSS, PSS) in bytes, read now; PSS None where it cannot be read."""
    if not psutil.LINUX:
        return proc.memory_info().rss, None  # psutil has PSS on Linux only
    try:
        full = proc.memory_full_info()
    except psutil.AccessDenied:
        return proc.memory_info().rss, None
    return full.rss, full.pss
