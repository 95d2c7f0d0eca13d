"""Sessions: creation under a cap, pairing delay, idle expiry, ownership and per-session rate limit.

A real gateway pairs each session with a phone through a QR code; here a session simply turns
`ready` `pairing_delay_s` after creation. Its status is derived from the clock instead of flipped
by a timer, so a thousand creations per second cost no extra tasks. A session holds
`session_memory_kib` of touched memory so that memory per session is measurable from outside.
"""

from __future__ import annotations

import hmac
import itertools
import mmap
import secrets
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from gateway.errors import ApiError

if TYPE_CHECKING:
    from gateway.events import Subscriber

SessionStatus = Literal["initializing", "ready"]


@dataclass(slots=True, eq=False)
class Session:
    id: str
    phone: str
    owner_key: str | None
    webhook_url: str | None
    created_at: float
    created_at_ms: int
    ready_at: float
    ballast: bytes | mmap.mmap
    tokens: float
    tokens_at: float
    used: bool = False
    closed: bool = False
    messages_sent: int = 0
    subscribers: set[Subscriber] = field(default_factory=set)

    def status(self, now: float) -> SessionStatus:
        return "ready" if now >= self.ready_at else "initializing"


class SessionStore:
    """Live sessions by id and by phone number, with the cap, expiry and rate limit."""

    def __init__(
        self,
        *,
        max_sessions: int,
        pairing_delay_s: float,
        idle_expiry_s: float,
        memory_kib: int,
        rate_limit: float,
        require_api_key: bool,
    ) -> None:
        self.max_sessions = max_sessions
        self.pairing_delay_s = pairing_delay_s
        self.idle_expiry_s = idle_expiry_s
        self.memory_bytes = memory_kib * 1024
        self.rate_limit = rate_limit
        self.require_api_key = require_api_key
        self._by_id: dict[str, Session] = {}
        self._by_phone: dict[str, Session] = {}
        self._expiry: deque[tuple[float, Session]] = deque()
        self._numbers = itertools.count(1)

    def __len__(self) -> int:
        return len(self._by_id)

    def ready_count(self, now: float) -> int:
        # Sessions are created in order, so the not-yet-ready ones are the newest few.
        return sum(1 for s in self._by_id.values() if now >= s.ready_at)

    def retained_bytes(self) -> int:
        return len(self._by_id) * self.memory_bytes

    def create(
        self, *, owner_key: str | None, webhook_url: str | None, now: float, now_ms: int
    ) -> Session:
        if self.require_api_key and not owner_key:
            raise ApiError(401, "unauthorized", "X-Api-Key header is required.")
        if len(self._by_id) >= self.max_sessions:
            raise ApiError(
                503,
                "session_cap_reached",
                f"The gateway holds its maximum of {self.max_sessions} sessions.",
                retry_after_s=self._next_free_slot_in(now),
            )
        number = next(self._numbers)
        session = Session(
            id=secrets.token_hex(12),
            phone=f"551190{number:08d}",
            owner_key=owner_key,
            webhook_url=webhook_url,
            created_at=now,
            created_at_ms=now_ms,
            ready_at=now + self.pairing_delay_s,
            ballast=_ballast(self.memory_bytes),
            tokens=self.rate_limit,
            tokens_at=now,
        )
        self._by_id[session.id] = session
        self._by_phone[session.phone] = session
        if self.idle_expiry_s > 0:
            self._expiry.append((now + self.idle_expiry_s, session))
        return session

    def get(self, session_id: str, api_key: str | None) -> Session:
        session = self._by_id.get(session_id)
        if session is None:
            raise ApiError(404, "session_not_found", f"No session {session_id[:64]!r}.")
        self.authorize(session, api_key)
        return session

    def authorize(self, session: Session, api_key: str | None) -> None:
        if not self.require_api_key:
            return
        if not api_key:
            raise ApiError(401, "unauthorized", "X-Api-Key header is required.")
        if session.owner_key is None or not hmac.compare_digest(
            api_key.encode(), session.owner_key.encode()
        ):
            raise ApiError(403, "forbidden", "This session belongs to another API key.")

    def find_recipient(self, address: str) -> Session | None:
        """The session an inbound message is for: by session id, phone, or phone@c.us."""
        session = self._by_id.get(address)
        if session is None:
            session = self._by_phone.get(address.removesuffix("@c.us"))
        return session

    def remove(self, session: Session) -> None:
        if self._by_id.pop(session.id, None) is not None:
            self._by_phone.pop(session.phone, None)
            session.closed = True
            session.ballast = b""

    def expire(self, now: float) -> list[Session]:
        """Close the sessions never used within `idle_expiry_s`; return them."""
        expired = []
        while self._expiry and self._expiry[0][0] <= now:
            _, session = self._expiry.popleft()
            if not session.closed and not session.used and not session.subscribers:
                self.remove(session)
                expired.append(session)
        return expired

    def take_token(self, session: Session, now: float) -> float | None:
        """Spend one send from the session's bucket; None if allowed, else seconds to wait."""
        if self.rate_limit <= 0:
            return None
        tokens = min(self.rate_limit, session.tokens + (now - session.tokens_at) * self.rate_limit)
        session.tokens_at = now
        if tokens >= 1.0:
            session.tokens = tokens - 1.0
            return None
        session.tokens = tokens
        return (1.0 - tokens) / self.rate_limit

    def _next_free_slot_in(self, now: float) -> float:
        # A bounded look: under the cap at a thousand arrivals/s this runs for every refusal.
        for expires_at, session in itertools.islice(self._expiry, 64):
            if not session.closed and not session.used:
                return max(0.0, expires_at - now)
        return 5.0


def _ballast(size: int) -> bytes | mmap.mmap:
    """`size` bytes of resident memory that go back to the OS as soon as they are dropped.

    A mapping of its own, not a bytes object: glibc raises its mmap threshold after the first
    large block is freed, so later ballasts would come from the heap, be reused on free instead
    of returned, and RSS would stop following the live sessions after the first churn.
    """
    if size <= 0:
        return b""
    ballast = mmap.mmap(-1, size)
    with memoryview(ballast) as view:  # one written byte per page makes every page resident
        view[:: mmap.PAGESIZE] = b"\xa5" * len(range(0, size, mmap.PAGESIZE))
    return ballast
