"""`allowed_domains` and `blocked_domains`: checking a request's entries and matching URLs against them.

By the API's rules (web search tool guide) an entry is a host without a scheme, `example.com`, which
covers its subdomains (`docs.example.com`) but not look-alikes (`badexample.com`); a subdomain entry
(`docs.example.com`) covers only that subdomain; a path (`example.com/blog`) covers what starts with
it (`example.com/blog/post-1`). `*.example.com` is taken to mean the subdomains alone. The two lists
cannot be used together.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from sijo.errors import InvalidRequestError, shown

# One DNS label once IDNA-encoded: letters, digits, hyphens inside; `_` is common enough in real
# host names (service records, some intranets) to accept.
_LABEL = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$")
_FORBIDDEN = frozenset(" \t\r\n:?#@\\")


def check_domains(allowed: list[str] | None, blocked: list[str] | None, field: str) -> None:
    """Refuse (400) both lists at once, or an entry that is not a domain, naming the field:
    `field` is the tool's path (`tools.0`)."""
    if allowed and blocked:
        raise InvalidRequestError(
            f"{field}.allowed_domains: cannot be used together with blocked_domains; give one or the other"
        )
    for name, entries in (("allowed_domains", allowed), ("blocked_domains", blocked)):
        for index, entry in enumerate(entries or []):
            reason = _entry_problem(entry)
            if reason is not None:
                raise InvalidRequestError(f"{field}.{name}.{index}: {shown(entry)!r} {reason}")


def url_allowed(url: str, allowed: tuple[str, ...], blocked: tuple[str, ...]) -> bool:
    """Whether `url` passes the filters: with `allowed`, it must match an entry; with `blocked`, none.
    A URL without a host (`file://`) matches no entry."""
    host, path = _host_and_path(url)
    if allowed:
        return any(_matches(entry, host, path) for entry in allowed)
    return not any(_matches(entry, host, path) for entry in blocked)


def entry_host(entry: str) -> str:
    """The host part of an entry (`example.com/blog` → `example.com`), for a service's `site:` hint."""
    return _normalized_host(entry.split("/", 1)[0].removeprefix("*."))


def has_path(entry: str) -> bool:
    return "/" in entry.strip().strip("/")


def _entry_problem(entry: str) -> str | None:
    text = entry.strip()
    if not text:
        return "is empty"
    if "://" in text:
        return "must not include a scheme (give example.com, not https://example.com)"
    if any(char in _FORBIDDEN for char in text):
        return "is not a domain (a host name, optionally followed by a path: example.com/blog)"
    host = text.split("/", 1)[0].removeprefix("*.")
    if not _valid_host(_normalized_host(host)):
        return "is not a domain (a host name, optionally followed by a path: example.com/blog)"
    return None


def _valid_host(host: str) -> bool:
    if not host or len(host) > 253:
        return False
    return all(_LABEL.match(label) for label in host.split("."))


def _normalized_host(host: str) -> str:
    """Lower case, no trailing dot, international names in their ASCII (IDNA) form."""
    host = host.strip().lower().rstrip(".")
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError:
        return host


def _host_and_path(url: str) -> tuple[str, str]:
    try:
        parts = urlsplit(url if "://" in url else "//" + url)
        host = parts.hostname or ""
    except ValueError:
        return "", ""
    return _normalized_host(host), parts.path or "/"


def _matches(entry: str, host: str, path: str) -> bool:
    if not host:
        return False
    text = entry.strip()
    entry_name, _, entry_path = text.partition("/")
    subdomains_only = entry_name.startswith("*.")
    domain = _normalized_host(entry_name.removeprefix("*."))
    if host == domain:
        host_ok = not subdomains_only
    else:
        host_ok = host.endswith("." + domain)
    if not host_ok:
        return False
    return not entry_path or path.startswith("/" + entry_path)
