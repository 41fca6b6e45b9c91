"""Console sessions: the sign-in cookie names a session kept on the server, never a token.

Signing in (a bearer token checked by the authenticator) opens a session: a random
id (256 bits) sent as an HttpOnly, SameSite=Strict cookie, Secure when the console is
served over TLS. The server keeps only the id's SHA-256, the identity, and the
digest of the token that opened it. A session ends:

- after `idle` without a request (8 hours by default) or `lifetime` after sign-in
  (24 hours), whichever comes first;
- at sign-out, on the server: the cookie's value is worthless from then on;
- when the token that opened it is no longer valid: each request re-checks the token's
  digest against the authenticator's current table, so removing or rotating a token in
  the auth file (SIGHUP) ends its sessions at their next request, and a changed role
  applies at once.

Sessions live in this process's memory: a restart signs everyone out, and behind a
load balancer with several replicas each replica knows only its own sessions (route a
browser to one replica, e.g. by a sticky cookie, or sign in per replica).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from orchestrator.web.auth import Identity

SESSION_COOKIE = "saga_console_session"
DEFAULT_IDLE_SECONDS = 8 * 3600.0
DEFAULT_LIFETIME_SECONDS = 24 * 3600.0
MAX_SESSIONS = 10_000
"""Open sessions kept at most; past it the least recently used one is dropped (only
signed-in callers open sessions, so this bounds memory, not who may sign in)."""

Revalidate = Callable[[str], Identity | None]
"""The identity a token digest has now, or None once the token is gone."""


def _key(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


@dataclass(slots=True)
class _Session:
    identity: Identity
    token_digest: str | None
    opened: float
    last_used: float


class SessionTable:
    """Open console sessions by the SHA-256 of their id, in least-recently-used order."""

    def __init__(
        self,
        idle_seconds: float = DEFAULT_IDLE_SECONDS,
        lifetime_seconds: float = DEFAULT_LIFETIME_SECONDS,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_sessions: int = MAX_SESSIONS,
    ) -> None:
        if not (idle_seconds > 0 and lifetime_seconds > 0):
            raise ValueError("session idle time and lifetime must be positive")
        self.idle_seconds = idle_seconds
        self.lifetime_seconds = lifetime_seconds
        self._clock = clock
        self._max = max_sessions
        self._sessions: OrderedDict[str, _Session] = OrderedDict()

    def __len__(self) -> int:
        return len(self._sessions)

    def open(self, identity: Identity, token_digest: str | None) -> str:
        """A new session for `identity`, opened with the token of `token_digest` (None
        when the identity did not come from a token: then only expiry ends it early)."""
        now = self._clock()
        self._drop_expired(now)
        while len(self._sessions) >= self._max:
            self._sessions.popitem(last=False)
        session_id = secrets.token_urlsafe(32)
        self._sessions[_key(session_id)] = _Session(identity, token_digest, now, now)
        return session_id

    def identity(self, session_id: str, revalidate: Revalidate | None = None) -> Identity | None:
        """The identity of a live session (its idle clock restarts), else None; an
        expired session, or one whose token `revalidate` no longer knows, is ended."""
        if not session_id:
            return None
        key = _key(session_id)
        session = self._sessions.get(key)
        if session is None:
            return None
        now = self._clock()
        if self._expired(session, now):
            del self._sessions[key]
            return None
        if revalidate is not None and session.token_digest is not None:
            current = revalidate(session.token_digest)
            if current is None:
                del self._sessions[key]
                return None
            session.identity = current
        session.last_used = now
        self._sessions.move_to_end(key)
        return session.identity

    def revoke(self, session_id: str) -> bool:
        """End a session (sign-out); False if there was none."""
        return self._sessions.pop(_key(session_id), None) is not None if session_id else False

    def _expired(self, session: _Session, now: float) -> bool:
        return (
            now - session.last_used >= self.idle_seconds
            or now - session.opened >= self.lifetime_seconds
        )

    def _drop_expired(self, now: float) -> None:
        """Drop expired sessions from the least recently used end (they expire in that
        order for idleness; a session past its lifetime is dropped at its next use)."""
        while self._sessions:
            key, session = next(iter(self._sessions.items()))
            if not self._expired(session, now):
                return
            del self._sessions[key]
