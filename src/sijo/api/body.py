"""Reading a JSON body: size limit (413), JSON syntax, and pydantic validation → a 400 naming the field."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError

from sijo.errors import InvalidRequestError, RequestTooLargeError

ModelT = TypeVar("ModelT", bound=BaseModel)
_TOO_LARGE = "Request exceeds the maximum allowed number of bytes."


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise RequestTooLargeError(_TOO_LARGE)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise RequestTooLargeError(_TOO_LARGE)
    return bytes(body)


async def parse_body(request: Request, model: type[ModelT], limit: int) -> ModelT:
    """Strict JSON validation: no type coercion ("10" is not an int), nesting and escapes checked."""
    body = await read_body(request, limit)
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


def describe_errors(errors: Sequence[Any], data: Any) -> str:
    """Pydantic's first, deepest error as `path.to.field: message`, the real API's style."""
    error = max(errors, key=lambda e: len(e["loc"]))
    path = _field_path(tuple(error["loc"]), data)
    message = str(error["msg"])
    if error["type"] == "json_invalid":
        return f"request body: {message}"
    return f"{path}: {message}" if path else f"request body: {message}"


def _field_path(loc: tuple[Any, ...], data: Any) -> str:
    """Drop the union-member and tag names pydantic puts in `loc`: keep only real keys and indexes."""
    parts: list[str] = []
    current = data
    for position, part in enumerate(loc):
        last = position == len(loc) - 1
        if not last and isinstance(current, dict) and current.get("type") == part:
            continue  # a discriminated union's tag, not a key
        if isinstance(current, dict) and part in current:
            current = current[part]
        elif isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current):
            current = current[part]
        elif not (last and (current is None or isinstance(current, dict))):
            continue  # a union member's name or FastAPI's prefix; a missing key comes last
        parts.append(str(part))
    return ".".join(parts)
