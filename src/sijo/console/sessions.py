"""Console sessions: an opaque random cookie naming a session held in memory, the CSRF token that
every state-changing request of that session must carry, and what granted it.

A session is made by signing in with an admin key, or, on a server with no key at all (which
serves loopback only, as the API does), for whoever opens the Console on loopback. It is held
under the SHA-256 of its token (a lookup that reveals nothing about other tokens), at most
`MAX_SESSIONS` at once (the oldest goes first), and ends after `SESSION_SECONDS`, at sign-out, or
when what granted it is gone (access.py). A restart signs everyone out.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

COOKIE = "sijo_console"
SESSION_SECONDS = 12 * 3600
MAX_SESSIONS = 1000


@dataclass(frozen=True, slots=True)
class Session:
    token: str  # the cookie's value
    csrf: str  # what the session's forms carry
    actor: str  # who, as the audit log names them
    expires_at: float
    key_id: str | None = None  # the stored admin key that signed in (None: a configured key, or open)
    open: bool = False  # granted because no key existed

    def accepts(self, presented: str) -> bool:
        return hmac.compare_digest(self.csrf.encode(), presented.encode())


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Sessions:
    def __init__(self, clock: Callable[[], float] = time.monotonic, seconds: float = SESSION_SECONDS) -> None:
        self._clock = clock
        self._seconds = seconds
        self._held: dict[str, Session] = {}  # by the token's digest, oldest first
        self._shown: dict[str, tuple[str, str]] = {}  # a new key's (id, secret), until shown once

    def start(self, actor: str, *, key_id: str | None = None, open: bool = False) -> Session:
        self._expire()
        while len(self._held) >= MAX_SESSIONS:
            self._end(next(iter(self._held)))
        token = secrets.token_urlsafe(32)
        session = Session(
            token, secrets.token_urlsafe(32), actor, self._clock() + self._seconds, key_id, open
        )
        self._held[_digest(token)] = session
        return session

    def find(self, token: str) -> Session | None:
        session = self._held.get(_digest(token)) if token else None
        if session is not None and session.expires_at <= self._clock():
            self.end(token)
            return None
        return session

    def end(self, token: str) -> None:
        self._end(_digest(token))

    def _end(self, digest: str) -> None:
        self._held.pop(digest, None)
        self._shown.pop(digest, None)

    def hold_secret(self, session: Session, key_id: str, secret: str) -> None:
        """Keep a new key's secret for the page that shows it, once (after the redirect)."""
        self._shown[_digest(session.token)] = (key_id, secret)

    def take_secret(self, session: Session) -> tuple[str, str] | None:
        return self._shown.pop(_digest(session.token), None)

    def _expire(self) -> None:
        now = self._clock()
        for digest in [d for d, s in self._held.items() if s.expires_at <= now]:
            self._end(digest)
