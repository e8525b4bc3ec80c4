"""Which Host names the server answers to: the defence against DNS rebinding.

Without API keys Sijo trusts every caller that reaches it on loopback. A web page cannot reach
loopback by itself, but its site can rebind its own name to 127.0.0.1 once the page has loaded; the
browser then sends the page's requests to Sijo as same-origin ones, with `Host: attacker.example`.
So a request is answered only when its Host is one of

- a loopback name: `localhost`, `*.localhost`, any address of 127.0.0.0/8, `[::1]`;
- the address the server is bound to, when it is not a wildcard (0.0.0.0, ::);
- the host of `public_url`;
- an entry of `allowed_hosts`: an exact name, `*.example.com` (its subdomains), or `*` (anything);

with any port. Any other Host gets 403 `permission_error` naming it.

Once an API key exists (in the settings, or made by `sijo keys create`), every request must carry
one, and a rebinding page has none: then a Host outside the list is accepted, unless `allowed_hosts`
is set, which makes the list strict. This is what lets a server bound to a wildcard address (which
`sijo serve` allows only with keys) be reached by names it cannot know: its LAN addresses, DNS names,
a reverse proxy's public name.

A request without a Host header (HTTP/1.0 allows it; a browser always sends one) is accepted from a
loopback peer, and otherwise judged like a Host outside the list.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from sijo.api.errors import render
from sijo.config import Settings
from sijo.errors import PermissionDeniedError, shown

# A Host header: a name or a bracketed IPv6 address, then an optional port (RFC 9110 §7.2).
_HOST = re.compile(r"(?P<name>\[[0-9a-f:.]+\]|[^\[\]:/@\\\s]+)(?::\d{0,5})?")
_WILDCARDS = frozenset({"", "0.0.0.0", "::"})


def host_name(value: str) -> str | None:
    """The name in a Host header value, normalized (`Example.COM.:80` → `example.com`,
    `[0::1]:8000` → `::1`), or None when it is not a well-formed Host."""
    match = _HOST.fullmatch(value.strip().lower())
    return normal_name(match["name"]) if match else None


def normal_name(name: str) -> str:
    """A host name or address as compared here: lowercase, without brackets or a final dot, an IP
    address in its canonical form."""
    name = name.strip().lower().removeprefix("[").removesuffix("]").removesuffix(".")
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        return name


def is_loopback_name(name: str) -> bool:
    """`localhost`, `*.localhost` (RFC 6761: browsers resolve them to loopback themselves, never
    through DNS, so no site can own one), or a loopback address, an IPv4-mapped one included."""
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_loopback or (mapped is not None and mapped.is_loopback)


@dataclass(frozen=True, slots=True)
class HostPolicy:
    """The names a server answers to, from its settings (loopback names are always answered)."""

    names: frozenset[str]
    suffixes: tuple[str, ...]  # ".example.com" for `*.example.com`
    anything: bool
    strict: bool  # `allowed_hosts` is set: a Host outside the list is refused even with keys

    @classmethod
    def from_settings(cls, settings: Settings) -> HostPolicy:
        names: set[str] = set()
        if normal_name(settings.host) not in _WILDCARDS:
            names.add(normal_name(settings.host))
        if settings.public_url and (public := urlsplit(settings.public_url).hostname):
            names.add(normal_name(public))
        entries = [entry.strip().lower() for entry in settings.allowed_hosts if entry.strip()]
        suffixes = tuple(entry[1:] for entry in entries if entry.startswith("*."))
        names |= {host_name(e) or normal_name(e) for e in entries if not e.startswith("*")}
        return cls(frozenset(names), suffixes, "*" in entries, strict=bool(entries))

    def allows(self, name: str) -> bool:
        return (
            self.anything
            or is_loopback_name(name)
            or name in self.names
            or any(name.endswith(suffix) for suffix in self.suffixes)
        )


class HostCheckMiddleware:
    """Refuses a request whose Host the server does not answer to (see the module docstring)."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.policy = HostPolicy.from_settings(settings)
        self._keys_exist = bool(settings.api_keys)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or await self._accepts(scope):
            await self.app(scope, receive, send)
            return
        # 403, not 421 Misdirected Request: the SDKs map 403 to PermissionDeniedError and never retry
        # it, while 421 invites a client to retry on another connection, which reaches us again.
        # Ollama answers the same hole with 403.
        host = Request(scope).headers.get("host")
        named = f"Host {shown(host)!r}" if host is not None else "a request without a Host header"
        error = PermissionDeniedError(
            f"This server does not answer to {named}. Use localhost or 127.0.0.1, or add the name "
            "to allowed_hosts (SIJO_ALLOWED_HOSTS); this guards against DNS rebinding."
        )
        await render(Request(scope), error)(scope, receive, send)

    async def _accepts(self, scope: Scope) -> bool:
        host = Request(scope).headers.get("host")
        if host is None:
            client = scope.get("client")
            if client is not None and is_loopback_name(normal_name(client[0])):
                return True
        else:
            name = host_name(host)
            if name is not None and self.policy.allows(name):
                return True
        return not self.policy.strict and await self._keys_required(scope)

    async def _keys_required(self, scope: Scope) -> bool:
        """Whether every request must carry a key: once one exists it is never deleted, only
        deactivated, so a yes is kept."""
        if not self._keys_exist:
            keys = scope["app"].state.keys
            self._keys_exist = await asyncio.to_thread(keys.any, "api")
        return self._keys_exist
