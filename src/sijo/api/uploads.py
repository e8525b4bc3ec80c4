"""Reading an upload's multipart/form-data body (the Files API, reference §13) as it arrives.

This module owns the form's parsing (python-multipart's callbacks, turned into events that are
awaited), the staging of the `file` part's bytes to disk (a `Staged` file from store/files.py), and
the limits held while reading: the file's size, the workspace's quota, the whole form's size, part
headers and the small `expires_in_seconds` field. What the form's values mean (filename, mime type,
expiry) is the route's business (api/files.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from fastapi import Request
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect

from sijo.api.body import ClientDisconnected, declared_length
from sijo.config import FilesConfig
from sijo.errors import InvalidRequestError, PermissionDeniedError, RequestTooLargeError, shown
from sijo.store.files import Staged

# What a form may carry besides the file's bytes: part headers, boundaries, `expires_in_seconds`.
FORM_OVERHEAD = 64 * 1024
_HEADERS_LIMIT = 8 * 1024
_FIELD_LIMIT = 64


@dataclass
class UploadForm:
    """What an upload form said besides the file's bytes."""

    has_file: bool = False
    filename: str | None = None  # the `file` part's filename parameter, as sent
    content_type: str = ""  # the `file` part's Content-Type
    expires_in_seconds: str | None = None


async def read_form(request: Request, staged: Staged, limits: FilesConfig, used: int) -> UploadForm:
    """The body, read as it arrives: the `file` part's bytes go to `staged`, held to the file limit
    and to the workspace's quota (`used` is what its other files hold); the whole form is held to
    the file limit too. The caller discards `staged` whatever happens."""
    reader = _FormReader(staged, limits, used)
    limit = limits.max_file_bytes + FORM_OVERHEAD
    declared = declared_length(request)
    if declared is not None and declared > limit:
        raise _too_large(limits.max_file_bytes)
    events: list[tuple[str, bytes]] = []
    parser = MultipartParser(_boundary(request), _callbacks(events))
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > limit:
                raise _too_large(limits.max_file_bytes)
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


def over_quota(used: int, quota: int) -> PermissionDeniedError:
    return PermissionDeniedError(
        f"file: this upload would take the workspace past its {_amount(quota)} storage limit ({used} "
        "bytes are in use by its files); delete files to make room"
    )


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
            raise over_quota(self.used, self.limits.workspace_quota_bytes)
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
