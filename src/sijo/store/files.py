"""Files (reference §13): their bytes on disk under `<root>/<workspace>/<file id>`, their metadata in
the `files` table.

A file's bytes are written first, to a hidden staging file in its workspace's folder, renamed into
place, and only then is its row inserted; deleting removes the row, then the bytes. So a file is
visible exactly while its row exists, and a failure at any step leaves no row without bytes. Files
past their `expires_at` are invisible at once and removed by `sweep`, which the API runs lazily.

Every method that touches the database or the disk runs it on a worker thread (`asyncio.to_thread`),
so the methods are async; `Staged.discard` is the one exception, a close and an unlink, so that it can
run in any `finally`, a cancelled request's included.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import Connection, Engine, Row, and_, delete, func, insert, or_, select, text
from sqlalchemy.sql.elements import ColumnElement

from sijo.ids import new_id
from sijo.store.tables import files

logger = logging.getLogger("sijo.files")

STAGING_PREFIX = ".upload-"
# Staged bytes go to disk in pieces of about this size, each write on a worker thread.
FLUSH_BYTES = 1024 * 1024
# A staging file this old was left by a process that died mid-upload.
STALE_STAGING_SECONDS = 24 * 3600
_SAFE_FOLDER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


@dataclass(frozen=True, slots=True)
class Position:
    """Where a file stands in its workspace's list, newest first: by `created_at`, then `id`."""

    created_at: datetime
    id: str


@dataclass(frozen=True, slots=True)
class FileRecord:
    id: str
    workspace: str
    filename: str
    mime_type: str
    size_bytes: int
    created_at: datetime
    downloadable: bool
    expires_at: datetime | None

    @property
    def position(self) -> Position:
        return Position(self.created_at, self.id)


@dataclass(frozen=True, slots=True)
class StoredFile:
    """A file's metadata and bytes, for a `{"type": "file", "file_id": ...}` source."""

    id: str
    filename: str
    mime_type: str
    size_bytes: int
    data: bytes


@dataclass(frozen=True, slots=True)
class FilePage:
    files: list[FileRecord]
    has_more: bool  # more files lie beyond this page, in the direction of paging


class StorageQuotaExceeded(Exception):
    """The file would take its workspace past `quota` bytes (`used` are held by the others)."""

    def __init__(self, used: int, quota: int) -> None:
        super().__init__(f"{used} bytes in use, quota {quota}")
        self.used = used
        self.quota = quota


class Staged:
    """A new file's bytes on their way to disk: a private staging file in the workspace's folder,
    renamed into place by `FileStore.create`, or removed by `discard`."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / f"{STAGING_PREFIX}{secrets.token_hex(12)}"
        self.size = 0
        self._buffer = bytearray()
        self._handle: BinaryIO | None = None
        self._discarded = False
        # A write still running on a worker thread when its request is cancelled must not
        # (re)create the file after `discard` removed it.
        self._lock = threading.Lock()

    async def write(self, data: bytes) -> None:
        self._buffer += data
        self.size += len(data)
        if len(self._buffer) >= FLUSH_BYTES:
            await self._flush()

    async def finish(self) -> None:
        """Everything written on disk (the file exists even when empty), synced and closed."""
        await self._flush()
        await asyncio.to_thread(self._close, sync=True)

    def discard(self) -> None:
        """Remove the staging file; nothing to do once it has been moved into place."""
        with self._lock:
            self._discarded = True
            self._buffer.clear()
            self._close_handle()
            self.path.unlink(missing_ok=True)

    async def _flush(self) -> None:
        chunk = bytes(self._buffer)
        self._buffer.clear()
        await asyncio.to_thread(self._write, chunk)

    def _write(self, chunk: bytes) -> None:
        with self._lock:
            if self._discarded:
                return
            if self._handle is None:
                _private_folder(self.path.parent)
                descriptor = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                self._handle = os.fdopen(descriptor, "wb")
            self._handle.write(chunk)

    def _close(self, sync: bool) -> None:
        with self._lock:
            if sync and self._handle is not None:
                self._handle.flush()
                os.fsync(self._handle.fileno())
            self._close_handle()

    def _close_handle(self) -> None:
        handle, self._handle = self._handle, None
        if handle is not None:
            handle.close()


class FileStore:
    def __init__(self, engine: Engine, root: Path, clock: Callable[[], datetime]) -> None:
        self.engine = engine
        self.root = root
        self.clock = clock
        self._staging_swept = False

    def stage(self, workspace: str) -> Staged:
        """Somewhere to write a new file of `workspace`; pass it to `create`, then `discard` it."""
        return Staged(self.root / _folder(workspace))

    async def create(
        self,
        workspace: str,
        staged: Staged,
        filename: str,
        mime_type: str,
        *,
        quota: int | None = None,
        expires_in: timedelta | None = None,
        downloadable: bool = False,
    ) -> FileRecord:
        """The staged bytes as a new file, unless they would take the workspace past `quota` bytes
        (`StorageQuotaExceeded`); it expires `expires_in` after now, if given. The caller still
        `discard`s `staged`, whatever happens."""
        await staged.finish()
        now = self.clock()
        expires_at = None if expires_in is None else now + expires_in
        record = FileRecord(
            new_id("file"), workspace, filename, mime_type, staged.size, now, downloadable, expires_at
        )
        await asyncio.to_thread(self._create, record, staged.path, quota)
        return record

    async def add(
        self,
        workspace: str,
        filename: str,
        mime_type: str,
        data: bytes,
        *,
        expires_in: timedelta | None = None,
    ) -> FileRecord:
        """A file Sijo produced (code execution's outputs): downloadable, outside any quota."""
        staged = self.stage(workspace)
        try:
            await staged.write(data)
            return await self.create(
                workspace, staged, filename, mime_type, expires_in=expires_in, downloadable=True
            )
        finally:
            staged.discard()

    async def get(self, workspace: str, file_id: str) -> FileRecord | None:
        row = await asyncio.to_thread(self._row, workspace, file_id)
        return None if row is None else _record(row)

    async def read(self, workspace: str, file_id: str) -> StoredFile | None:
        """A file's metadata and bytes, or None where the workspace has no such file."""
        return await asyncio.to_thread(self._read, workspace, file_id)

    async def open(self, workspace: str, file_id: str) -> tuple[FileRecord, BinaryIO] | None:
        """A file's metadata and its bytes opened for reading (the caller closes them)."""
        return await asyncio.to_thread(self._open, workspace, file_id)

    async def page(
        self, workspace: str, limit: int, *, after: Position | None = None, before: Position | None = None
    ) -> FilePage:
        """Up to `limit` files, newest first: the first ones, those right after `after`, or those
        right before `before`."""
        return await asyncio.to_thread(self._page, workspace, limit, after, before)

    async def many(self, workspace: str, file_ids: list[str]) -> list[FileRecord]:
        """Those of `file_ids` the workspace has, newest first."""
        return await asyncio.to_thread(self._many, workspace, file_ids)

    async def delete(self, workspace: str, file_id: str) -> bool:
        return await asyncio.to_thread(self._delete, workspace, file_id)

    async def used_bytes(self, workspace: str) -> int:
        return await asyncio.to_thread(self._used_bytes, workspace)

    async def sweep(self) -> int:
        """Delete expired files (and, once per process, staging files a dead process left);
        return how many files went."""
        return await asyncio.to_thread(self._sweep)

    # --- on a worker thread ----------------------------------------------------------------------

    def _create(self, record: FileRecord, staged: Path, quota: int | None) -> None:
        key = f"{_folder(record.workspace)}/{record.id}"
        final = self.root / key
        os.replace(staged, final)
        try:
            with self.engine.begin() as connection:
                _serialize(connection, record.workspace)
                # Inserted first, then summed: the insert takes SQLite's write lock, so two uploads
                # at once cannot both fit in the room that only one of them has.
                connection.execute(
                    insert(files).values(
                        id=record.id,
                        workspace=record.workspace,
                        filename=record.filename,
                        mime_type=record.mime_type,
                        size_bytes=record.size_bytes,
                        created_at=record.created_at,
                        downloadable=record.downloadable,
                        storage_key=key,
                        expires_at=record.expires_at,
                    )
                )
                if quota is not None:
                    used = _used(connection, record.workspace, record.created_at)
                    if used > quota:
                        raise StorageQuotaExceeded(used - record.size_bytes, quota)
        except BaseException:
            final.unlink(missing_ok=True)
            raise

    def _row(self, workspace: str, file_id: str) -> Row[Any] | None:
        with self.engine.connect() as connection:
            return connection.execute(
                select(files).where(
                    files.c.id == file_id, files.c.workspace == workspace, _alive(self.clock())
                )
            ).first()

    def _read(self, workspace: str, file_id: str) -> StoredFile | None:
        row = self._row(workspace, file_id)
        if row is None:
            return None
        try:
            data = (self.root / row.storage_key).read_bytes()
        except FileNotFoundError:  # deleted since its row was read
            return None
        return StoredFile(row.id, row.filename, row.mime_type, row.size_bytes, data)

    def _open(self, workspace: str, file_id: str) -> tuple[FileRecord, BinaryIO] | None:
        row = self._row(workspace, file_id)
        if row is None:
            return None
        try:
            return _record(row), (self.root / row.storage_key).open("rb")
        except FileNotFoundError:
            return None

    def _page(self, workspace: str, limit: int, after: Position | None, before: Position | None) -> FilePage:
        query = select(files).where(files.c.workspace == workspace, _alive(self.clock()))
        if before is not None:
            query = query.where(_newer(before)).order_by(files.c.created_at, files.c.id)
        else:
            if after is not None:
                query = query.where(_older(after))
            query = query.order_by(files.c.created_at.desc(), files.c.id.desc())
        with self.engine.connect() as connection:
            rows = list(connection.execute(query.limit(limit + 1)))
        found = [_record(row) for row in rows[:limit]]
        if before is not None:
            found.reverse()
        return FilePage(found, len(rows) > limit)

    def _many(self, workspace: str, file_ids: list[str]) -> list[FileRecord]:
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(files)
                .where(files.c.workspace == workspace, files.c.id.in_(file_ids), _alive(self.clock()))
                .order_by(files.c.created_at.desc(), files.c.id.desc())
            )
            return [_record(row) for row in rows]

    def _delete(self, workspace: str, file_id: str) -> bool:
        with self.engine.begin() as connection:
            key = connection.execute(
                select(files.c.storage_key).where(
                    files.c.id == file_id, files.c.workspace == workspace, _alive(self.clock())
                )
            ).scalar()
            if key is None:
                return False
            connection.execute(delete(files).where(files.c.id == file_id))
        self._unlink(key)
        return True

    def _used_bytes(self, workspace: str) -> int:
        with self.engine.connect() as connection:
            return _used(connection, workspace, self.clock())

    def _sweep(self) -> int:
        with self.engine.begin() as connection:
            rows = connection.execute(
                select(files.c.id, files.c.storage_key).where(files.c.expires_at <= self.clock()).limit(1000)
            ).all()
            if rows:
                connection.execute(delete(files).where(files.c.id.in_([row.id for row in rows])))
        for row in rows:
            self._unlink(row.storage_key)
        if not self._staging_swept:
            self._staging_swept = True
            self._sweep_staging()
        return len(rows)

    def _sweep_staging(self) -> None:
        cutoff = time.time() - STALE_STAGING_SECONDS
        for path in self.root.glob(f"*/{STAGING_PREFIX}*"):
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink()
            except OSError:
                pass  # gone already, or another process's to remove

    def _unlink(self, key: str) -> None:
        try:
            (self.root / key).unlink(missing_ok=True)
        except OSError:
            # The row is gone, so the file is not visible; its bytes stay until removed by hand.
            logger.exception("could not remove the bytes of a deleted file at %s", self.root / key)


def _folder(workspace: str) -> str:
    """The workspace's folder name: itself where it is a plain name ("default", "wrkspc_…", the
    config keys' "cfg-…"), else a digest of it, so that no name can point outside the root."""
    if _SAFE_FOLDER.fullmatch(workspace):
        return workspace
    return "ws-" + hashlib.sha256(workspace.encode("utf-8")).hexdigest()[:32]


def _private_folder(folder: Path) -> None:
    """The folder and its parent (the files root) made private, as the database is (store/db.py)."""
    folder.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder.mkdir(mode=0o700, exist_ok=True)


def _serialize(connection: Connection, workspace: str) -> None:
    """On PostgreSQL, uploads to one workspace commit one at a time, so each quota sum sees the last."""
    if connection.dialect.name == "postgresql":
        key = int.from_bytes(hashlib.sha256(workspace.encode("utf-8")).digest()[:4], "big", signed=True)
        connection.execute(text("SELECT pg_advisory_xact_lock(7235002, :key)"), {"key": key})


def _used(connection: Connection, workspace: str, now: datetime) -> int:
    total = connection.execute(
        select(func.coalesce(func.sum(files.c.size_bytes), 0)).where(
            files.c.workspace == workspace, _alive(now)
        )
    ).scalar()
    return int(total or 0)


def _alive(now: datetime) -> ColumnElement[bool]:
    return or_(files.c.expires_at.is_(None), files.c.expires_at > now)


def _older(position: Position) -> ColumnElement[bool]:
    return or_(
        files.c.created_at < position.created_at,
        and_(files.c.created_at == position.created_at, files.c.id < position.id),
    )


def _newer(position: Position) -> ColumnElement[bool]:
    return or_(
        files.c.created_at > position.created_at,
        and_(files.c.created_at == position.created_at, files.c.id > position.id),
    )


def _record(row: Row[Any]) -> FileRecord:
    return FileRecord(
        row.id,
        row.workspace,
        row.filename,
        row.mime_type,
        row.size_bytes,
        row.created_at,
        bool(row.downloadable),
        row.expires_at,
    )
