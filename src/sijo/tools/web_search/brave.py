"""The `brave` backend: the Brave Search API's web search
(`GET {url}/res/v1/web/search?q=…&count=…`, key in `X-Subscription-Token`).

Hits come from `web.results[]`: `description` (with `<strong>` highlights, removed here) is the text,
`age` ("2 days ago", "April 30, 2025") or else `page_age` (ISO 8601) the page age. The request's
`user_location.country` becomes `country`; the domain filters go into the query as `site:` hints.
Reference: https://api-dashboard.search.brave.com/app/documentation/web-search/get-started
"""

from __future__ import annotations

from pathlib import Path

from sijo.config import SearchConfig
from sijo.tools.web_search.backends import SearchConfigError, SearchHit, SearchQuery, kept
from sijo.tools.web_search.service import (
    hit,
    hits,
    request_json,
    results,
    wanted,
    with_hints,
)

SERVICE = "Brave Search"
DEFAULT_URL = "https://api.search.brave.com"
# Brave's largest `count`.
MAX_COUNT = 20


class BraveBackend:
    def __init__(self, api_key: str, *, base_url: str = DEFAULT_URL, timeout: float) -> None:
        self.api_key = api_key
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    async def search(self, query: SearchQuery) -> list[SearchHit]:
        params: dict[str, str | int] = {"q": with_hints(query), "count": wanted(query, MAX_COUNT)}
        country = query.user_location.country if query.user_location else None
        if country and len(country) == 2 and country.isalpha():
            params["country"] = country.upper()
        payload = await request_json(
            SERVICE,
            "GET",
            f"{self.base_url}/res/v1/web/search",
            timeout=self.timeout,
            params=params,
            headers={"Accept": "application/json", "X-Subscription-Token": self.api_key},
        )
        return kept(
            hits(
                results(payload, SERVICE, "web", "results"),
                lambda item: hit(item, "description", "age", "page_age"),
            ),
            query,
        )


def brave_backend(config: SearchConfig, data_dir: Path) -> BraveBackend:  # noqa: ARG001
    if not config.api_key:
        raise SearchConfigError("server_tools.search.api_key must hold a Brave Search API key")
    return BraveBackend(config.api_key, base_url=config.url or DEFAULT_URL, timeout=config.timeout)
