"""Sijo's own search index: documents in a SQLite file, found by FTS5 full-text search ranked by bm25.

Each document belongs to one workspace or is shared (`workspace = ''`): a search sees its own
workspace's documents and the shared ones. A URL is stored once; adding it again replaces it.

Tokenizer: `porter unicode61 remove_diacritics 2`. unicode61 splits on Unicode spaces and punctuation,
folds case and, with remove_diacritics, accents (`cafe` finds `café`); porter stems English words
(`capitals` finds `capital`) and leaves other scripts alone. Korean words carry their particles
(`서울은`, "Seoul" + topic marker), so a Hangul or CJK query word is matched as a prefix (`서울*`
finds `서울은`). The trigram tokenizer was not chosen: it cannot match words under three characters,
and most Korean words are two syllables.

User text is never FTS syntax: each whitespace-separated word becomes a quoted phrase (`"` doubled)
run through the same tokenizer as the documents, and phrases are joined with OR, so `a OR b`,
`NEAR(`, `col:x`, `*` and stray quotes are searched as words. OR, not AND: bm25 ranks documents that
match more (and rarer) words first, so "what is the capital of France?" finds the page about Paris
although it never says "what".

sqlite3 calls block: the backend runs them on a worker thread, one connection per call.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sijo.config import SearchConfig
from sijo.tools.web_search.backends import SearchHit, SearchQuery, SearchUnavailableError, human_date
from sijo.tools.web_search.documents import Document
from sijo.tools.web_search.domains import url_allowed
from sijo.tools.web_search.excerpts import excerpt

SHARED = ""
SCHEMA_VERSION = 1
# At most this many query words are searched (a pasted paragraph is not a query).
MAX_QUERY_WORDS = 64
# Title matches weigh more than body matches (bm25 column weights: title, text).
TITLE_WEIGHT, TEXT_WEIGHT = 5.0, 1.0
# Words in these scripts are matched as prefixes: Hangul (jamo, compatibility jamo, syllables), kana,
# CJK ideographs (a run of them is one unicode61 token, so a query word is often its start).
_PREFIX_SCRIPTS = re.compile(
    "[\u1100-\u11ff\u3130-\u318f\uac00-\ud7af\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff]"
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
    id INTEGER PRIMARY KEY,
    workspace TEXT NOT NULL,
    url TEXT NOT NULL UNIQUE,
    title TEXT NOT NULL,
    text TEXT NOT NULL,
    modified_at TEXT,
    added_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS documents_workspace ON documents (workspace);
CREATE VIRTUAL TABLE IF NOT EXISTS documents_fts USING fts5(
    title, text, content='documents', content_rowid='id',
    tokenize='porter unicode61 remove_diacritics 2'
);
CREATE TRIGGER IF NOT EXISTS documents_insert AFTER INSERT ON documents BEGIN
    INSERT INTO documents_fts (rowid, title, text) VALUES (new.id, new.title, new.text);
END;
CREATE TRIGGER IF NOT EXISTS documents_delete AFTER DELETE ON documents BEGIN
    INSERT INTO documents_fts (documents_fts, rowid, title, text)
    VALUES ('delete', old.id, old.title, old.text);
END;
CREATE TRIGGER IF NOT EXISTS documents_update AFTER UPDATE ON documents BEGIN
    INSERT INTO documents_fts (documents_fts, rowid, title, text)
    VALUES ('delete', old.id, old.title, old.text);
    INSERT INTO documents_fts (rowid, title, text) VALUES (new.id, new.title, new.text);
END;
"""
_INFO_COLUMNS = "id, workspace, url, title, length(text), modified_at, added_at"


@dataclass(frozen=True, slots=True)
class DocumentInfo:
    """A stored document without its text; `workspace` is None for a shared one, `size` in characters."""

    id: int
    workspace: str | None
    url: str
    title: str
    size: int
    modified_at: datetime | None
    added_at: datetime


def index_path(config: SearchConfig, data_dir: Path) -> Path:
    return config.index_path or data_dir / "search.db"


def fts_query(text: str) -> str | None:
    """`text` as an FTS5 query of quoted words joined by OR; None when it has no words at all."""
    # A lone surrogate (JSON may carry one) cannot be bound as UTF-8: it becomes "?". FTS5 reads a
    # NUL as the end of a quoted string, whatever follows.
    text = text.encode("utf-8", "replace").decode("utf-8").replace("\x00", " ")
    words = list(dict.fromkeys(text.split()))[:MAX_QUERY_WORDS]
    phrases = []
    for word in words:
        phrase = '"' + word.replace('"', '""') + '"'
        phrases.append(phrase + "*" if _PREFIX_SCRIPTS.search(word) else phrase)
    return " OR ".join(phrases) or None


class LocalIndex:
    """The index file at `path` (created, with its folder, on the first write)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def put(self, document: Document, workspace: str | None = None) -> tuple[int, bool]:
        """Store `document` for `workspace` (None: shared); (its id, whether it is new)."""
        row = (
            workspace or SHARED,
            document.title,
            document.text,
            _stamp(document.modified),
            _stamp(datetime.now(UTC)),
        )
        with self._writing() as connection:
            found = connection.execute("SELECT id FROM documents WHERE url = ?", (document.url,)).fetchone()
            if found is not None:
                connection.execute(
                    "UPDATE documents SET workspace = ?, title = ?, text = ?, modified_at = ?, added_at = ? "
                    "WHERE id = ?",
                    (*row, found[0]),
                )
                return int(found[0]), False
            cursor = connection.execute(
                "INSERT INTO documents (workspace, title, text, modified_at, added_at, url) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (*row, document.url),
            )
            return int(cursor.lastrowid or 0), True

    def documents(self, workspace: str | None = None) -> list[DocumentInfo]:
        """Every document, or those `workspace` sees (its own and the shared ones), by id."""
        where, parameters = ("WHERE workspace IN (?, ?)", (SHARED, workspace)) if workspace else ("", ())
        return self._infos(f"SELECT {_INFO_COLUMNS} FROM documents {where} ORDER BY id", parameters)

    def get(self, document_id: int) -> DocumentInfo | None:
        found = self._infos(f"SELECT {_INFO_COLUMNS} FROM documents WHERE id = ?", (document_id,))
        return found[0] if found else None

    def find_url(self, url: str) -> DocumentInfo | None:
        found = self._infos(f"SELECT {_INFO_COLUMNS} FROM documents WHERE url = ?", (url,))
        return found[0] if found else None

    def under(self, url_prefix: str) -> list[DocumentInfo]:
        """The documents whose URL starts with `url_prefix` (a folder's files)."""
        return self._infos(
            f"SELECT {_INFO_COLUMNS} FROM documents WHERE substr(url, 1, ?) = ? ORDER BY id",
            (len(url_prefix), url_prefix),
        )

    def remove(self, document_ids: list[int]) -> int:
        """Delete these documents; how many there were."""
        if not self.path.exists() or not document_ids:
            return 0
        with self._writing() as connection:
            marks = ", ".join("?" for _ in document_ids)
            return connection.execute(f"DELETE FROM documents WHERE id IN ({marks})", document_ids).rowcount

    def search(self, query: SearchQuery) -> list[SearchHit]:
        """The best documents for `query` that its workspace sees and its domain filters allow.
        Ranking reads ids and URLs only; the texts of the few documents kept are read after."""
        match = fts_query(query.text)
        if match is None or not self.path.exists():
            return []
        with closing(self._connect()) as connection:
            ranked = connection.execute(
                "SELECT d.id, d.url FROM documents_fts JOIN documents AS d ON d.id = documents_fts.rowid "
                "WHERE documents_fts MATCH ? AND d.workspace IN (?, ?) "
                f"ORDER BY bm25(documents_fts, {TITLE_WEIGHT}, {TEXT_WEIGHT})",
                (match, SHARED, query.workspace),
            )
            chosen = _allowed_ids(ranked, query)
            return [_hit(connection, document_id, query.text) for document_id in chosen]

    def _infos(self, sql: str, parameters: tuple[object, ...]) -> list[DocumentInfo]:
        if not self.path.exists():
            return []
        with closing(self._connect()) as connection:
            return [_info(row) for row in connection.execute(sql, parameters)]

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self.path, timeout=10.0)
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        if version != SCHEMA_VERSION:
            connection.executescript(_SCHEMA)
            connection.execute("PRAGMA journal_mode = WAL")  # readers (searches) never wait on `add`
            connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        return connection

    @contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        """A connection in a transaction, committed when the block ends (rolled back if it raises)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with closing(self._connect()) as connection, connection:
            yield connection


def _allowed_ids(ranked: Iterable[tuple[int, str]], query: SearchQuery) -> list[int]:
    """The first `max_results` ranked documents whose URL the domain filters let through."""
    chosen: list[int] = []
    for document_id, url in ranked:
        if len(chosen) >= query.max_results:
            break
        if url_allowed(url, query.allowed_domains, query.blocked_domains):
            chosen.append(document_id)
    return chosen


def _hit(connection: sqlite3.Connection, document_id: int, query_text: str) -> SearchHit:
    url, title, text, modified_at = connection.execute(
        "SELECT url, title, text, modified_at FROM documents WHERE id = ?", (document_id,)
    ).fetchone()
    modified = _parse_stamp(modified_at)
    return SearchHit(
        url=url,
        title=title,
        text=excerpt(text, query_text),
        page_age=human_date(modified) if modified else None,
    )


def _info(row: tuple[int, str, str, str, int, str | None, str]) -> DocumentInfo:
    document_id, workspace, url, title, size, modified_at, added_at = row
    return DocumentInfo(
        id=document_id,
        workspace=workspace or None,
        url=url,
        title=title,
        size=size,
        modified_at=_parse_stamp(modified_at),
        added_at=datetime.fromisoformat(added_at),
    )


def _stamp(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat() if moment else None


def _parse_stamp(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


class LocalIndexBackend:
    """The `local` backend: searches `index` on a worker thread."""

    def __init__(self, index: LocalIndex) -> None:
        self.index = index

    async def search(self, query: SearchQuery) -> list[SearchHit]:
        try:
            return await asyncio.to_thread(self.index.search, query)
        except sqlite3.Error as exc:
            raise SearchUnavailableError(f"the local search index failed: {exc}") from exc


def local_backend(config: SearchConfig, data_dir: Path) -> LocalIndexBackend:
    return LocalIndexBackend(LocalIndex(index_path(config, data_dir)))
