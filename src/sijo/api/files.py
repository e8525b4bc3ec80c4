"""The Files API (reference §13): upload, list, metadata, content and delete, within the caller's
workspace.

The routes answer with or without `anthropic-beta: files-api-2025-04-14` (and `?beta=true`), as the
beta and GA clients both call them. An upload is a multipart/form-data body read as it arrives: the
`file` part streams to a staging file on disk (store/files.py) while its size is held to the file
limit and the workspace's quota, so no upload is ever held whole in memory, and every refusal
removes what was staged. A list answers both pagination styles at once: `limit` with `after_id` |
`before_id` (the beta "Page"), and `limit` with an opaque `page` token (the GA "PageCursor").
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import mimetypes
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any, BinaryIO
from urllib.parse import quote, unquote

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect

from sijo.api.auth import Authenticated, Caller
from sijo.api.body import ClientDisconnected, declared_length
from sijo.api.deps import LimiterDep, SettingsDep
from sijo.api.openapi import REF, answers
from sijo.config import FilesConfig
from sijo.errors import (
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    RequestTooLargeError,
    shown,
)
from sijo.protocol.base import rfc3339
from sijo.protocol.files import (
    MAX_EXPIRES_IN,
    MIN_EXPIRES_IN,
    DeletedFile,
    FileMetadata,
    FileMetadataPage,
    FileUploadParams,
)
from sijo.store.files import FileRecord, FileStore, Position, Staged, StorageQuotaExceeded

router = APIRouter()

_FILE_ID = re.compile(r"file_[A-Za-z0-9]{1,59}")
_MIME_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}")
# The characters the API refuses in a filename (reference §13: "Invalid filename").
_FORBIDDEN = frozenset('<>:"|?*\\/') | frozenset(chr(c) for c in range(32))
MAX_FILENAME = 255
MAX_IDS = 100
# What a form may carry besides the file's bytes: part headers, boundaries, `expires_in_seconds`.
FORM_OVERHEAD = 64 * 1024
_HEADERS_LIMIT = 8 * 1024
_FIELD_LIMIT = 64
_PAGE = "page_"


def _store(request: Request) -> FileStore:
    store: FileStore = request.app.state.files
    return store


FilesDep = Annotated[FileStore, Depends(_store)]


async def _caller(caller: Authenticated, request: Request) -> Caller:
    """The caller, whose `anthropic-workspace-id` (the SDKs' `workspace_id`), if sent, must name the
    key's own workspace: it selects one for credentials of several, which Sijo's keys never are."""
    chosen = request.headers.get("anthropic-workspace-id")
    own = caller.account.workspace_id
    if chosen and own is not None and chosen != own:
        raise PermissionDeniedError(
            f"anthropic-workspace-id: this API key belongs to workspace {own}, not {shown(chosen)}"
        )
    return caller


FilesCaller = Annotated[Caller, Depends(_caller)]


def _wire(record: FileRecord) -> FileMetadata:
    return FileMetadata(
        id=record.id,
        filename=record.filename,
        mime_type=record.mime_type,
        size_bytes=record.size_bytes,
        created_at=rfc3339(record.created_at),
        downloadable=record.downloadable,
        expires_at=rfc3339(record.expires_at) if record.expires_at else None,
    )


def _not_found(file_id: str) -> NotFoundError:
    # The API's own words (reference §13), prefixed with the field like every other refusal.
    return NotFoundError(f"file_id: File not found: {shown(file_id)}")


async def _owned(store: FileStore, workspace: str, file_id: str) -> FileRecord:
    record = await store.get(workspace, file_id) if _FILE_ID.fullmatch(file_id) else None
    if record is None:  # another workspace's file is not found either
        raise _not_found(file_id)
    return record


def _upload_body() -> dict[str, Any]:
    schema = FileUploadParams.model_json_schema(ref_template=REF)
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}}}


# --- upload ------------------------------------------------------------------------------------------


@dataclass
class UploadForm:
    """What an upload form said besides the file's bytes."""

    has_file: bool = False
    filename: str | None = None  # the `file` part's filename parameter, as sent
    content_type: str = ""  # the `file` part's Content-Type
    expires_in_seconds: str | None = None


class _FormReader:
    """Takes a multipart/form-data body's events (python-multipart's callbacks) and writes the
    `file` part's bytes to `staged`, keeping the small `expires_in_seconds` field in memory."""

    def __init__(self, staged: Staged, limits: FilesConfig, used: int) -> None:
        self.staged = staged
        self.limits = limits
        self.used = used  # bytes the workspace's other files hold
        self.form = UploadForm()
        self.ended = False
        self._name = ""
        self._field = b""
        self._value = b""
        self._headers: dict[bytes, bytes] = {}
        self._header_bytes = 0
        self._text = bytearray()

    async def take(self, events: list[tuple[str, bytes]]) -> None:
        for kind, data in events:
            if kind == "part_data":
                await self._data(data)
            elif kind in ("header_field", "header_value"):
                self._header_piece(kind, data)
            elif kind == "header_end":
                self._headers[self._field.strip().lower()] = self._value.strip()
                self._field = self._value = b""
            elif kind == "headers_finished":
                self._begin_part()
            elif kind == "part_end":
                self._end_part()
            elif kind == "end":
                self.ended = True

    def _header_piece(self, kind: str, data: bytes) -> None:
        self._header_bytes += len(data)
        if self._header_bytes > _HEADERS_LIMIT:
            raise InvalidRequestError("file: a part of the multipart/form-data body has too large headers")
        if kind == "header_field":
            self._field += data
        else:
            self._value += data

    def _begin_part(self) -> None:
        disposition, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        if disposition != b"form-data" or b"name" not in options:
            raise InvalidRequestError(
                "file: each part of the body needs Content-Disposition: form-data; name=..."
            )
        self._name = options[b"name"].decode("utf-8", "replace")
        if self._name == "file":
            if self.form.has_file:
                raise InvalidRequestError(
                    "file: an upload carries one file; send each file in its own request"
                )
            self.form.has_file = True
            self.form.filename = _part_filename(self._headers.get(b"content-disposition", b""), options)
            self.form.content_type = self._headers.get(b"content-type", b"").decode("latin-1")
        elif self._name == "expires_in_seconds":
            if self.form.expires_in_seconds is not None:
                raise InvalidRequestError("expires_in_seconds: given twice")
        else:
            raise InvalidRequestError(
                f"{shown(self._name)}: Extra inputs are not permitted "
                "(the form takes file and expires_in_seconds)"
            )
        self._headers = {}
        self._header_bytes = 0
        self._text.clear()

    async def _data(self, data: bytes) -> None:
        if self._name != "file":
            self._text += data
            if len(self._text) > _FIELD_LIMIT:
                raise InvalidRequestError(f"{self._name}: the value is too long")
            return
        size = self.staged.size + len(data)
        if size > self.limits.max_file_bytes:
            raise _too_large(self.limits.max_file_bytes)
        if self.used + size > self.limits.workspace_quota_bytes:
            raise _over_quota(self.used, self.limits.workspace_quota_bytes)
        await self.staged.write(data)

    def _end_part(self) -> None:
        if self._name == "expires_in_seconds":
            self.form.expires_in_seconds = self._text.decode("latin-1")


def _part_filename(disposition: bytes, options: dict[bytes, bytes]) -> str | None:
    """The part's `filename*` (RFC 6266 prefers it; python-multipart drops it), else `filename`."""
    extended = re.search(rb"filename\*\s*=\s*([^;]+)", disposition)
    if extended is not None:
        charset, _, rest = extended.group(1).strip().decode("latin-1").partition("'")
        try:
            return unquote(rest.partition("'")[2], encoding=charset or "utf-8", errors="replace")
        except LookupError:  # an unknown charset
            pass
    raw = options.get(b"filename")
    return None if raw is None else raw.decode("utf-8", "replace")


def _too_large(limit: int) -> RequestTooLargeError:
    return RequestTooLargeError(f"file: File exceeds the {_amount(limit)} limit")


def _over_quota(used: int, quota: int) -> PermissionDeniedError:
    return PermissionDeniedError(
        f"file: this upload would take the workspace past its {_amount(quota)} storage limit ({used} "
        "bytes are in use by its files); delete files to make room"
    )


def _amount(size: int) -> str:
    """500 MB, 100 GB: a limit as the API words it (its MB are 1024² bytes), or exact bytes."""
    for unit, scale in (("GB", 1024**3), ("MB", 1024**2), ("KB", 1024)):
        if size >= scale and size % scale == 0:
            return f"{size // scale} {unit}"
    return f"{size} bytes"


def _callbacks(events: list[tuple[str, bytes]]) -> Any:
    """python-multipart's callbacks, each recording its event for `_FormReader.take` (which awaits
    the disk: the callbacks cannot)."""

    def piece(kind: str) -> Callable[[bytes, int, int], None]:
        return lambda data, start, end: events.append((kind, data[start:end]))

    def mark(kind: str) -> Callable[[], None]:
        return lambda: events.append((kind, b""))

    return {
        "on_part_begin": mark("part_begin"),
        "on_part_data": piece("part_data"),
        "on_part_end": mark("part_end"),
        "on_header_field": piece("header_field"),
        "on_header_value": piece("header_value"),
        "on_header_end": mark("header_end"),
        "on_headers_finished": mark("headers_finished"),
        "on_end": mark("end"),
    }


def _boundary(request: Request) -> bytes:
    content_type, options = parse_options_header(request.headers.get("content-type", ""))
    if content_type != b"multipart/form-data" or not options.get(b"boundary"):
        raise InvalidRequestError(
            "file: the body must be multipart/form-data with a file part "
            f"(Content-Type was {shown(request.headers.get('content-type', 'absent'))!r})"
        )
    return options[b"boundary"]


async def _read_form(request: Request, reader: _FormReader) -> UploadForm:
    """The body, fed to the reader as it arrives; the whole form is held to the file limit."""
    limit = reader.limits.max_file_bytes + FORM_OVERHEAD
    declared = declared_length(request)
    if declared is not None and declared > limit:
        raise _too_large(reader.limits.max_file_bytes)
    events: list[tuple[str, bytes]] = []
    parser = MultipartParser(_boundary(request), _callbacks(events))
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > limit:
                raise _too_large(reader.limits.max_file_bytes)
            parser.write(chunk)
            await reader.take(events)
            events.clear()
        parser.finalize()
        await reader.take(events)
    except ClientDisconnect:
        raise ClientDisconnected(f"after {received} bytes of an upload") from None
    except MultipartParseError as exc:
        raise InvalidRequestError(f"file: the multipart/form-data body is malformed ({exc})") from None
    if not reader.ended:
        raise InvalidRequestError("file: the multipart/form-data body ends before its closing boundary")
    return reader.form


def _mime_type(content_type: str, filename: str) -> str:
    """The part's Content-Type, else one guessed from the filename (a generic
    application/octet-stream, which clients send for any file, counts as none)."""
    sent = content_type.split(";", 1)[0].strip().lower()
    if sent and not _MIME_TYPE.fullmatch(sent):
        raise InvalidRequestError(f"file: invalid content type {shown(content_type)!r}")
    if sent and sent != "application/octet-stream":
        return sent
    guessed = mimetypes.guess_type(filename, strict=False)[0] if filename else None
    return guessed or "application/octet-stream"


def _final_component(sent: str | None) -> str:
    """The final path component of the part's filename (the GA API's rule; it may be empty)."""
    return (sent or "").replace("\\", "/").rsplit("/", 1)[-1]


def _filename(name: str, mime_type: str) -> str:
    """`name`, or `unnamed` plus the mime type's extension when the client gave none; refused when
    the API would refuse it (reference §13: 1 to 255 characters, none of its forbidden ones)."""
    if not name:
        known = mime_type != "application/octet-stream"  # which says only that the type is unknown
        return "unnamed" + ((known and mimetypes.guess_extension(mime_type, strict=False)) or "")
    if len(name) > MAX_FILENAME or not _FORBIDDEN.isdisjoint(name):
        raise InvalidRequestError(
            f"file: invalid filename {shown(name)!r}: it must be 1 to {MAX_FILENAME} characters, none of "
            '< > : " | ? * \\ / or control characters'
        )
    return name


def _expires_in(raw: str | None) -> int | None:
    if raw is None:
        return None
    text = raw.strip()
    if not re.fullmatch(r"[0-9]{1,9}", text) or not MIN_EXPIRES_IN <= int(text) <= MAX_EXPIRES_IN:
        raise InvalidRequestError(
            f"expires_in_seconds: must be an integer from {MIN_EXPIRES_IN} to {MAX_EXPIRES_IN}, "
            f"got {shown(raw)!r}"
        )
    return int(text)


@router.post("/v1/files", openapi_extra=_upload_body(), responses=answers(FileMetadata))
async def upload_file(
    request: Request, caller: FilesCaller, store: FilesDep, settings: SettingsDep, limiter: LimiterDep
) -> JSONResponse:
    state = await limiter.admit(caller.rate_key, caller.limits, 0)  # an upload is one request
    request.state.ratelimit_headers = state.headers()
    await store.sweep()
    quota = settings.files.workspace_quota_bytes
    used = await store.used_bytes(caller.workspace)
    if used >= quota:
        raise _over_quota(used, quota)
    staged = store.stage(caller.workspace)
    try:
        form = await _read_form(request, _FormReader(staged, settings.files, used))
        if not form.has_file:
            raise InvalidRequestError("file: Field required (a multipart/form-data part named file)")
        if staged.size == 0:
            raise InvalidRequestError("file: the file is empty")
        expires_in = _expires_in(form.expires_in_seconds)
        name = _final_component(form.filename)
        mime_type = _mime_type(form.content_type, name)
        record = await store.create(
            caller.workspace,
            staged,
            _filename(name, mime_type),
            mime_type,
            quota=quota,
            expires_in=None if expires_in is None else timedelta(seconds=expires_in),
        )
    except StorageQuotaExceeded as exc:
        raise _over_quota(exc.used, exc.quota) from None
    finally:
        staged.discard()
    return JSONResponse(_wire(record).model_dump(mode="json"))


# --- list, retrieve, download, delete ---------------------------------------------------------------


def _page_token(position: Position) -> str:
    raw = f"{position.created_at.isoformat()}|{position.id}".encode()
    return _PAGE + base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _page_position(token: str) -> Position:
    try:
        if not token.startswith(_PAGE):
            raise ValueError(token)
        body = token.removeprefix(_PAGE)
        moment, file_id = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode().split("|")
        created_at = datetime.fromisoformat(moment)
        if created_at.tzinfo is None or not _FILE_ID.fullmatch(file_id):
            raise ValueError(token)
    except (ValueError, binascii.Error):
        raise InvalidRequestError(f"page: invalid page token {shown(token)!r}") from None
    return Position(created_at, file_id)


async def _cursor(store: FileStore, workspace: str, file_id: str | None, field: str) -> Position | None:
    if file_id is None:
        return None
    record = await store.get(workspace, file_id) if _FILE_ID.fullmatch(file_id) else None
    if record is None:
        raise InvalidRequestError(f"{field}: unknown file id {shown(file_id)}")
    return record.position


def _requested_ids(request: Request) -> list[str] | None:
    """`ids` (GA), sent as repeated `ids` or `ids[]` keys or comma-separated; None when absent."""
    given = request.query_params.getlist("ids") + request.query_params.getlist("ids[]")
    if not given:
        return None
    ids = list(dict.fromkeys(i.strip() for value in given for i in value.split(",") if i.strip()))
    if len(ids) > MAX_IDS:
        raise InvalidRequestError(f"ids: at most {MAX_IDS} file ids, got {len(ids)}")
    return ids


@router.get("/v1/files", responses=answers(FileMetadataPage))
async def list_files(
    request: Request,
    caller: FilesCaller,
    store: FilesDep,
    limit: Annotated[int | None, Query(ge=1, le=1000)] = None,
    after_id: str | None = None,
    before_id: str | None = None,
    page: str | None = None,
    scope_id: str | None = None,
) -> JSONResponse:
    await store.sweep()
    ids = _requested_ids(request)
    if ids is not None and (limit, after_id, before_id, page) != (None, None, None, None):
        raise InvalidRequestError("ids: cannot be combined with limit, page, after_id or before_id")
    if page is not None and (after_id is not None or before_id is not None):
        raise InvalidRequestError("page: cannot be combined with after_id or before_id")
    if after_id is not None and before_id is not None:
        raise InvalidRequestError("after_id: cannot be combined with before_id")
    if scope_id is not None:  # a session's files (beta); Sijo has no sessions, so none are scoped
        records, has_more = [], False
    elif ids is not None:
        records, has_more = await store.many(caller.workspace, ids), False
    else:
        after: Position | None = None
        if page is not None:
            after = _page_position(page)
        else:
            after = await _cursor(store, caller.workspace, after_id, "after_id")
        before = await _cursor(store, caller.workspace, before_id, "before_id")
        found = await store.page(caller.workspace, limit or 20, after=after, before=before)
        records, has_more = found.files, found.has_more
    forward = has_more and before_id is None and records
    answer = FileMetadataPage(
        data=[_wire(record) for record in records],
        has_more=has_more,
        first_id=records[0].id if records else None,
        last_id=records[-1].id if records else None,
        next_page=_page_token(records[-1].position) if forward else None,
    )
    return JSONResponse(answer.model_dump(mode="json"))


@router.get("/v1/files/{file_id}", responses=answers(FileMetadata))
async def retrieve_file(file_id: str, caller: FilesCaller, store: FilesDep) -> JSONResponse:
    record = await _owned(store, caller.workspace, file_id)
    return JSONResponse(_wire(record).model_dump(mode="json"))


@router.get(
    "/v1/files/{file_id}/content",
    responses=answers(None, media_type="application/octet-stream", description="The file's bytes"),
)
async def download_file(file_id: str, caller: FilesCaller, store: FilesDep) -> StreamingResponse:
    record = await _owned(store, caller.workspace, file_id)
    if not record.downloadable:
        raise InvalidRequestError(
            f"file_id: File {file_id} is not downloadable: only files Sijo produced can be downloaded, "
            "not uploaded ones"
        )
    opened = await store.open(caller.workspace, file_id)
    if opened is None:  # deleted meanwhile
        raise _not_found(file_id)
    record, handle = opened
    headers = {
        "content-length": str(record.size_bytes),
        "content-disposition": f"attachment; filename*=utf-8''{quote(record.filename)}",
    }
    return StreamingResponse(_chunks(handle), media_type=record.mime_type, headers=headers)


async def _chunks(handle: BinaryIO, size: int = 1024 * 1024) -> AsyncIterator[bytes]:
    try:
        while chunk := await asyncio.to_thread(handle.read, size):
            yield chunk
    finally:
        handle.close()


@router.delete("/v1/files/{file_id}", responses=answers(DeletedFile))
async def delete_file(file_id: str, caller: FilesCaller, store: FilesDep) -> JSONResponse:
    if not (_FILE_ID.fullmatch(file_id) and await store.delete(caller.workspace, file_id)):
        raise _not_found(file_id)
    return JSONResponse(DeletedFile(id=file_id).model_dump(mode="json"))
