"""`sijo search add` and `remove` without the printing: what the user names (files, folders, http(s)
URLs, document ids) turned into index writes, one `Added` per document or failure, so the CLI can
report each as it happens and exit nonzero if any failed.

These run in the CLI, outside any event loop: they block, and a URL is fetched with `asyncio.run`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from sijo.media.fetch import FetchPolicy
from sijo.tools.web_search.documents import (
    SUPPORTED_SUFFIXES,
    Document,
    DocumentError,
    file_url,
    files_under,
    is_url,
    read_file,
    read_url,
)
from sijo.tools.web_search.local_index import DocumentInfo, LocalIndex


@dataclass(frozen=True, slots=True)
class Added:
    """One document stored (`error` None; `created` False when it replaced the same URL's) or one
    source that could not be (`error` says why; the other fields are empty)."""

    source: str
    id: int | None = None
    url: str = ""
    title: str = ""
    size: int = 0
    created: bool = False
    error: str | None = None


def add_sources(
    index: LocalIndex, sources: list[str], *, workspace: str | None, policy: FetchPolicy
) -> Iterator[Added]:
    """Read and store each source (a folder: each supported file under it, hidden ones left out)."""
    for source in sources:
        if is_url(source):
            yield _store(index, source, partial(_fetch_page, source, policy), workspace)
            continue
        path = Path(source).expanduser()
        if path.is_dir():
            yield from _add_folder(index, path, workspace)
        elif path.exists():
            yield _store(index, source, partial(read_file, path), workspace)
        else:
            yield Added(source, error=f"{source}: no such file or folder")


def matching(index: LocalIndex, key: str) -> list[DocumentInfo]:
    """The documents `key` names: an id, a URL, a file, or a folder (every file under it)."""
    if key.isdigit():
        found = index.get(int(key))
        return [found] if found else []
    if is_url(key):
        found = index.find_url(key)
        return [found] if found else []
    url = file_url(Path(key).expanduser())
    found = index.find_url(url)
    return [found] if found else index.under(url.rstrip("/") + "/")


def _add_folder(index: LocalIndex, folder: Path, workspace: str | None) -> Iterator[Added]:
    any_file = False
    for path in files_under(folder):
        any_file = True
        yield _store(index, str(path), partial(read_file, path), workspace)
    if not any_file:
        kinds = " ".join(sorted(SUPPORTED_SUFFIXES))
        yield Added(str(folder), error=f"{folder}: no {kinds} files in this folder")


def _fetch_page(url: str, policy: FetchPolicy) -> Document:
    return asyncio.run(read_url(url, policy))


def _store(index: LocalIndex, source: str, read: Callable[[], Document], workspace: str | None) -> Added:
    try:
        document = read()
    except DocumentError as exc:
        return Added(source, error=str(exc))
    document_id, created = index.put(document, workspace)
    return Added(
        source,
        id=document_id,
        url=document.url,
        title=document.title,
        size=len(document.text),
        created=created,
    )
