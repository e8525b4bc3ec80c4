"""The Files API (reference §13): upload, list, metadata, content and delete, within the caller's
workspace.

The routes answer with or without `anthropic-beta: files-api-2025-04-14` (and `?beta=true`), as the
beta and GA clients both call them. An upload is a multipart/form-data body read as it arrives
(api/uploads.py): the `file` part streams to a staging file on disk (store/files.py) while its size
is held to the file limit and the workspace's quota, so no upload is ever held whole in memory, and
every refusal removes what was staged. A list answers both pagination styles at once: `limit` with
`after_id` | `before_id` (the beta "Page"), and `limit` with an opaque `page` token (the GA
"PageCursor").
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import mimetypes
import re
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Annotated, Any, BinaryIO
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse

from sijo.api.auth import Authenticated, Caller
from sijo.api.deps import FilesDep, LimiterDep, SettingsDep
from sijo.api.openapi import REF, answers
from sijo.api.uploads import over_quota, read_form
from sijo.errors import InvalidRequestError, NotFoundError, PermissionDeniedError, shown
from sijo.protocol.base import rfc3339
from sijo.protocol.files import (
    MAX_EXPIRES_IN,
    MIN_EXPIRES_IN,
    DeletedFile,
    FileMetadata,
    FileMetadataPage,
    FileUploadParams,
)
from sijo.store.files import FileRecord, FileStore, Position, StorageQuotaExceeded

router = APIRouter()

_FILE_ID = re.compile(r"file_[A-Za-z0-9]{1,59}")
_MIME_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}")
# The characters the API refuses in a filename (reference §13: "Invalid filename").
_FORBIDDEN = frozenset('<>:"|?*\\/') | frozenset(chr(c) for c in range(32))
MAX_FILENAME = 255
MAX_IDS = 100
_PAGE = "page_"


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


async def _find(store: FileStore, workspace: str, file_id: str) -> FileRecord | None:
    """The workspace's file `file_id`; None when there is none (or the id is not a file id)."""
    return await store.get(workspace, file_id) if _FILE_ID.fullmatch(file_id) else None


async def _owned(store: FileStore, workspace: str, file_id: str) -> FileRecord:
    record = await _find(store, workspace, file_id)
    if record is None:  # another workspace's file is not found either
        raise _not_found(file_id)
    return record


def _upload_body() -> dict[str, Any]:
    schema = FileUploadParams.model_json_schema(ref_template=REF)
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}}}


# --- upload ------------------------------------------------------------------------------------------


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
        raise over_quota(used, quota)
    staged = store.stage(caller.workspace)
    try:
        form = await read_form(request, staged, settings.files, used)
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
        raise over_quota(exc.used, exc.quota) from None
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
    record = await _find(store, workspace, file_id)
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
