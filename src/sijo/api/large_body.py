"""Validating a large request body piece by piece, so that it never holds up other requests.

pydantic and the `json` module hold the GIL for the whole of one call: validating 50,000 messages in
one call stops every other request for about a second, on a worker thread as on the event loop. So
a large body is split along the paths where requests grow — `messages`, each message's `content`,
`system` and `tools` — and each piece is validated on its own (`validate_json`, the same strict
JSON validation as a small body gets). Between pieces the interpreter can switch threads, so the
event loop, while this runs on a worker thread, waits a few milliseconds at most.

What is left of the body with those lists emptied (the envelope) is validated in one call too, and
the validated pieces are put back into it. Errors name the field as they do for a small body.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from annotated_types import MaxLen
from pydantic import BaseModel, TypeAdapter, ValidationError

from sijo.errors import InvalidRequestError
from sijo.protocol.content import ContentBlockParam
from sijo.protocol.params import MessageParam
from sijo.protocol.validation import describe_errors

ModelT = TypeVar("ModelT", bound=BaseModel)

_SPLIT_ITEMS = 64  # a message's content is split when it has more blocks than this
_WHITESPACE = re.compile(r"[ \t\n\r]*")
_LISTS = ("messages", "system", "tools")
_BLOCK: TypeAdapter[Any] = TypeAdapter(ContentBlockParam)
_MESSAGE: TypeAdapter[Any] = TypeAdapter(MessageParam)
_DECODER = json.JSONDecoder()
Validate = Callable[[str], Any]


class InvalidJson(Exception):
    """The body is not valid JSON; `message` says what and where, as pydantic's errors do."""

    def __init__(self, reason: str, text: str, position: int) -> None:
        line = text.count("\n", 0, position) + 1
        column = position - text.rfind("\n", 0, position)
        super().__init__(f"{reason} at line {line} column {column}")


@dataclass(slots=True)
class _Item:
    start: int
    end: int
    content: _Span | None = None  # a message's `content` list


@dataclass(slots=True)
class _Span:
    """Where a list sits in the text, and where each of its items does."""

    start: int
    end: int
    items: list[_Item] = field(default_factory=list)


def validate_large(text: str, model: type[ModelT]) -> ModelT:
    """`model` (a request with `messages`) from `text`, validated piece by piece.

    Raises `InvalidRequestError` naming the field, as `model_validate_json` would."""
    if not text[_skip(text, 0) : _skip(text, 0) + 1] == "{":
        raise InvalidRequestError("request body: Input should be an object")
    try:
        spans = _top_level_lists(text)
    except InvalidJson as exc:
        raise InvalidRequestError(f"request body: Invalid JSON: {exc}") from None
    pieces: dict[str, list[Any]] = {}
    for name, span in spans.items():
        most = _max_length(model, name)  # the list's own limit, checked here for the split list
        if most is not None and len(span.items) > most:
            raise InvalidRequestError(
                f"{name}: List should have at most {most} items after validation, not {len(span.items)}"
            )
        if name == "messages":
            pieces[name] = [_message(text, item, i) for i, item in enumerate(span.items)]
        else:
            validate = _item_validator(model, name)
            pieces[name] = [_piece(validate, text, item, (name, i)) for i, item in enumerate(span.items)]
    envelope = _without(text, list(spans.values()))
    whole = _piece(_strict(model), envelope, _Item(0, len(envelope)), ())
    return whole.model_copy(update=pieces)  # type: ignore[no-any-return]


def _message(text: str, item: _Item, index: int) -> MessageParam:
    content = item.content
    if content is None or len(content.items) <= _SPLIT_ITEMS:
        result: MessageParam = _piece(_strict(_MESSAGE), text, item, ("messages", index))
        return result
    blocks = [
        _piece(_strict(_BLOCK), text, block, ("messages", index, "content", j))
        for j, block in enumerate(content.items)
    ]
    emptied = _Span(content.start - item.start, content.end - item.start)
    shell = _without(text[item.start : item.end], [emptied])
    message: MessageParam = _piece(_strict(_MESSAGE), shell, _Item(0, len(shell)), ("messages", index))
    return message.model_copy(update={"content": blocks})


def _strict(validator: type[BaseModel] | TypeAdapter[Any]) -> Validate:
    if isinstance(validator, TypeAdapter):
        return lambda piece: validator.validate_json(piece, strict=True)
    return lambda piece: validator.model_validate_json(piece, strict=True)


def _piece(validate: Validate, text: str, item: _Item, where: tuple[Any, ...]) -> Any:
    piece = text[item.start : item.end]
    try:
        return validate(piece)
    except ValidationError as exc:
        errors = [{**error, "loc": (*where, *error["loc"])} for error in exc.errors()]
        raise InvalidRequestError(describe_errors(errors, _stub(where, piece))) from None


def _stub(where: tuple[Any, ...], piece: str) -> Any:
    """The body as far as an error's path needs it: the piece, at its place."""
    try:
        data: Any = json.loads(piece)
    except (ValueError, RecursionError):
        data = None
    for part in reversed(where):
        data = {part: data}
    return data


_ITEM_VALIDATORS: dict[tuple[type[BaseModel], str], Validate] = {}


def _item_validator(model: type[BaseModel], name: str) -> Validate:
    """A list item's validator, from the model's own annotation (`str | list[X] | None` → X)."""
    key = (model, name)
    if key not in _ITEM_VALIDATORS:
        annotation = model.model_fields[name].annotation
        members = [m for m in getattr(annotation, "__args__", ()) if getattr(m, "__origin__", None) is list]
        _ITEM_VALIDATORS[key] = _strict(TypeAdapter(members[0].__args__[0]))
    return _ITEM_VALIDATORS[key]


def _max_length(model: type[BaseModel], name: str) -> int | None:
    for constraint in model.model_fields[name].metadata:
        if isinstance(constraint, MaxLen):
            return int(constraint.max_length)
    return None


def _without(text: str, spans: list[_Span]) -> str:
    """`text` with each span's list emptied (`[]`)."""
    parts: list[str] = []
    position = 0
    for span in sorted(spans, key=lambda s: s.start):
        parts += [text[position : span.start], "[]"]
        position = span.end
    parts.append(text[position:])
    return "".join(parts)


# --- finding the lists ---------------------------------------------------------------------------


def _top_level_lists(text: str) -> dict[str, _Span]:
    spans: dict[str, _Span] = {}

    def member(key: str, at: int) -> int:
        spans.pop(key, None)  # a later duplicate key wins, as in any JSON parser
        if key in _LISTS and text.startswith("[", at):
            spans[key] = _list(text, at, _message_item if key == "messages" else _plain_item)
            return spans[key].end
        return _value_end(text, at)

    end = _walk_object(text, _skip(text, 0), member)
    if _skip(text, end) != len(text):
        raise InvalidJson("trailing characters", text, _skip(text, end))
    return spans


def _plain_item(text: str, i: int) -> _Item:
    return _Item(i, _value_end(text, i))


def _message_item(text: str, i: int) -> _Item:
    """A message, walked rather than parsed whole, so that a long `content` list is found."""
    if not text.startswith("{", i):
        return _plain_item(text, i)
    item = _Item(i, i)

    def member(key: str, at: int) -> int:
        if key == "content":
            item.content = _list(text, at, _plain_item) if text.startswith("[", at) else None
            if item.content is not None:
                return item.content.end
        return _value_end(text, at)

    item.end = _walk_object(text, i, member)
    return item


def _list(text: str, i: int, read: Callable[[str, int], _Item]) -> _Span:
    """The span of the JSON array at `i`, with each item `read`."""
    span = _Span(i, i)
    i = _skip(text, i + 1)
    if text.startswith("]", i):
        span.end = i + 1
        return span
    while True:
        item = read(text, i)
        span.items.append(item)
        i = _skip(text, item.end)
        if text.startswith(",", i):
            i = _skip(text, i + 1)
        elif text.startswith("]", i):
            span.end = i + 1
            return span
        else:
            raise InvalidJson("expected `,` or `]`", text, i)


def _walk_object(text: str, i: int, member: Callable[[str, int], int]) -> int:
    """Walk the object at `i`, calling `member(key, value_start) -> value_end`; its end."""
    i = _skip(text, i + 1)
    if text.startswith("}", i):
        return i + 1
    while True:
        if not text.startswith('"', i):
            raise InvalidJson("key must be a string", text, i)
        key, end = _decode(text, i)
        i = _skip(text, end)
        if not text.startswith(":", i):
            raise InvalidJson("expected `:`", text, i)
        i = _skip(text, member(key, _skip(text, i + 1)))
        if text.startswith(",", i):
            i = _skip(text, i + 1)
        elif text.startswith("}", i):
            return i + 1
        else:
            raise InvalidJson("expected `,` or `}`", text, i)


def _value_end(text: str, i: int) -> int:
    """Where the JSON value at `i` ends (what it holds is checked when it is validated)."""
    return _decode(text, i)[1]


def _decode(text: str, i: int) -> tuple[Any, int]:
    try:
        value, end = _DECODER.raw_decode(text, i)
        return value, int(end)
    except json.JSONDecodeError as exc:
        raise InvalidJson(exc.msg.lower(), text, exc.pos) from None
    except RecursionError:
        raise InvalidJson("recursion limit exceeded", text, i) from None


def _skip(text: str, i: int) -> int:
    match = _WHITESPACE.match(text, i)
    return match.end() if match else i
