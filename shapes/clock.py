"""Waking up on time: a sleep until a `time.monotonic()` deadline, to the tens of microseconds.

gevent's timers are libev's, and libev waits in `epoll_wait`, whose timeout counts whole
milliseconds: a greenlet asleep until a deadline wakes up to a millisecond after it. For an
arrival that is measured from its due time, that millisecond is generator-made latency.
On Linux, `PreciseClock` arms a timerfd (the kernel's high-resolution timers) for the
deadline and waits for it to become readable in gevent's loop: the loop sleeps in
`epoll_wait` as before, and is woken by the timer itself. Elsewhere (no timerfd) it falls
back to `gevent.sleep`.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import os
import time

import gevent

CLOCK_MONOTONIC = 1
TFD_NONBLOCK = 0o4000
TFD_CLOEXEC = 0o2000000
TFD_TIMER_ABSTIME = 1


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


@functools.cache
def _libc() -> ctypes.CDLL | None:
    # Once per process, and by its usual name first: `find_library` runs `ldconfig -p`, which
    # held the event loop 8-12 ms just as a run's first arrivals were due.
    for find in (lambda: "libc.so.6", lambda: ctypes.util.find_library("c")):
        try:
            libc = ctypes.CDLL(find(), use_errno=True)
            libc.timerfd_create  # noqa: B018  # present on Linux only
            return libc
        except (OSError, AttributeError, TypeError):
            continue
    return None


class PreciseClock:
    """`sleep_until(deadline)`; one per greenlet that sleeps (it owns a timer), `close()` it."""

    def __init__(self) -> None:
        self._fd = -1
        libc = _libc()
        if libc is None:
            return
        fd = libc.timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC)
        if fd < 0:
            return
        self._libc, self._fd = libc, fd
        self._spec = _Itimerspec()
        self._watcher = gevent.get_hub().loop.io(fd, 1)

    @property
    def precise(self) -> bool:
        return self._fd >= 0

    def sleep_until(self, deadline: float) -> None:
        wait = deadline - time.monotonic()
        if wait <= 0:
            return
        if self._fd < 0:
            gevent.sleep(wait)
            return
        seconds = int(deadline)
        self._spec.it_value.tv_sec = seconds
        self._spec.it_value.tv_nsec = int((deadline - seconds) * 1e9)
        if self._libc.timerfd_settime(self._fd, TFD_TIMER_ABSTIME, ctypes.byref(self._spec), None):
            gevent.sleep(wait)
            return
        gevent.get_hub().wait(self._watcher)
        with contextlib.suppress(BlockingIOError):
            os.read(self._fd, 8)  # the expiry count: read to disarm readability

    def close(self) -> None:
        if self._fd >= 0:
            self._watcher.close()
            os.close(self._fd)
            self._fd = -1
