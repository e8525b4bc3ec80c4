"""Who may use the Console: the session a page needs, and the CSRF check a form needs.

Without any key (API or admin) the Console is open to loopback callers, as the API is; otherwise a
page needs a session made by signing in with an admin key (sessions.py). A state-changing request
carries the session's CSRF token: a form field `csrf_token`, or the header `x-csrf-token` for the
Workbench's requests.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from sijo.api.auth import Authenticator
from sijo.api.hosts import is_loopback_name, normal_name
from sijo.console.pages import form
from sijo.console.sessions import COOKIE, Session, Sessions

CSRF_HEADER = "x-csrf-token"


class SignInRequired(Exception):
    """No session: the page answers with a redirect to the sign-in form."""


class BadToken(Exception):
    """A form without its session's CSRF token: refused."""


async def _open_to(request: Request) -> bool:
    """Without any key the Console is open, as the API is, to loopback callers only."""
    authenticator: Authenticator = request.app.state.authenticator
    client = request.client
    if client is None or not is_loopback_name(normal_name(client.host)):
        return False
    return not await authenticator.keys_exist()


async def signed_in(request: Request) -> Session:
    sessions: Sessions = request.app.state.console_sessions
    session = sessions.find(request.cookies.get(COOKIE, ""))
    if session is None and await _open_to(request):
        session = sessions.start("loopback (no keys exist)")
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
