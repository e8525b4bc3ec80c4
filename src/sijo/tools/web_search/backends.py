"""What every `web_search` backend shares: the query it gets, the hits it returns, the errors it may
raise, and the factory that builds the configured one.

    SearchUnavailableError       down, timed out, or answered garbage → error_code "unavailable"
    └── SearchRateLimitedError   the service said 429                 → error_code "too_many_requests"
    SearchConfigError            the settings cannot make a backend (raised when it is built)

A backend is one method, `search(query) -> list[SearchHit]`; it applies the query's domain filters
to what it returns and returns at most `query.max_results` hits. Backends are named in a registry of
import strings and imported only when chosen, so a server on the local index never imports httpx
adapters it does not use.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol, cast

from sijo.config import SearchBackendKind, SearchConfig
from sijo.tools.web_search.domains import url_allowed


@dataclass(frozen=True, slots=True)
class UserLocation:
    """The request's `user_location` (approximate): `country` is ISO 3166-1 alpha-2, `timezone` IANA."""

    city: str | None = None
    region: str | None = None
    country: str | None = None
    timezone: str | None = None


@dataclass(frozen=True, slots=True)
class SearchQuery:
    """One search. `workspace` is the caller's workspace name: the local index answers with that
    workspace's documents and the shared ones. Domain entries were checked by `check_domains`."""

    text: str
    workspace: str
    max_results: int
    allowed_domains: tuple[str, ...] = ()
    blocked_domains: tuple[str, ...] = ()
    user_location: UserLocation | None = None


@dataclass(frozen=True, slots=True)
class SearchHit:
    """One result: `text` is what the model reads (a document's text, best passage first, or a
    service's snippet); `page_age` is human ("2 days ago", "April 30, 2025") or None."""

    url: str
    title: str
    text: str
    page_age: str | None


class SearchUnavailableError(Exception):
    """The backend is down, too slow, or answered something that is not a search result."""


class SearchRateLimitedError(SearchUnavailableError):
    """The service answered 429 Too Many Requests."""


class SearchConfigError(ValueError):
    """`server_tools.search` names a backend it does not give what it needs (a URL, a key)."""


class SearchBackend(Protocol):
    async def search(self, query: SearchQuery) -> list[SearchHit]: ...


BackendFactory = Callable[[SearchConfig, Path], SearchBackend]

# backend name → "module:function" building it from (config, data_dir); imported when chosen.
BACKENDS: dict[SearchBackendKind, str] = {
    "local": "sijo.tools.web_search.local_index:local_backend",
    "searxng": "sijo.tools.web_search.searxng:searxng_backend",
    "brave": "sijo.tools.web_search.brave:brave_backend",
    "tavily": "sijo.tools.web_search.tavily:tavily_backend",
}


def search_backend(config: SearchConfig, data_dir: Path) -> SearchBackend:
    """The backend `config` names; SearchConfigError if its settings are incomplete."""
    module_name, _, function = BACKENDS[config.backend].partition(":")
    factory = cast(BackendFactory, getattr(importlib.import_module(module_name), function))
    return factory(config, data_dir)


def kept(hits: Iterable[SearchHit], query: SearchQuery) -> list[SearchHit]:
    """The hits the query's domain filters let through, each URL once, at most `max_results`."""
    result: list[SearchHit] = []
    seen: set[str] = set()
    for hit in hits:
        if len(result) >= query.max_results:
            break
        if hit.url in seen or not url_allowed(hit.url, query.allowed_domains, query.blocked_domains):
            continue
        seen.add(hit.url)
        result.append(hit)
    return result


# English month names whatever the process locale (strftime's %B follows it).
_MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip


def human_date(moment: datetime) -> str:
    """A date as the API's `page_age` writes one: "March 3, 2026"."""
    return f"{_MONTHS[moment.month - 1]} {moment.day}, {moment.year}"
