"""web_fetch (reference §12, web_fetch_20250910 and later): one URL in, the page Claude reads out,
or one of the API's error codes.

    fetch_page(url, policy) -> FetchedPage
        the URL checked: http or https (else invalid_tool_input), at most 250 characters
            (else url_too_long)
        downloaded by `media/fetch.py`, under the same guards as image and document URLs: every
            hop's addresses checked against the policy, redirects checked like the first URL, one
            deadline, a size cap
        read by its Content-Type:
            text/html, application/xhtml+xml  -> the main text as Markdown (trafilatura), the title
            text/*, JSON, XML, YAML...         -> the text as it is, in its declared charset
            application/pdf                    -> the bytes
            anything else                      -> unsupported_content_type

Every failure is a `WebFetchError` whose `error_code` is the API's:

    invalid_tool_input        not an http(s) URL
    url_too_long              more than 250 characters
    url_not_allowed           a host or address the policy does not reach (FetchError "refused")
    too_many_requests         the site answered 429
    url_not_accessible        unresolvable, unreachable, non-2xx, too large, too slow
    unsupported_content_type  neither a page, text nor a PDF

(`max_uses_exceeded` and `unavailable` are the caller's to raise.) Nothing on the page runs: no
JavaScript, and no image, frame or stylesheet it names is fetched. Rendering the
`web_fetch_tool_result` block and cutting the text to `max_content_tokens` are the caller's.
"""

from __future__ import annotations

import asyncio
import codecs
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, Protocol

import httpx
import trafilatura

from sijo.media.fetch import Fetched, FetchError, FetchPolicy, fetch
from sijo.protocol.server_tools import WebFetchErrorCode

MAX_URL_CHARS = 250

PageKind = Literal["html", "text", "pdf"]

_HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
# application/ types that are text to read as it is (besides any +json or +xml type).
_TEXT_TYPES = frozenset(
    {
        "application/json",
        "application/xml",
        "application/javascript",
        "application/ecmascript",
        "application/x-javascript",
        "application/yaml",
        "application/x-yaml",
        "application/toml",
        "application/x-ndjson",
        "application/csv",
        "application/x-sh",
        "application/sql",
    }
)
_VISIBLE_TEXT = "//body//text()[not(ancestor::script or ancestor::style or ancestor::template)]"
# How much of a body is looked at for what a Content-Type leaves out: the type, an HTML charset.
_SNIFFED_BYTES = 1024
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([\w.:-]+)""", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class FetchedPage:
    """A fetched page: `text` for text/plain (the page's clean text), `data` for application/pdf.
    `url` is the URL asked for, which the API reports, even when a redirect led elsewhere."""

    url: str
    retrieved_at: datetime
    media_type: Literal["text/plain", "application/pdf"]
    title: str | None
    text: str | None
    data: bytes | None
    final_url: str = ""  # where redirects led (the tool's domain filters apply there too)


class WebFetchError(Exception):
    """A fetch that failed, as the API reports it: `web_fetch_tool_result_error` with `error_code`.
    The message says why, for the log."""

    def __init__(self, error_code: WebFetchErrorCode, message: str) -> None:
        super().__init__(message)
        self.error_code: WebFetchErrorCode = error_code


async def fetch_page(url: str, policy: FetchPolicy) -> FetchedPage:
    """Fetch `url` under `policy` and read it as Claude sees it; any failure is a `WebFetchError`."""
    _check_url(url)
    try:
        fetched = await fetch(url, policy, field="web_fetch")
    except FetchError as exc:
        raise WebFetchError(_error_code(exc), exc.detail) from None
    retrieved_at = datetime.now(UTC)
    kind = _kind(fetched)
    if kind is None:
        raise WebFetchError("unsupported_content_type", f"{url} is {fetched.content_type}")
    if kind == "pdf":
        return FetchedPage(url, retrieved_at, "application/pdf", None, None, fetched.data, fetched.url)
    if kind == "text":
        text = _decoded(fetched, kind)
        return FetchedPage(url, retrieved_at, "text/plain", None, text, None, fetched.url)
    title, text = await asyncio.to_thread(read_html, _decoded(fetched, kind), fetched.url)
    return FetchedPage(url, retrieved_at, "text/plain", title, text, None, fetched.url)


def _check_url(url: str) -> None:
    if len(url) > MAX_URL_CHARS:
        raise WebFetchError("url_too_long", f"the URL has {len(url)} characters (at most {MAX_URL_CHARS})")
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise WebFetchError("invalid_tool_input", f"not a valid URL ({exc})") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise WebFetchError("invalid_tool_input", "only http and https URLs with a host are fetched")


def _error_code(error: FetchError) -> WebFetchErrorCode:
    if error.reason == "refused":
        return "url_not_allowed"
    if error.reason == "status" and error.http_status == httpx.codes.TOO_MANY_REQUESTS:
        return "too_many_requests"
    return "url_not_accessible"


def _kind(fetched: Fetched) -> PageKind | None:
    """What the body is, by its Content-Type; a body without one is guessed from its first bytes."""
    media_type = fetched.content_type
    if media_type is None:
        return _sniffed(fetched.data[:_SNIFFED_BYTES])
    if media_type in _HTML_TYPES:
        return "html"
    if media_type == "application/pdf":
        return "pdf"
    if media_type.startswith("text/") or media_type in _TEXT_TYPES or media_type.endswith(("+json", "+xml")):
        return "text"
    return None


def _sniffed(head: bytes) -> PageKind | None:
    if head.startswith(b"%PDF-"):
        return "pdf"
    if b"\x00" in head:
        return None
    start = head.lstrip().lower()
    return "html" if start.startswith((b"<!doctype html", b"<html")) else "text"


def _decoded(fetched: Fetched, kind: PageKind) -> str:
    """The body as text, in the charset its Content-Type declared, or an HTML page its <meta> (in
    its first 1024 bytes, as browsers look), when Python knows it; else UTF-8. Bytes that do not
    decode become U+FFFD."""
    declared = fetched.charset
    if declared is None and kind == "html":
        match = _META_CHARSET.search(fetched.data[:_SNIFFED_BYTES])
        declared = match[1].decode("ascii") if match else None
    encoding = "utf-8"
    if declared is not None:
        try:
            codec = codecs.lookup(declared)
        except LookupError:
            codec = None
        # Only a text encoding: a page may declare `base64` or `rot13`, which are codecs too.
        if codec is not None and getattr(codec, "_is_text_encoding", True):
            encoding = codec.name
    try:
        return fetched.data.decode("utf-8-sig" if encoding == "utf-8" else encoding, errors="replace")
    except (LookupError, UnicodeError):  # a codec that cannot decode at all (idna)
        return fetched.data.decode("utf-8-sig", errors="replace")


def read_html(html: str, url: str | None = None) -> tuple[str | None, str]:
    """The title and the main text of an HTML page, as Markdown: paragraphs, headings, lists,
    tables and links (made absolute against `url`, so that Claude can fetch them next), with
    navigation, headers, footers and other boilerplate dropped (trafilatura). A page where that
    finds no main text is read as all its visible text. Blocking (lxml): run it on a worker thread.
    trafilatura only reads the string given; it fetches nothing, whatever the page names."""
    tree = trafilatura.load_html(html)
    if tree is None:  # trafilatura rejects a lone fragment ("<p>x</p>") as not quite HTML
        tree = trafilatura.load_html(f"<html><body>{html}</body></html>")
    if tree is None:
        return None, html.strip()
    text = trafilatura.extract(
        tree,
        url=url,
        output_format="markdown",
        include_formatting=True,
        include_links=True,
        include_tables=True,
        include_comments=False,
    )
    return _title(tree), (text or trafilatura.html2txt(tree) or _visible_text(tree)).strip()


class _Tree(Protocol):
    """What is read here of an lxml HTML tree (lxml has no type hints of its own)."""

    def xpath(self, path: str) -> list[str]: ...
    def findtext(self, path: str) -> str | None: ...


def _title(tree: _Tree) -> str | None:
    """What the page calls itself: its og:title, else its <title>."""
    candidates = [*tree.xpath('//head/meta[@property="og:title"]/@content'), tree.findtext(".//title")]
    for candidate in candidates:
        title = " ".join(str(candidate or "").split())
        if title:
            return title
    return None


def _visible_text(tree: _Tree) -> str:
    """Every text of the body but scripts and styles, in one line: the last resort for a page whose
    only text trafilatura drops even in its plain extraction (a page that is all footer)."""
    return " ".join(" ".join(tree.xpath(_VISIBLE_TEXT)).split())
