"""Console sessions: an opaque random cookie naming a session held in memory, and the CSRF token
that every state-changing form of that session must carry.

A session is made by signing in with an admin key, or, on a server with no key at all (which
serves loopback only, as the API does), for whoever opens the Console on loopback. A restart
signs everyone out. Tokens are compared in constant time.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

COOKIE = "sijo_console"
SESSION_SECONDS = 12 * 3600


@dataclass(frozen=True, slots=True)
class Session:
    token: str  # the cookie's value
    csrf: str  # what the session's forms carry
    actor: str  # who, as the audit log names them
    expires_at: float

    def accepts(self, presented: str) -> bool:
        return hmac.compare_digest(self.csrf.encode(), presented.encode())


class Sessions:
    def __init__(self, clock: Callable[[], float] = time.monotonic, seconds: float = SESSION_SECONDS) -> None:
        self._clock = clock
        self._seconds = seconds
        self._held: dict[str, Session] = {}

    def start(self, actor: str) -> Session:
        self._expire()
        session = Session(
            secrets.token_urlsafe(32), secrets.token_urlsafe(32), actor, self._clock() + self._seconds
        )
        self._held[session.token] = session
        return session

    def find(self, token: str) -> Session | None:
        self._expire()
        for held, session in self._held.items():
            if hmac.compare_digest(held.encode(), token.encode()):
                return session
        return None

    def end(self, token: str) -> None:
        self._held.pop(token, None)

    def _expire(self) -> None:
        now = self._clock()
        for token in [t for t, s in self._held.items() if s.expires_at <= now]:
            del self._held[token]
