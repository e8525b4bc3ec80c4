"""The SearXNG, Brave and Tavily adapters against a real HTTP server on loopback that answers in each
service's published JSON shape: what each adapter sent (path, query, headers, body), what it made of
the answer (hits, page ages, domain filters, max_results), and how each failure surfaces: a closed
port, a slow or dripping answer, 429, 5xx, and answers that are not search results."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from sijo.config import SearchConfig
from sijo.tools.web_search import (
    SearchBackend,
    SearchConfigError,
    SearchQuery,
    SearchRateLimitedError,
    SearchUnavailableError,
    UserLocation,
    search_backend,
)
from sijo.tools.web_search.brave import BraveBackend
from sijo.tools.web_search.searxng import SearxngBackend
from sijo.tools.web_search.tavily import TavilyBackend

SEARXNG_ANSWER = {
    "query": "python docs",
    "number_of_results": 0,
    "results": [
        {
            "url": "https://docs.python.org/3/",
            "title": "3.13 Documentation",
            "content": "The official Python documentation.",
            "engine": "google",
            "publishedDate": "2024-05-01T00:00:00",
        },
        {"url": "https://blog.example.com/python", "title": "A blog", "content": "", "publishedDate": None},
        {"url": "https://badexample.com/", "title": "Look-alike", "content": "x"},
        {"title": "no url at all"},
        "not an object",
        *({"url": f"https://example.com/{n}", "title": f"Page {n}", "content": "c"} for n in range(10)),
    ],
    "answers": [],
    "suggestions": [],
}
BRAVE_ANSWER = {
    "type": "search",
    "query": {"original": "python docs"},
    "web": {
        "type": "search",
        "results": [
            {
                "title": "<strong>Python</strong> docs",
                "url": "https://docs.python.org/3/",
                "description": "The <strong>official</strong> docs &amp; tutorials",
                "age": "2 days ago",
                "page_age": "2025-04-28T10:00:00",
            },
            {
                "title": "Example",
                "url": "https://www.example.com/blog/1",
                "description": "Example blog",
                "page_age": "2025-04-30T00:00:00Z",
            },
            {"title": "Undated", "url": "https://example.org/", "description": "No date"},
        ],
    },
}
TAVILY_ANSWER = {
    "query": "python docs",
    "answer": None,
    "results": [
        {
            "title": "Python docs",
            "url": "https://docs.python.org/3/",
            "content": "The official docs.",
            "score": 0.93,
            "raw_content": None,
            "published_date": "Wed, 30 Apr 2025 10:00:00 GMT",
        },
        {"title": "Private", "url": "https://example.com/private/x", "content": "hidden", "score": 0.5},
        {"title": "Public", "url": "https://example.com/public", "content": "shown", "score": 0.4},
    ],
    "response_time": 1.1,
}
ROUTES = {
    ("GET", "/searxng/search"): SEARXNG_ANSWER,
    ("GET", "/res/v1/web/search"): BRAVE_ANSWER,
    ("POST", "/search"): TAVILY_ANSWER,
}


@dataclass
class Seen:
    method: str
    path: str
    params: dict[str, list[str]]
    headers: dict[str, str]
    body: Any


@dataclass
class Service:
    """What the server answers (`mode`) and what it was asked (`seen`)."""

    base_url: str
    mode: str = "ok"
    seen: list[Seen] = field(default_factory=list)


class Handler(BaseHTTPRequestHandler):
    server: ServiceServer

    def do_GET(self) -> None:
        self.answer("GET")

    def do_POST(self) -> None:
        self.answer("POST")

    def answer(self, method: str) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        service = self.server.service
        service.seen.append(Seen(method, url.path, parse_qs(url.query), dict(self.headers), body))
        mode = service.mode
        if mode == "slow":
            time.sleep(1.5)
        if mode == "drip":
            self.drip()
            return
        status, payload = {
            "429": (429, b'{"error": "rate limited"}'),
            "500": (500, b"Internal Server Error"),
            "401": (401, b'{"error": "bad key"}'),
            "garbage": (200, b"<html>not json</html>"),
            "wrong_shape": (200, b'{"results": {"url": "x"}, "web": {"results": "nope"}}'),
            "empty_web": (200, b'{"type": "search", "query": {"original": "q"}}'),
        }.get(mode, (200, json.dumps(ROUTES.get((method, url.path), {})).encode()))
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def drip(self) -> None:
        """Headers at once, then a byte every 0.2 s: each read is quick, the whole is too slow."""
        self.send_response(200)
        self.send_header("Content-Length", "100")
        self.end_headers()
        for _ in range(10):
            self.wfile.write(b" ")
            self.wfile.flush()
            time.sleep(0.2)

    def log_message(self, *_args: object) -> None:
        """Quiet: no request lines on stderr."""


class ServiceServer(ThreadingHTTPServer):
    daemon_threads = True
    service: Service


@pytest.fixture
def service() -> Iterator[Service]:
    server = ServiceServer(("127.0.0.1", 0), Handler)
    server.service = Service(base_url=f"http://127.0.0.1:{server.server_address[1]}")
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield server.service
    server.shutdown()
    server.server_close()


def query(text: str = "python docs", max_results: int = 5, **fields: Any) -> SearchQuery:
    return SearchQuery(text=text, workspace="default", max_results=max_results, **fields)


def searxng(service: Service, timeout: float = 5.0) -> SearxngBackend:
    return SearxngBackend(f"{service.base_url}/searxng/", timeout=timeout)


def brave(service: Service, timeout: float = 5.0) -> BraveBackend:
    return BraveBackend("brave-key", base_url=service.base_url, timeout=timeout)


def tavily(service: Service, timeout: float = 5.0) -> TavilyBackend:
    return TavilyBackend("tvly-key", base_url=service.base_url, timeout=timeout)


# --- SearXNG ---------------------------------------------------------------------------------------


async def test_searxng_request_and_hits(service: Service) -> None:
    hits = await searxng(service).search(query(max_results=4))
    [seen] = service.seen
    assert (seen.method, seen.path) == ("GET", "/searxng/search")
    assert seen.params == {"q": ["python docs"], "format": ["json"]}
    assert [hit.url for hit in hits] == [
        "https://docs.python.org/3/",
        "https://blog.example.com/python",
        "https://badexample.com/",
        "https://example.com/0",
    ]
    assert (hits[0].title, hits[0].text, hits[0].page_age) == (
        "3.13 Documentation",
        "The official Python documentation.",
        "May 1, 2024",
    )
    assert (hits[1].text, hits[1].page_age) == ("", None)


async def test_searxng_domain_filters_are_hinted_and_applied(service: Service) -> None:
    allowed = await searxng(service).search(query(allowed_domains=("example.com", "docs.python.org/3")))
    assert service.seen[0].params["q"] == ["python docs site:example.com OR site:docs.python.org"]
    assert [hit.url for hit in allowed] == [
        "https://docs.python.org/3/",
        "https://blog.example.com/python",
        "https://example.com/0",
        "https://example.com/1",
        "https://example.com/2",
    ]
    blocked = await searxng(service).search(query(blocked_domains=("example.com", "docs.python.org/3")))
    # A blocked path is not hinted (-site: would drop the whole host), only applied.
    assert service.seen[1].params["q"] == ["python docs -site:example.com"]
    assert [hit.url for hit in blocked] == ["https://badexample.com/"]


# --- Brave -----------------------------------------------------------------------------------------


async def test_brave_request_and_hits(service: Service) -> None:
    location = UserLocation(city="Seoul", country="kr", timezone="Asia/Seoul")
    hits = await brave(service).search(query(max_results=3, user_location=location))
    [seen] = service.seen
    assert (seen.method, seen.path) == ("GET", "/res/v1/web/search")
    assert seen.params == {"q": ["python docs"], "count": ["3"], "country": ["KR"]}
    assert seen.headers["X-Subscription-Token"] == "brave-key"
    assert seen.headers["Accept"] == "application/json"
    assert [(h.url, h.title, h.text, h.page_age) for h in hits] == [
        ("https://docs.python.org/3/", "Python docs", "The official docs & tutorials", "2 days ago"),
        ("https://www.example.com/blog/1", "Example", "Example blog", "April 30, 2025"),
        ("https://example.org/", "Undated", "No date", None),
    ]


async def test_brave_filters_and_counts(service: Service) -> None:
    hits = await brave(service).search(query(max_results=15, allowed_domains=("example.com/blog",)))
    [seen] = service.seen
    # Filters drop results, so more are asked for (Brave's most is 20).
    assert seen.params["q"] == ["python docs site:example.com"]
    assert seen.params["count"] == ["20"]
    assert "country" not in seen.params
    assert [hit.url for hit in hits] == ["https://www.example.com/blog/1"]
    one = await brave(service).search(query(max_results=1, user_location=UserLocation(country="Korea")))
    assert "country" not in service.seen[1].params  # not an ISO code: left out
    assert len(one) == 1


async def test_brave_without_web_results_is_no_hits(service: Service) -> None:
    service.mode = "empty_web"
    assert await brave(service).search(query()) == []


# --- Tavily ----------------------------------------------------------------------------------------


async def test_tavily_request_and_hits(service: Service) -> None:
    hits = await tavily(service).search(query(max_results=2))
    [seen] = service.seen
    assert (seen.method, seen.path) == ("POST", "/search")
    assert seen.headers["Authorization"] == "Bearer tvly-key"
    assert seen.body == {
        "query": "python docs",
        "max_results": 2,
        "include_domains": [],
        "exclude_domains": [],
    }
    assert [(h.url, h.title, h.text, h.page_age) for h in hits] == [
        ("https://docs.python.org/3/", "Python docs", "The official docs.", "April 30, 2025"),
        ("https://example.com/private/x", "Private", "hidden", None),
    ]


async def test_tavily_domain_lists(service: Service) -> None:
    hits = await tavily(service).search(query(blocked_domains=("example.com/private", "python.org")))
    assert service.seen[0].body["include_domains"] == []
    assert service.seen[0].body["exclude_domains"] == ["python.org"]
    assert [hit.url for hit in hits] == ["https://example.com/public"]
    await tavily(service).search(query(max_results=3, allowed_domains=("example.com/private", "a.org")))
    assert service.seen[1].body["include_domains"] == ["example.com", "a.org"]
    assert service.seen[1].body["max_results"] == 6


# --- failures, the same for every service ----------------------------------------------------------

ADAPTERS = [searxng, brave, tavily]


@pytest.mark.parametrize("adapter", ADAPTERS)
async def test_429_is_rate_limited(service: Service, adapter: Any) -> None:
    service.mode = "429"
    with pytest.raises(SearchRateLimitedError, match="429"):
        await adapter(service).search(query())


@pytest.mark.parametrize("adapter", ADAPTERS)
@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("500", "HTTP 500"),
        ("401", "HTTP 401"),
        ("garbage", "not JSON"),
        ("wrong_shape", "not a list of search results"),
    ],
)
async def test_bad_answers_are_unavailable(service: Service, adapter: Any, mode: str, message: str) -> None:
    service.mode = mode
    with pytest.raises(SearchUnavailableError, match=message) as caught:
        await adapter(service).search(query())
    assert not isinstance(caught.value, SearchRateLimitedError)


@pytest.mark.parametrize("adapter", ADAPTERS)
@pytest.mark.parametrize("mode", ["slow", "drip"])
async def test_a_slow_service_is_unavailable_on_time(service: Service, adapter: Any, mode: str) -> None:
    service.mode = mode
    started = time.monotonic()
    with pytest.raises(SearchUnavailableError, match=r"did not answer within 0\.4 s"):
        await adapter(service, timeout=0.4).search(query())
    assert time.monotonic() - started < 1.2


@pytest.mark.parametrize("adapter", ADAPTERS)
async def test_a_closed_port_is_unavailable(adapter: Any) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    closed = Service(base_url=f"http://127.0.0.1:{port}")
    with pytest.raises(SearchUnavailableError, match="could not be reached"):
        await adapter(closed).search(query())


# --- the factory -----------------------------------------------------------------------------------


async def test_search_backend_builds_each_service(service: Service, tmp_path: Path) -> None:
    backends: list[SearchBackend] = [
        search_backend(SearchConfig(backend="searxng", url=f"{service.base_url}/searxng"), tmp_path),
        search_backend(SearchConfig(backend="brave", url=service.base_url, api_key="k"), tmp_path),
        search_backend(
            SearchConfig(backend="tavily", url=service.base_url, api_key="k", timeout=3), tmp_path
        ),
    ]
    for backend in backends:
        assert await backend.search(query(max_results=1))
    assert [seen.path for seen in service.seen] == ["/searxng/search", "/res/v1/web/search", "/search"]
    brave_default = search_backend(SearchConfig(backend="brave", api_key="k"), tmp_path)
    assert isinstance(brave_default, BraveBackend)
    assert brave_default.base_url == "https://api.search.brave.com"
    tavily_default = search_backend(SearchConfig(backend="tavily", api_key="k", timeout=3), tmp_path)
    assert isinstance(tavily_default, TavilyBackend)
    assert (tavily_default.base_url, tavily_default.timeout) == ("https://api.tavily.com", 3)


@pytest.mark.parametrize(
    ("config", "missing"),
    [
        (SearchConfig(backend="searxng"), "url"),
        (SearchConfig(backend="brave"), "api_key"),
        (SearchConfig(backend="tavily", url="http://127.0.0.1:1"), "api_key"),
    ],
)
def test_incomplete_settings_are_refused_at_once(config: SearchConfig, missing: str, tmp_path: Path) -> None:
    with pytest.raises(SearchConfigError, match=f"server_tools.search.{missing}"):
        search_backend(config, tmp_path)
