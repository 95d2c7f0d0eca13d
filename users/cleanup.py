"""Deleting the sessions the suite created, once its user stops.

A run leaves the gateway as it found it: each user deletes the sessions it created when it
stops (`--keep-sessions` keeps them), counted as `sessions_deleted` or
`sessions_delete_failed`. The deletes go through a client of their own whose requests are not
recorded: they come after the load and are not what the run measures. Sessions the user named
(`--sessions`) are never the suite's to delete.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gevent.pool
from gevent.exceptions import InvalidSwitchError
from greenlet import GreenletExit
from locust.contrib.fasthttp import FastHttpSession
from locust.event import EventHook

from users.auth import Headers
from users.profile import TargetProfile

CONCURRENT_DELETES = 8


@dataclass
class CreatedSession:
    values: dict[str, Any]  # the template values it was made with, its id among them
    headers: Headers = field(default_factory=dict)


class SessionCleanup:
    """The sessions one user created, deleted by `delete_all` within `budget_s`."""

    def __init__(
        self,
        profile: TargetProfile,
        host: str,
        count: Callable[[str], None],
        timeout_s: float = 10.0,
    ) -> None:
        self.profile = profile
        self.host = host
        self.count = count
        self.timeout_s = timeout_s
        self.sessions: list[CreatedSession] = []

    def add(self, values: dict[str, Any], headers: Headers) -> None:
        self.sessions.append(CreatedSession(values, headers))

    def delete_all(self, budget_s: float = 60.0) -> None:
        if not self.sessions or "delete_session" not in self.profile.requests:
            return
        client = FastHttpSession(
            self.host,
            request_event=EventHook(),  # unrecorded: not part of the load
            user=None,
            network_timeout=self.timeout_s,
            connection_timeout=self.timeout_s,
        )
        deadline = time.monotonic() + budget_s
        pool = gevent.pool.Pool(CONCURRENT_DELETES)
        sessions, self.sessions = self.sessions, []
        spawned = 0
        try:
            for session in sessions:
                if time.monotonic() > deadline:
                    self.count("sessions_delete_failed")
                    continue
                pool.spawn(self._delete, client, session)
                spawned += 1
            pool.join(timeout=max(0.0, deadline - time.monotonic()) + self.timeout_s)
        except (GreenletExit, InvalidSwitchError):
            # The run is being torn down (Ctrl-C: Locust kills the stopping users again while
            # they delete): what was not deleted stays, counted, and the user ends quietly.
            for _ in sessions[spawned:]:
                self.count("sessions_delete_failed")

    def _delete(self, client: FastHttpSession, session: CreatedSession) -> None:
        request = self.profile.request("delete_session", session.values)
        try:
            response = client.request(
                request.method, request.path, data=request.body, headers=session.headers
            )
            ok = response.status_code in request.success
        except Exception:
            ok = False
        self.count("sessions_deleted" if ok else "sessions_delete_failed")
