"""Reading a JSON body: size limit (413), JSON syntax, and pydantic validation → a 400 naming the field."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError

from sijo.errors import InvalidRequestError, RequestTooLargeError
from sijo.protocol.validation import describe_errors

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
    return validate_body(await read_body(request, limit), model)


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
