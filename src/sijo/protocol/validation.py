"""Pydantic validation errors as the API words them: `path.to.field: message`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sijo.errors import shown

# A whole message is never longer than this, whatever a client's keys and values were.
_MESSAGE_LIMIT = 1000


def describe_errors(errors: Sequence[Any], data: Any) -> str:
    """Pydantic's first, deepest error as `path.to.field: message`, the real API's style."""
    error = max(errors, key=lambda e: len(e["loc"]))
    path = _field_path(tuple(error["loc"]), data)
    message = _message(error)
    if error["type"] == "json_invalid":
        return shown(f"request body: {message}", _MESSAGE_LIMIT)
    return shown(f"{path}: {message}" if path else f"request body: {message}", _MESSAGE_LIMIT)


def _message(error: dict[str, Any]) -> str:
    """Pydantic's message with the client's values in it (an unknown `type` tag, a validator's
    complaint) cut short; the lists of what was expected are the API's own, and stay whole."""
    message = str(error["msg"])
    for key, value in (error.get("ctx") or {}).items():
        text = str(value)
        if not key.startswith("expected") and shown(text) != text:
            message = message.replace(text, shown(text))
    return message


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
        parts.append(shown(part))  # an unknown key is the client's, of any length
    return ".".join(parts)
