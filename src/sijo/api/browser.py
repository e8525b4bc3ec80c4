"""Calls from web pages (CORS), allowed as the Claude API allows them: only to a request that opts in
with `anthropic-dangerous-direct-browser-access: true`, the header the SDKs send when a client is made
with `dangerouslyAllowBrowser`.

- A request without `Origin` (SDKs, curl) or from the server's own origin is left alone.
- A cross-origin request that does not opt in is refused as the API refuses it: 401
  `authentication_error`, "CORS requests must set 'anthropic-dangerous-direct-browser-access'
  header", with no CORS headers, so the page cannot even read that.
- One that opts in is served, and its response carries `Access-Control-Allow-Origin: *` and
  `Access-Control-Expose-Headers` (the API sends `*`; the names are listed too, for browsers that
  predate the wildcard), so the page can read `request-id` and the rate-limit headers.
- A preflight (OPTIONS with `Access-Control-Request-Method`) carries the names of the headers to
  come, not their values: it is answered 204 with the CORS headers when it announces the opt-in
  header, and refused like the request it announces otherwise.

- A cross-origin request to the Console (`/console`) is refused (403) whatever it opts into: its
  pages are for its own origin only.

The Host check (api/hosts.py) runs first: a rebinding page's requests carry its own origin and its
own name as Host, and are refused whatever they opt into.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sijo.api.errors import render
from sijo.api.hosts import normal_name
from sijo.errors import AuthenticationError, PermissionDeniedError

OPT_IN = "anthropic-dangerous-direct-browser-access"
CONSOLE = "/console"  # the web Console (console/): never served to another origin
# Response headers a page may read besides the CORS-safelisted ones (what RequestIdMiddleware and the
# rate limiter add, and what errors carry); each response's own headers are added to these.
EXPOSED = (
    "request-id",
    "retry-after",
    "x-should-retry",
    *(
        f"anthropic-ratelimit-{bucket}-{field}"
        for bucket in ("requests", "tokens", "input-tokens", "output-tokens")
        for field in ("limit", "remaining", "reset")
    ),
)
_SAFELISTED = frozenset(
    ("cache-control", "content-language", "content-length", "content-type", "expires", "last-modified")
)
_METHODS = "GET, POST, DELETE"
_MAX_AGE = "86400"  # seconds a browser may reuse a preflight's answer (Chromium caps it at 2 hours)


def _default_port(scheme: str) -> int | None:
    return {"http": 80, "https": 443}.get(scheme)


def is_cross_origin(origin: str, host: str | None) -> bool:
    """Whether a page at `origin` is another origin than the server its request went to, as named by
    the request's Host (a Host without a port means the page scheme's default port). Schemes are not
    compared: a proxy in front may have ended TLS."""
    if host is None:
        return True
    try:
        page = urlsplit(origin)
        page_port = page.port or _default_port(page.scheme)
        server = urlsplit(f"//{host}")
        server_port = server.port or page_port
    except ValueError:  # a port out of range, or not a number
        return True
    if page.hostname is None or server.hostname is None:
        return True
    return normal_name(page.hostname) != normal_name(server.hostname) or page_port != server_port


class BrowserAccessMiddleware:
    """CORS for requests that opt in with `anthropic-dangerous-direct-browser-access: true`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = Headers(scope=scope) if scope["type"] == "http" else Headers()
        origin = headers.get("origin")
        if origin is None or not is_cross_origin(origin, headers.get("host")):
            await self.app(scope, receive, send)
            return
        preflight = scope["method"] == "OPTIONS" and "access-control-request-method" in headers
        if preflight:
            announced = headers.get("access-control-request-headers", "").lower().split(",")
            opted_in = OPT_IN in (name.strip() for name in announced)
        else:
            opted_in = headers.get(OPT_IN, "").strip().lower() == "true"
        if scope.get("path", "").startswith(CONSOLE):
            # The Console is for its own pages only: no page elsewhere may read it, opted in or not.
            refusal = PermissionDeniedError(
                "the Console answers only its own pages, not cross-origin requests"
            )
            await render(Request(scope), refusal)(scope, receive, send)
        elif not opted_in:
            error = AuthenticationError(f"CORS requests must set '{OPT_IN}' header")
            await render(Request(scope), error)(scope, receive, send)
        elif preflight:
            await self._preflight(headers)(scope, receive, send)
        else:
            await self.app(scope, receive, self._exposing(send))

    @staticmethod
    def _preflight(headers: Headers) -> Response:
        return Response(
            status_code=204,
            headers={
                "access-control-allow-origin": "*",
                "access-control-allow-methods": _METHODS,
                "access-control-allow-headers": headers.get("access-control-request-headers", ""),
                "access-control-max-age": _MAX_AGE,
                "vary": "access-control-request-headers",
            },
        )

    @staticmethod
    def _exposing(send: Send) -> Send:
        async def send_exposed(message: Message) -> None:
            if message["type"] == "http.response.start":
                own = [name.decode("latin-1").lower() for name, _ in message.get("headers", [])]
                exposed = dict.fromkeys(["*", *EXPOSED, *(n for n in own if n not in _SAFELISTED)])
                headers = [
                    *message.get("headers", []),
                    (b"access-control-allow-origin", b"*"),
                    (b"access-control-expose-headers", ", ".join(exposed).encode("latin-1")),
                ]
                message = {**message, "headers": headers}
            await send(message)

        return send_exposed
