"""Wire params → an engine-neutral `Conversation`: system hoisted, same-role turns merged, prefill split off.

The rules follow the Claude API (reference §1.2): consecutive turns of one role are merged, a
`role: "system"` message before the first user turn joins the system prompt while one later in the
conversation stays where it is, and a final assistant turn is a prefill that the model continues.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sijo.errors import InvalidRequestError
from sijo.protocol.content import ContentBlockParam, TextBlockParam
from sijo.protocol.params import MessageParam

Role = Literal["system", "user", "assistant"]

# User and system text blocks are separate paragraphs; assistant blocks are one continuous output.
_JOINERS: dict[Role, str] = {"system": "\n\n", "user": "\n\n", "assistant": ""}


@dataclass(frozen=True, slots=True)
class Turn:
    role: Role
    text: str


@dataclass(frozen=True, slots=True)
class Conversation:
    system: str | None
    turns: tuple[Turn, ...]
    prefill: str | None = None


def to_conversation(messages: list[MessageParam], system: str | list[TextBlockParam] | None) -> Conversation:
    if not messages:
        raise InvalidRequestError("messages: at least one message is required")
    last = len(messages) - 1
    turns = _merge([_to_turn(i, message, i == last) for i, message in enumerate(messages)])
    system_parts = [_system_text(system)] if system else []
    while turns and turns[0].role == "system":
        system_parts.append(turns.pop(0).text)
    prefill = _split_prefill(turns)
    if not turns:
        raise InvalidRequestError("messages: at least one user message is required")
    system_text = "\n\n".join(part for part in system_parts if part) or None
    return Conversation(system=system_text, turns=tuple(turns), prefill=prefill)


def _to_turn(index: int, message: MessageParam, is_final: bool) -> Turn:
    if isinstance(message.content, str):
        text = message.content
    else:
        texts = [_block_text(f"messages.{index}.content.{j}", b) for j, b in enumerate(message.content)]
        text = _JOINERS[message.role].join(texts)
    if not text and not (is_final and message.role == "assistant"):
        raise InvalidRequestError(
            f"messages.{index}: all messages must have non-empty content except for the "
            "optional final assistant message"
        )
    return Turn(message.role, text)


def _block_text(field: str, block: ContentBlockParam) -> str:
    if not isinstance(block, TextBlockParam):
        raise InvalidRequestError(
            f"{field}.type: content blocks of type '{block.type}' are not supported by Sijo yet"
        )
    if block.cache_control is not None:
        raise InvalidRequestError(f"{field}.cache_control: prompt caching is not supported by Sijo yet")
    if not block.text:
        raise InvalidRequestError(f"{field}.text: text content blocks must be non-empty")
    return block.text


def _system_text(system: str | list[TextBlockParam]) -> str:
    if isinstance(system, str):
        return system
    return "\n\n".join(_block_text(f"system.{j}", block) for j, block in enumerate(system))


def _merge(turns: list[Turn]) -> list[Turn]:
    merged: list[Turn] = []
    for turn in turns:
        if merged and merged[-1].role == turn.role:
            joined = _JOINERS[turn.role].join(t for t in (merged[-1].text, turn.text) if t)
            merged[-1] = Turn(turn.role, joined)
        else:
            merged.append(turn)
    return merged


def _split_prefill(turns: list[Turn]) -> str | None:
    """Remove a final assistant turn from `turns` and return it as the prefill."""
    if not turns or turns[-1].role != "assistant":
        return None
    prefill = turns.pop().text
    if prefill != prefill.rstrip():
        raise InvalidRequestError("final assistant content cannot end with trailing whitespace")
    return prefill or None
