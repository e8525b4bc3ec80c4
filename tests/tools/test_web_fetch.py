"""web_fetch pages from a real HTTP server on loopback: what Claude reads of an article (its text,
not its navigation), of text, of a PDF; and each of the API's error codes, the fetch guards of
`media/fetch.py` (refused addresses, redirects, size, time) among them."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from sijo.media.fetch import FetchPolicy
from sijo.tools.web_fetch import MAX_URL_CHARS, FetchedPage, WebFetchError, fetch_page, read_html
from tests.documents import pdf

LOCAL = FetchPolicy(allow=("127.0.0.1",), timeout=5.0)

ARTICLE = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Tide pools | The Shore Gazette</title>
  <link rel="stylesheet" href="/style.css">
  <script src="/tracker.js"></script>
  <script>document.write("<p>Written by JavaScript</p>");</script>
</head>
<body>
  <header><div class="logo">The Shore Gazette</div></header>
  <nav>
    <ul>
      <li><a href="/">Home page</a></li>
      <li><a href="/subscribe">Subscribe to our newsletter</a></li>
      <li><a href="/archive">Browse the archive</a></li>
    </ul>
  </nav>
  <main>
    <article>
      <h1>Life in the tide pools</h1>
      <p>Twice a day the sea draws back from the rocks and leaves behind small basins of water,
      each one a world of its own where anemones, limpets and hermit crabs wait for the tide.</p>
      <p>The animals that live there must survive heat, fresh rain and the beaks of gulls, and
      many of them close up tightly, holding a little sea water inside until the waves return.</p>
      <h2>Visiting</h2>
      <p>Visitors should step only on bare rock, turn stones back the way they found them, and
      never take a living creature home: the pool is its whole world. The
      <a href="/tides/march">March tide table</a> says when the rocks are bare.</p>
      <img src="/pixel.png" alt="">
      <iframe src="/frame"></iframe>
    </article>
  </main>
  <footer><p>Copyright 2025 The Shore Gazette. All rights reserved. Privacy policy.</p></footer>
</body>
</html>
"""

OG_TITLE_PAGE = """<!DOCTYPE html>
<html><head><title>site title</title><meta property="og:title" content="The open graph title"></head>
<body><p>A page whose open graph title names it better than its title element does.</p></body></html>
"""


class Handler(BaseHTTPRequestHandler):
    server: PageServer

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        self.server.seen.append(url.path)
        route = getattr(self, "route_" + url.path.strip("/").replace("-", "_").replace(".", "_"), None)
        if route is None:
            self.send_error(404)
            return
        route(parse_qs(url.query))

    def reply(self, body: bytes, content_type: str | None, status: int = 200) -> None:
        self.send_response(status)
        if content_type is not None:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def route_article(self, _query: dict[str, list[str]]) -> None:
        self.reply(ARTICLE.encode(), "text/html; charset=utf-8")

    def route_og(self, _query: dict[str, list[str]]) -> None:
        self.reply(OG_TITLE_PAGE.encode(), "application/xhtml+xml")

    def route_fragment(self, _query: dict[str, list[str]]) -> None:
        self.reply(b"<p>Only a fragment &amp; no document around it</p>", "text/html")

    def route_notes_txt(self, _query: dict[str, list[str]]) -> None:
        self.reply(b"line one\n  line two, indented\n", "text/plain")

    def route_latin1(self, _query: dict[str, list[str]]) -> None:
        self.reply("café crème".encode("latin-1"), "text/plain; charset=ISO-8859-1")

    def route_meta_charset(self, _query: dict[str, list[str]]) -> None:
        page = '<html><head><meta http-equiv="Content-Type" content="text/html; charset=windows-1252">'
        page += "<title>Caf\u00e9 menu</title></head><body><p>Cr\u00e8me br\u00fbl\u00e9e, \u20ac4</p></body></html>"
        self.reply(page.encode("cp1252"), "text/html")

    def route_bom(self, _query: dict[str, list[str]]) -> None:
        self.reply("\ufeffwith a byte order mark".encode(), "text/plain; charset=utf-8")

    def route_broken(self, _query: dict[str, list[str]]) -> None:
        self.reply(b"ok \xff\xfe bytes", "text/markdown")

    def route_data_json(self, _query: dict[str, list[str]]) -> None:
        self.reply(b'{"tide": "low"}', "application/json")

    def route_untyped_html(self, _query: dict[str, list[str]]) -> None:
        self.reply(ARTICLE.encode(), None)

    def route_untyped_pdf(self, _query: dict[str, list[str]]) -> None:
        self.reply(pdf("untyped"), None)

    def route_doc_pdf(self, _query: dict[str, list[str]]) -> None:
        self.reply(pdf("Tide tables for March"), "application/pdf")

    def route_image_png(self, _query: dict[str, list[str]]) -> None:
        self.reply(b"\x89PNG\r\n\x1a\n", "image/png")

    def route_download(self, _query: dict[str, list[str]]) -> None:
        self.reply(b"\x00\x01\x02", "application/octet-stream")

    def route_busy(self, _query: dict[str, list[str]]) -> None:
        self.reply(b"slow down", "text/plain", status=429)

    def route_redirect(self, query: dict[str, list[str]]) -> None:
        self.send_response(302)
        self.send_header("Location", query["to"][0])
        self.send_header("Content-Length", "0")
        self.end_headers()

    def route_big(self, _query: dict[str, list[str]]) -> None:
        self.reply(b"x" * 1000, "text/plain")

    def route_slow(self, _query: dict[str, list[str]]) -> None:
        self.server.release.wait(5)
        self.reply(b"late", "text/plain")

    def log_message(self, *_args: Any) -> None:
        pass


class PageServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.seen: list[str] = []
        self.release = threading.Event()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"


@pytest.fixture
def server() -> Iterator[PageServer]:
    running = PageServer()
    threading.Thread(target=running.serve_forever, args=(0.02,), daemon=True).start()
    yield running
    running.release.set()
    running.shutdown()
    running.server_close()


async def error_code(url: str, policy: FetchPolicy = LOCAL) -> str:
    with pytest.raises(WebFetchError) as caught:
        await fetch_page(url, policy)
    return caught.value.error_code


# --- pages -----------------------------------------------------------------------------------------


async def test_article_is_its_main_text(server: PageServer) -> None:
    before = datetime.now(UTC)
    page = await fetch_page(server.url("/article"), LOCAL)
    assert isinstance(page, FetchedPage)
    assert page.url == server.url("/article")
    assert before <= page.retrieved_at <= datetime.now(UTC)
    assert page.retrieved_at.tzinfo is UTC
    assert page.media_type == "text/plain"
    assert page.title == "Tide pools | The Shore Gazette"
    assert page.data is None
    assert page.text is not None
    assert "Twice a day the sea draws back from the rocks" in page.text
    assert "never take a living creature home: the pool is its whole world." in page.text
    assert "## Visiting" in page.text
    assert f"[March tide table]({server.url('/tides/march')})" in page.text
    for boilerplate in ("Subscribe to our newsletter", "Browse the archive", "All rights reserved"):
        assert boilerplate not in page.text
    assert "<p>" not in page.text
    assert "JavaScript" not in page.text


async def test_nothing_the_page_names_is_fetched(server: PageServer) -> None:
    """No script runs and no stylesheet, script, image or frame the page names is requested."""
    await fetch_page(server.url("/article"), LOCAL)
    assert server.seen == ["/article"]


async def test_open_graph_title_comes_first(server: PageServer) -> None:
    page = await fetch_page(server.url("/og"), LOCAL)
    assert page.title == "The open graph title"
    assert page.text is not None and "names it better" in page.text


async def test_html_fragment_is_read_as_text(server: PageServer) -> None:
    page = await fetch_page(server.url("/fragment"), LOCAL)
    assert page.text == "Only a fragment & no document around it"
    assert page.title is None


@pytest.mark.parametrize(
    ("body", "text"),
    [
        ("<nav>Home | About</nav>", "Home | About"),
        (
            "<footer><p>All footer</p><p>and more</p></footer><script>alert('no')</script>",
            "All footer and more",
        ),
        ("<style>p { color: red }</style>", ""),
    ],
)
def test_page_without_main_text_falls_back_to_its_visible_text(body: str, text: str) -> None:
    html = f"<html><head><title>  The\n title </title></head><body>{body}</body></html>"
    assert read_html(html) == ("The title", text)


async def test_text_is_returned_as_it_is(server: PageServer) -> None:
    page = await fetch_page(server.url("/notes.txt"), LOCAL)
    assert (page.media_type, page.title, page.data) == ("text/plain", None, None)
    assert page.text == "line one\n  line two, indented\n"
    json_page = await fetch_page(server.url("/data.json"), LOCAL)
    assert json_page.text == '{"tide": "low"}'


async def test_text_is_decoded_in_its_declared_charset(server: PageServer) -> None:
    assert (await fetch_page(server.url("/latin1"), LOCAL)).text == "café crème"
    assert (await fetch_page(server.url("/broken"), LOCAL)).text == "ok \ufffd\ufffd bytes"
    assert (await fetch_page(server.url("/bom"), LOCAL)).text == "with a byte order mark"


async def test_html_charset_may_be_declared_in_the_page(server: PageServer) -> None:
    page = await fetch_page(server.url("/meta-charset"), LOCAL)
    assert page.title == "Café menu"
    assert page.text == "Crème brûlée, €4"


async def test_pdf_is_its_bytes(server: PageServer) -> None:
    page = await fetch_page(server.url("/doc.pdf"), LOCAL)
    assert page.media_type == "application/pdf"
    assert page.data == pdf("Tide tables for March")
    assert page.text is None


async def test_body_without_a_content_type_is_sniffed(server: PageServer) -> None:
    html = await fetch_page(server.url("/untyped-html"), LOCAL)
    assert html.text is not None and "Twice a day" in html.text
    assert (await fetch_page(server.url("/untyped-pdf"), LOCAL)).media_type == "application/pdf"


@pytest.mark.parametrize("path", ["/image.png", "/download"])
async def test_other_content_types_are_unsupported(server: PageServer, path: str) -> None:
    assert await error_code(server.url(path)) == "unsupported_content_type"


# --- the URL ---------------------------------------------------------------------------------------


async def test_url_length_limit(server: PageServer) -> None:
    base = server.url("/notes.txt?pad=")
    at_limit = base + "x" * (MAX_URL_CHARS - len(base))
    assert len(at_limit) == 250
    assert (await fetch_page(at_limit, LOCAL)).text is not None
    assert await error_code(at_limit + "x") == "url_too_long"
    assert server.seen == ["/notes.txt"]


@pytest.mark.parametrize(
    "url", ["ftp://example.com/file.txt", "file:///etc/passwd", "example.com/page", "http://", "http://[::1"]
)
async def test_not_an_http_url(url: str) -> None:
    assert await error_code(url) == "invalid_tool_input"


# --- refused and failed fetches --------------------------------------------------------------------


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1/", "http://10.0.0.1/", "http://169.254.169.254/latest/meta-data/"]
)
async def test_default_policy_refuses_internal_addresses(url: str) -> None:
    assert await error_code(url, FetchPolicy(timeout=2.0)) == "url_not_allowed"


async def test_redirect_to_a_refused_address_is_not_allowed(server: PageServer) -> None:
    port = server.server_address[1]
    for target in (f"http://127.0.0.2:{port}/notes.txt", "http://169.254.169.254/latest/meta-data/"):
        assert await error_code(server.url(f"/redirect?to={target}")) == "url_not_allowed"
    assert server.seen == ["/redirect", "/redirect"]


async def test_redirect_to_an_allowed_page_is_followed(server: PageServer) -> None:
    page = await fetch_page(server.url("/redirect?to=/notes.txt"), LOCAL)
    assert page.url == server.url("/redirect?to=/notes.txt")
    assert page.text == "line one\n  line two, indented\n"


async def test_error_status_is_not_accessible(server: PageServer) -> None:
    assert await error_code(server.url("/missing")) == "url_not_accessible"


async def test_429_is_too_many_requests(server: PageServer) -> None:
    assert await error_code(server.url("/busy")) == "too_many_requests"


async def test_closed_port_is_not_accessible() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert await error_code(f"http://127.0.0.1:{port}/") == "url_not_accessible"


async def test_body_over_the_size_cap_is_not_accessible(server: PageServer) -> None:
    policy = FetchPolicy(allow=("127.0.0.1",), max_bytes=999)
    assert await error_code(server.url("/big"), policy) == "url_not_accessible"


async def test_slow_server_is_not_accessible_quickly(server: PageServer) -> None:
    policy = FetchPolicy(allow=("127.0.0.1",), timeout=0.3)
    started = time.monotonic()
    assert await error_code(server.url("/slow"), policy) == "url_not_accessible"
    assert time.monotonic() - started < 2
