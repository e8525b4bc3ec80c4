"""Who may use the Console: the session a page needs, and the CSRF check a change needs.

Without any key (API or admin) the Console is open to loopback callers, as the API is, provided no
proxy stands between (a forwarding header would mean the real caller is elsewhere); otherwise a page
needs a session made by signing in with an admin key (sessions.py). A session lasts only as long as
what granted it: an open one until the first key exists, a stored admin key's until that key is
deactivated. A state-changing request carries the session's CSRF token: a form field `csrf_token`,
or the header `x-csrf-token` for the Workbench's requests. Failed sign-ins are counted per address:
past `MAX_FAILURES` a minute, sign-in answers 429 for the rest of that minute.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request

from sijo.api.auth import Authenticator
from sijo.api.hosts import is_loopback_name, normal_name
from sijo.console.pages import form
from sijo.console.sessions import COOKIE, Session, Sessions
from sijo.store.keys import KeyStore

CSRF_HEADER = "x-csrf-token"
FORWARDING_HEADERS = ("forwarded", "x-forwarded-for", "x-real-ip")
MAX_FAILURES = 5


class SignInRequired(Exception):
    """No session: a page answers with a redirect to the sign-in form, a script's request with 401."""


class BadToken(Exception):
    """A change without its session's CSRF token: refused (403)."""


async def _open_to(request: Request) -> bool:
    """Without any key the Console is open, as the API is, to loopback callers only."""
    client = request.client
    if client is None or not is_loopback_name(normal_name(client.host)):
        return False
    if any(name in request.headers for name in FORWARDING_HEADERS):
        return False
    authenticator: Authenticator = request.app.state.authenticator
    return not await authenticator.keys_exist()


async def _still_granted(request: Request, session: Session) -> bool:
    if session.open:
        authenticator: Authenticator = request.app.state.authenticator
        return not await authenticator.keys_exist()
    if session.key_id is not None:
        keys: KeyStore = request.app.state.keys
        key = await asyncio.to_thread(keys.get, session.key_id)
        return key is not None and key.status == "active"
    return True  # a configured admin key lasts as long as the configuration


async def signed_in(request: Request) -> Session:
    sessions: Sessions = request.app.state.console_sessions
    token = request.cookies.get(COOKIE, "")
    session = sessions.find(token)
    if session is not None and not await _still_granted(request, session):
        sessions.end(token)
        session = None
    if session is None and await _open_to(request):
        session = sessions.start("loopback (no keys exist)", open=True)
        request.state.console_started = session
    if session is None:
        raise SignInRequired
    request.state.console_session = session
    return session


SessionDep = Annotated[Session, Depends(signed_in)]


async def posted(request: Request, session: SessionDep) -> tuple[Session, dict[str, str]]:
    """The form of a state-changing POST, once its CSRF token is checked."""
    fields = await form(request)
    if not session.accepts(fields.get("csrf_token", "")):
        raise BadToken
    return session, fields


PostedDep = Annotated[tuple[Session, dict[str, str]], Depends(posted)]


async def checked_header(request: Request, session: SessionDep) -> Session:
    """The session of a script's request (the Workbench's), once its CSRF header is checked."""
    if not session.accepts(request.headers.get(CSRF_HEADER, "")):
        raise BadToken
    return session


ScriptDep = Annotated[Session, Depends(checked_header)]


class Attempts:
    """Failed sign-ins per address over the last minute."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._failures: dict[str, list[float]] = {}

    def blocked(self, address: str) -> bool:
        return len(self._recent(address)) >= MAX_FAILURES

    def failed(self, address: str) -> None:
        self._recent(address).append(self._clock())
        if len(self._failures) > 10_000:  # addresses that stopped trying
            for stale in [a for a in self._failures if not self._recent(a)]:
                del self._failures[stale]

    def _recent(self, address: str) -> list[float]:
        since = self._clock() - 60
        recent = [at for at in self._failures.get(address, ()) if at > since]
        self._failures[address] = recent
        return recent
