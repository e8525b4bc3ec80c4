"""Reading a JSON body: size limit (413), JSON syntax, and pydantic validation → a 400 naming the field.

A large body is validated on a worker thread and, for a request with `messages`, piece by piece
(`large_body.py`), so that no request stalls the others while it is parsed. A client that hangs up
mid-upload ends its request quietly (`ClientDisconnected`).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError
from starlette.requests import ClientDisconnect

from sijo.api.large_body import validate_large
from sijo.errors import InvalidRequestError, RequestTooLargeError
from sijo.protocol.validation import describe_errors

ModelT = TypeVar("ModelT", bound=BaseModel)
_TOO_LARGE = "Request exceeds the maximum allowed number of bytes."
# Bodies up to this size are validated on the event loop: it takes well under a millisecond.
INLINE_BYTES = 64 * 1024


class ClientDisconnected(Exception):
    """The client went away before its response was ready (mid-upload, or mid-generation)."""


def declared_length(request: Request) -> int | None:
    """The body's size as its Content-Length declares it (None: not declared)."""
    declared = request.headers.get("content-length", "")
    return int(declared) if declared.isdigit() else None


async def read_body(request: Request, limit: int) -> bytes:
    declared = declared_length(request)
    if declared is not None and declared > limit:
        raise RequestTooLargeError(_TOO_LARGE)
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise RequestTooLargeError(_TOO_LARGE)
    except ClientDisconnect:
        raise ClientDisconnected(f"after {len(body)} bytes of the body") from None
    return bytes(body)


async def parse_body(request: Request, model: type[ModelT], limit: int) -> ModelT:
    """Strict JSON validation: no type coercion ("10" is not an int), nesting and escapes checked."""
    body = await read_body(request, limit)
    if len(body) <= INLINE_BYTES:
        return validate_body(body, model)
    return await asyncio.to_thread(validate_in_pieces, body, model)


def validate_in_pieces(body: bytes, model: type[ModelT]) -> ModelT:
    """`validate_body`, in pieces where the model has `messages` to split along."""
    if "messages" not in model.model_fields:
        return validate_body(body, model)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidRequestError(f"request body: Invalid JSON: invalid UTF-8 at byte {exc.start}") from None
    return validate_large(text, model)


def validate_body(body: bytes, model: type[ModelT]) -> ModelT:
    try:
        return model.model_validate_json(body, strict=True)
    except ValidationError as exc:
        raise InvalidRequestError(describe_errors(exc.errors(), _navigable(body))) from None


def _navigable(body: bytes) -> Any:
    """The body as Python data, only to turn an error's location into a field path."""
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return None
