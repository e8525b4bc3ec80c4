"""What the search-service adapters (SearXNG, Brave, Tavily) share: one JSON request with every failure
mapped to the backend errors, `site:` hints for the domain filters, snippet cleanup and dates.

    connection refused, timeout (the whole request, not each read), 5xx, 4xx, not JSON
                                        → SearchUnavailableError
    429                                 → SearchRateLimitedError

Nothing else escapes: an answer of the wrong shape is unavailable too (see `parse_failure`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from sijo.errors import shown
from sijo.tools.web_search.backends import (
    SearchHit,
    SearchQuery,
    SearchRateLimitedError,
    SearchUnavailableError,
    human_date,
)
from sijo.tools.web_search.domains import entry_host, has_path
from sijo.tools.web_search.markup import html_text

# The most hits asked of a service that filters results itself when domain filters are on: results
# it returns that the filters drop still leave enough.
OVERFETCH = 2


async def request_json(
    service: str,
    method: str,
    url: str,
    *,
    timeout: float,
    params: dict[str, str | int] | None = None,
    json: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Any:
    """The service's JSON answer, or SearchUnavailableError / SearchRateLimitedError saying why not."""
    try:
        async with asyncio.timeout(timeout), httpx.AsyncClient(timeout=timeout) as client:
            response = await client.request(method, url, params=params, json=json, headers=headers)
    except (TimeoutError, httpx.TimeoutException):
        raise SearchUnavailableError(f"{service} did not answer within {timeout:g} s") from None
    except (httpx.HTTPError, OSError, ValueError) as exc:
        # ValueError: an unusable configured URL (httpx.InvalidURL and friends).
        raise SearchUnavailableError(f"{service} could not be reached ({_reason(exc)})") from None
    if response.status_code == 429:
        raise SearchRateLimitedError(f"{service} is rate limiting searches (HTTP 429)")
    if not response.is_success:
        raise SearchUnavailableError(f"{service} answered HTTP {response.status_code}")
    try:
        return response.json()
    except ValueError:
        raise SearchUnavailableError(f"{service} answered something that is not JSON") from None


def results(payload: Any, service: str, *keys: str) -> list[Any]:
    """The result list at `payload[keys[0]][keys[1]]...`; unavailable when the answer lacks it.
    A missing intermediate object (Brave leaves out `web` when nothing matched) is no results."""
    value = payload
    for key in keys:
        if not isinstance(value, dict):
            raise parse_failure(service)
        value = value.get(key, [] if key == keys[-1] else {})
    if not isinstance(value, list):
        raise parse_failure(service)
    return value


def parse_failure(service: str) -> SearchUnavailableError:
    return SearchUnavailableError(f"{service} answered JSON that is not a list of search results")


def hits(items: list[Any], to_hit: Callable[[dict[str, Any]], SearchHit]) -> Iterator[SearchHit]:
    """The items that are results (objects with a non-empty string `url`), converted; the rest
    skipped, so one odd item does not cost the others."""
    for item in items:
        if isinstance(item, dict) and isinstance(item.get("url"), str) and item["url"]:
            yield to_hit(item)


def hit(item: dict[str, Any], text_key: str, *date_keys: str) -> SearchHit:
    """A service's result as a hit: its url, its title (the url if it has none), the text under
    `text_key`, and the first of `date_keys` that holds a date."""
    ages = (page_age(item.get(key)) for key in date_keys)
    return SearchHit(
        url=item["url"],
        title=text_field(item, "title") or item["url"],
        text=text_field(item, text_key),
        page_age=next((age for age in ages if age), None),
    )


def text_field(item: dict[str, Any], *names: str) -> str:
    """The first of `names` that is a non-empty string, as plain text (tags and entities gone)."""
    for name in names:
        value = item.get(name)
        if isinstance(value, str) and value.strip():
            return html_text(value).text if "<" in value or "&" in value else value.strip()
    return ""


def page_age(value: Any) -> str | None:
    """A service's date as a `page_age`: an ISO 8601 or RFC 2822 date becomes "May 1, 2025"; other
    text ("2 days ago") is kept as it is."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    for parse in (_iso_date, parsedate_to_datetime):
        try:
            return human_date(parse(text))
        except (TypeError, ValueError, IndexError):
            continue
    return text


def site_hints(query: SearchQuery) -> str:
    """The domain filters as search operators appended to the query (`site:a.com OR site:b.com`,
    `-site:c.com`), for services that pass them to engines that honour them. Results are filtered
    again afterwards, so a hint may be wider than its entry (a path entry hints its whole host) but
    never narrower (a blocked path is not hinted: `-site:` would drop the host's other pages)."""
    if query.allowed_domains:
        hosts = dict.fromkeys(entry_host(entry) for entry in query.allowed_domains)
        return " OR ".join(f"site:{host}" for host in hosts)
    hosts = dict.fromkeys(entry_host(entry) for entry in query.blocked_domains if not has_path(entry))
    return " ".join(f"-site:{host}" for host in hosts)


def with_hints(query: SearchQuery) -> str:
    hints = site_hints(query)
    return f"{query.text} {hints}" if hints else query.text


def wanted(query: SearchQuery, most: int) -> int:
    """How many results to ask for: more when filters will drop some, never more than `most`."""
    filtered = bool(query.allowed_domains or query.blocked_domains)
    return max(1, min(most, query.max_results * (OVERFETCH if filtered else 1)))


def _iso_date(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _reason(exc: Exception) -> str:
    return shown(exc) or type(exc).__name__
