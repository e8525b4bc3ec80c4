"""Rendering the Console's pages: the templates, the headers every page carries, and form bodies.

Every response says where its content may come from (only the Console's own files: no inline
script or style, no frames, forms posting only here), is never cached (a page may show a secret
once) and sends no referrer to other sites.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar
from urllib.parse import parse_qs

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from sijo.api.body import read_body
from sijo.console.sessions import COOKIE, SESSION_SECONDS, Session
from sijo.errors import RequestTooLargeError

MAX_FORM_BYTES = 64 * 1024
R = TypeVar("R", bound=Response)

SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",  # no-referrer would make Chromium send `Origin: null` on form posts
    "cache-control": "no-store",
}

_templates = jinja2.Environment(
    loader=jinja2.PackageLoader("sijo.console", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)


def _when(value: datetime | None) -> str:
    return "—" if value is None else value.strftime("%Y-%m-%d %H:%M UTC")


def _dollars(usd: Decimal) -> str:
    if 0 < abs(usd) < Decimal("0.0001"):
        return "<$0.0001" if usd > 0 else ">-$0.0001"
    if 0 < abs(usd) < Decimal("0.01"):
        return f"${usd:.4f}"
    return f"${usd:,.2f}"


_templates.filters["when"] = _when
_templates.filters["dollars"] = _dollars


def render(template: str, **context: Any) -> str:
    return _templates.get_template(template).render(**context)


def page(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    session: Session | None = getattr(request.state, "console_session", None)
    html = render(template, session=session, **context)
    response = HTMLResponse(html, status_code=status_code)
    return secured(request, response)


def redirect(request: Request, url: str) -> RedirectResponse:
    return secured(request, RedirectResponse(url, status_code=303))


def secured(request: Request, response: R) -> R:
    response.headers.update(SECURITY_HEADERS)
    started: Session | None = getattr(request.state, "console_started", None)
    if started is not None:
        set_cookie(request, response, started)
    return response


def set_cookie(request: Request, response: Response, session: Session) -> None:
    response.set_cookie(
        COOKIE,
        session.token,
        max_age=SESSION_SECONDS,
        path="/console",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https" or _public_https(request),
    )


class ConsoleError(Exception):
    """A refusal the Console answers with its error page (routes.install renders it)."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message


def _public_https(request: Request) -> bool:
    public_url: str | None = request.app.state.settings.public_url
    return public_url is not None and public_url.lower().startswith("https://")


async def form(request: Request) -> dict[str, str]:
    """An `application/x-www-form-urlencoded` body's fields (the first value of each), read up to
    `MAX_FORM_BYTES`; a field with a control character in it is refused."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise ConsoleError(400, "content-type: a Console form is application/x-www-form-urlencoded")
    try:
        body = await read_body(request, MAX_FORM_BYTES)
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=100)
    except RequestTooLargeError as exc:
        raise ConsoleError(413, f"the form is larger than {MAX_FORM_BYTES} bytes") from exc
    except (UnicodeDecodeError, ValueError) as exc:
        raise ConsoleError(400, f"the form could not be read: {exc}") from exc
    taken = {name: values[0] for name, values in fields.items()}
    for name, value in taken.items():
        if any((ord(c) < 32 and c not in "\t\n\r") or ord(c) == 127 for c in value):
            raise ConsoleError(400, f"{name}: control characters are not allowed")
    return taken
