"""The `web_search` server tool's search backends: Sijo's own full-text index of local documents
(`local_index`, filled by `sijo search add`) and adapters for SearXNG, Brave Search and Tavily.

    backends.py     SearchQuery, SearchHit, the SearchBackend protocol, errors, `search_backend(config)`
    domains.py      allowed_domains / blocked_domains: `check_domains`, `url_allowed`
    local_index.py  the SQLite FTS5 index and its backend
    documents.py    files, folders and URLs read into documents for the index
    indexing.py     `sijo search add` / `remove`: what the user names, turned into index writes
    excerpts.py     the part of a long document a hit carries
    markup.py       HTML to plain text
    service.py      what the service adapters share (HTTP, errors, `site:` hints, dates)
    searxng.py, brave.py, tavily.py    one adapter each
"""

from sijo.tools.web_search.backends import (
    SearchBackend,
    SearchConfigError,
    SearchHit,
    SearchQuery,
    SearchRateLimitedError,
    SearchUnavailableError,
    UserLocation,
    search_backend,
)
from sijo.tools.web_search.domains import check_domains, url_allowed

__all__ = [
    "SearchBackend",
    "SearchConfigError",
    "SearchHit",
    "SearchQuery",
    "SearchRateLimitedError",
    "SearchUnavailableError",
    "UserLocation",
    "check_domains",
    "search_backend",
    "url_allowed",
]
