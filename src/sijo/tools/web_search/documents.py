"""What the local index stores, read from files and URLs: a `Document` (url, title, text, modified
time) from `.txt`, `.md`, `.html`/`.htm` and `.pdf` files, whole folders of them, and http(s) URLs.

A file's URL is its `file://` URI (absolute, percent-encoded); a page's is the URL it was added by.
URLs are fetched by `sijo.media.fetch` under the operator's `FetchPolicy`, so `sijo search add` reaches
no loopback or private address the settings have not opened.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pypdfium2 as pdfium  # type: ignore[import-untyped]

from sijo.errors import InvalidRequestError
from sijo.media.fetch import FetchPolicy, fetch
from sijo.media.pdf import PDFIUM_LOCK, normalize_text  # pdfium admits one thread at a time, Sijo-wide
from sijo.tools.web_search.markup import html_text, tidy

TEXT_SUFFIXES = frozenset({".txt", ".md", ".markdown"})
HTML_SUFFIXES = frozenset({".html", ".htm"})
SUPPORTED_SUFFIXES = TEXT_SUFFIXES | HTML_SUFFIXES | {".pdf"}
# Larger files are refused: an index entry is read whole, and a search returns ~8,000 characters.
MAX_FILE_BYTES = 64 * 1024 * 1024
_MEDIA_TYPES = {
    "text/html": ".html",
    "application/xhtml+xml": ".html",
    "text/plain": ".txt",
    "text/markdown": ".md",
    "application/pdf": ".pdf",
}
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?([a-zA-Z0-9_.:-]+)""", re.IGNORECASE)
_MARKDOWN_HEADING = re.compile(r"^#\s+(.+?)\s*#*\s*$", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class Document:
    url: str
    title: str
    text: str
    modified: datetime | None


class DocumentError(Exception):
    """A file or URL that cannot be indexed; the message says which and why."""


def is_url(source: str) -> bool:
    return source.lower().startswith(("http://", "https://"))


def file_url(path: Path) -> str:
    return path.resolve().as_uri()


def supported(path: Path) -> bool:
    return path.suffix.lower() in SUPPORTED_SUFFIXES


def files_under(folder: Path) -> Iterator[Path]:
    """The supported files under `folder`, in name order, leaving out hidden files and folders."""
    for root, folders, names in os.walk(folder):
        folders[:] = sorted(name for name in folders if not name.startswith("."))
        for name in sorted(names):
            path = Path(root, name)
            if not name.startswith(".") and supported(path) and path.is_file():
                yield path


def read_file(path: Path) -> Document:
    """A supported file as a document; DocumentError if it is unsupported, too large or unreadable."""
    if not supported(path):
        kinds = ", ".join(sorted(SUPPORTED_SUFFIXES))
        raise DocumentError(f"{path}: unsupported file type (supported: {kinds})")
    try:
        stat = path.stat()
        if stat.st_size > MAX_FILE_BYTES:
            raise DocumentError(f"{path}: larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB")
        data = path.read_bytes()
    except OSError as exc:
        raise DocumentError(f"{path}: {exc.strerror or exc}") from None
    title, text = _contents(data, path.suffix.lower(), str(path))
    modified = datetime.fromtimestamp(stat.st_mtime, UTC)
    return Document(url=file_url(path), title=title or path.stem, text=text, modified=modified)


async def read_url(url: str, policy: FetchPolicy) -> Document:
    """An http(s) page (HTML, text, Markdown or PDF), fetched under `policy`."""
    try:
        fetched = await fetch(url, policy, field="url")
    except InvalidRequestError as exc:
        raise DocumentError(f"{url}: {exc.message.removeprefix('url.source.url: ')}") from None
    suffix = _MEDIA_TYPES.get(fetched.content_type or "") or _url_suffix(url)
    if suffix is None:
        raise DocumentError(f"{url}: unsupported content type {fetched.content_type or '(none)'}")
    title, text = _contents(fetched.data, suffix, url)
    fallback = url.rstrip("/").rsplit("/", 1)[-1] or url
    return Document(url=url, title=title or fallback, text=text, modified=None)


def _url_suffix(url: str) -> str | None:
    path = url.split("?", 1)[0].split("#", 1)[0].lower()
    return next((suffix for suffix in SUPPORTED_SUFFIXES if path.endswith(suffix)), None)


def _contents(data: bytes, suffix: str, name: str) -> tuple[str, str]:
    """(title, text) of a file's bytes; the title is empty when the file has none of its own."""
    if suffix == ".pdf":
        return _pdf_contents(data, name)
    text = decode(data)
    if suffix in HTML_SUFFIXES:
        page = html_text(text)
        return page.title, page.text
    heading = _MARKDOWN_HEADING.search(text) if suffix != ".txt" else None
    return (heading.group(1) if heading else ""), tidy(text)


def decode(data: bytes) -> str:
    """Bytes as text: a byte-order mark wins, then UTF-8, then an HTML `<meta charset>`, then
    Windows-1252 (what browsers assume), never failing."""
    for bom, codec in ((b"\xef\xbb\xbf", "utf-8-sig"), (b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16")):
        if data.startswith(bom):
            return data.decode(codec, errors="replace")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    declared = _META_CHARSET.search(data[:4096])
    if declared is not None:
        try:
            return data.decode(declared.group(1).decode("ascii"), errors="replace")
        except LookupError:
            pass
    return data.decode("cp1252", errors="replace")


def _pdf_contents(data: bytes, name: str) -> tuple[str, str]:
    """The PDF's metadata title and its pages' text (every page: an index has no page limit)."""
    with PDFIUM_LOCK:
        try:
            document = pdfium.PdfDocument(data)
        except pdfium.PdfiumError as exc:
            raise DocumentError(f"{name}: not a readable PDF ({exc})") from None
        try:
            title = str(document.get_metadata_dict().get("Title") or "").strip()
            pages = [_page_text(document, index) for index in range(len(document))]
        except pdfium.PdfiumError as exc:
            raise DocumentError(f"{name}: not a readable PDF ({exc})") from None
        finally:
            document.close()
    return title, tidy("\n\n".join(pages))


def _page_text(document: Any, index: int) -> str:
    page = document[index]
    try:
        textpage = page.get_textpage()
        try:
            return normalize_text(str(textpage.get_text_range()))
        finally:
            textpage.close()
    finally:
        page.close()
