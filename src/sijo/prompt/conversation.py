"""Wire params → an engine-neutral `Conversation`: system hoisted, same-role turns merged, prefill split off.

The rules follow the Claude API (reference §1.2): consecutive turns of one role are merged, a
`role: "system"` message before the first user turn joins the system prompt while one later in the
conversation stays where it is, and a final assistant turn is a prefill that the model continues.

Each wire content block stays a `Part`, numbered in prompt order (system, then messages) and carrying
its `cache_control`, so that prompt caching can find where each block ends in the rendered tokens.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from sijo.errors import InvalidRequestError
from sijo.protocol.content import ContentBlockParam, TextBlockParam
from sijo.protocol.params import MessageParam

Role = Literal["system", "user", "assistant"]

# User and system text blocks are separate paragraphs; assistant blocks are one continuous output.
_JOINERS: dict[Role, str] = {"system": "\n\n", "user": "\n\n", "assistant": ""}


Ttl = Literal["5m", "1h"]


@dataclass(frozen=True, slots=True)
class Part:
    """One wire content block: its text, its index in prompt order, and its cache breakpoint if any."""

    text: str
    block: int
    cache_ttl: Ttl | None = None
    field: str = ""  # where the block is in the request, for error messages


@dataclass(frozen=True, slots=True)
class Turn:
    role: Role
    parts: tuple[Part, ...]

    @property
    def text(self) -> str:
        return _JOINERS[self.role].join(part.text for part in self.parts)


@dataclass(frozen=True, slots=True)
class Conversation:
    system: tuple[Part, ...]
    turns: tuple[Turn, ...]
    prefill: tuple[Part, ...] = ()

    @property
    def system_text(self) -> str | None:
        return _JOINERS["system"].join(part.text for part in self.system) or None

    @property
    def prefill_text(self) -> str:
        return _JOINERS["assistant"].join(part.text for part in self.prefill)

    def parts(self) -> list[Part]:
        """Every block, in prompt order."""
        return [*self.system, *(p for turn in self.turns for p in turn.parts), *self.prefill]


def to_conversation(messages: list[MessageParam], system: str | list[TextBlockParam] | None) -> Conversation:
    if not messages:
        raise InvalidRequestError("messages: at least one message is required")
    blocks = _Numbering()
    system_parts = _system_parts(system, blocks) if system else []
    last = len(messages) - 1
    turns = _merge([_to_turn(i, message, i == last, blocks) for i, message in enumerate(messages)])
    while turns and turns[0].role == "system":
        system_parts += turns.pop(0).parts
    prefill = _split_prefill(turns)
    if not turns:
        raise InvalidRequestError("messages: at least one user message is required")
    return Conversation(system=tuple(system_parts), turns=tuple(turns), prefill=prefill)


class _Numbering:
    def __init__(self) -> None:
        self.next = 0

    def take(self) -> int:
        self.next += 1
        return self.next - 1


def _to_turn(index: int, message: MessageParam, is_final: bool, blocks: _Numbering) -> Turn:
    field = f"messages.{index}.content"
    parts: tuple[Part, ...]
    if isinstance(message.content, str):
        parts = (Part(message.content, blocks.take(), field=field),) if message.content else ()
    else:
        parts = tuple(_block_part(f"{field}.{j}", b, blocks) for j, b in enumerate(message.content))
    if not parts and not (is_final and message.role == "assistant"):
        raise InvalidRequestError(
            f"messages.{index}: all messages must have non-empty content except for the "
            "optional final assistant message"
        )
    return Turn(message.role, parts)


def _block_part(field: str, block: ContentBlockParam, blocks: _Numbering) -> Part:
    if not isinstance(block, TextBlockParam):
        raise InvalidRequestError(
            f"{field}.type: content blocks of type '{block.type}' are not supported by Sijo yet"
        )
    if not block.text:
        raise InvalidRequestError(f"{field}.text: text content blocks must be non-empty")
    ttl = (block.cache_control.ttl or "5m") if block.cache_control is not None else None
    return Part(block.text, blocks.take(), ttl, field)


def _system_parts(system: str | list[TextBlockParam], blocks: _Numbering) -> list[Part]:
    if isinstance(system, str):
        return [Part(system, blocks.take(), field="system")]
    parts = [_block_part(f"system.{j}", block, blocks) for j, block in enumerate(system)]
    return [_without_billing_nonce(part) for part in parts]


# Claude Code's first system block carries a per-request nonce (`cch=…;`); left in, it would make
# every prompt unique from its first block on, and no prefix would ever be cached.
_BILLING_HEADER = "x-anthropic-billing-header:"
_NONCE = re.compile(r"\s*\bcch=[^;]*;?")


def _without_billing_nonce(part: Part) -> Part:
    if not part.text.startswith(_BILLING_HEADER):
        return part
    return Part(_NONCE.sub("", part.text), part.block, part.cache_ttl, part.field)


def _merge(turns: list[Turn]) -> list[Turn]:
    merged: list[Turn] = []
    for turn in turns:
        if merged and merged[-1].role == turn.role:
            merged[-1] = Turn(turn.role, merged[-1].parts + turn.parts)
        else:
            merged.append(turn)
    return merged


def _split_prefill(turns: list[Turn]) -> tuple[Part, ...]:
    """Remove a final assistant turn from `turns` and return its blocks as the prefill."""
    if not turns or turns[-1].role != "assistant":
        return ()
    prefill = turns.pop()
    if prefill.text != prefill.text.rstrip():
        raise InvalidRequestError("final assistant content cannot end with trailing whitespace")
    return prefill.parts
