"""The `tavily` backend: Tavily's search API (`POST {url}/search`, JSON body, key as a Bearer token).

The domain filters are sent as `include_domains` / `exclude_domains` (hosts only: a path entry is
applied here, after), and each hit's `content` is its text; `published_date` (news results) is the
page age. Tavily wants a country's English name, not the ISO code `user_location` gives, so the
location is not sent.
Reference: https://docs.tavily.com/api-reference/endpoint/search
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sijo.config import SearchConfig
from sijo.tools.web_search.backends import SearchConfigError, SearchHit, SearchQuery, kept
from sijo.tools.web_search.domains import entry_host, has_path
from sijo.tools.web_search.service import hit, hits, request_json, results, wanted

SERVICE = "Tavily"
DEFAULT_URL = "https://api.tavily.com"
# Tavily's largest `max_results`.
MAX_RESULTS = 20


class TavilyBackend:
    def __init__(self, api_key: str, *, base_url: str = DEFAULT_URL, timeout: float) -> None:
        self.api_key = api_key
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    async def search(self, query: SearchQuery) -> list[SearchHit]:
        body: dict[str, Any] = {
            "query": query.text,
            "max_results": wanted(query, MAX_RESULTS),
            "include_domains": list(dict.fromkeys(entry_host(entry) for entry in query.allowed_domains)),
            "exclude_domains": list(
                dict.fromkeys(entry_host(entry) for entry in query.blocked_domains if not has_path(entry))
            ),
        }
        payload = await request_json(
            SERVICE,
            "POST",
            f"{self.base_url}/search",
            timeout=self.timeout,
            json=body,
            headers={"Accept": "application/json", "Authorization": f"Bearer {self.api_key}"},
        )
        return kept(
            hits(results(payload, SERVICE, "results"), lambda item: hit(item, "content", "published_date")),
            query,
        )


def tavily_backend(config: SearchConfig, data_dir: Path) -> TavilyBackend:  # noqa: ARG001
    if not config.api_key:
        raise SearchConfigError("server_tools.search.api_key must hold a Tavily API key")
    return TavilyBackend(config.api_key, base_url=config.url or DEFAULT_URL, timeout=config.timeout)
