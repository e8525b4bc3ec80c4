"""The `searxng` backend: a SearXNG instance's JSON search API (`GET {url}/search?q=…&format=json`).

The instance must allow the json format (`search.formats` in its settings.yml; without it SearXNG
answers 403). SearXNG takes no result count (a page is ~20 results) and no location, so the query
carries the domain filters as `site:` hints and the hits are cut and filtered here.
Reference: https://docs.searxng.org/dev/search_api.html
"""

from __future__ import annotations

from pathlib import Path

from sijo.config import SearchConfig
from sijo.tools.web_search.backends import SearchConfigError, SearchHit, SearchQuery, kept
from sijo.tools.web_search.service import hit, hits, request_json, results, with_hints

SERVICE = "SearXNG"


class SearxngBackend:
    def __init__(self, base_url: str, *, timeout: float) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    async def search(self, query: SearchQuery) -> list[SearchHit]:
        payload = await request_json(
            SERVICE,
            "GET",
            f"{self.base_url}/search",
            timeout=self.timeout,
            params={"q": with_hints(query), "format": "json"},
            headers={"Accept": "application/json"},
        )
        return kept(
            hits(results(payload, SERVICE, "results"), lambda item: hit(item, "content", "publishedDate")),
            query,
        )


def searxng_backend(config: SearchConfig, data_dir: Path) -> SearxngBackend:  # noqa: ARG001
    if not config.url:
        raise SearchConfigError(
            "server_tools.search.url must name the SearXNG instance (e.g. http://127.0.0.1:8888)"
        )
    return SearxngBackend(config.url, timeout=config.timeout)
