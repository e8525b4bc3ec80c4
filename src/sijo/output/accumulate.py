"""A non-streaming Message is a fold over the stream events (as the SDKs' `accumulate_event`)."""

from __future__ import annotations

from collections.abc import AsyncIterable

from sijo.protocol.events import (
    ContentBlockDeltaEvent,
    ContentBlockStartEvent,
    MessageDeltaEvent,
    MessageStartEvent,
    StreamEvent,
)
from sijo.protocol.message import ContentBlock, Message, TextBlock


def apply(message: Message | None, event: StreamEvent) -> Message | None:
    if isinstance(event, MessageStartEvent):
        return event.message
    if message is None:
        raise ValueError(f"{event.type} before message_start")
    if isinstance(event, ContentBlockStartEvent):
        return message.model_copy(update={"content": [*message.content, event.content_block]})
    if isinstance(event, ContentBlockDeltaEvent):
        return message.model_copy(update={"content": _apply_delta(message.content, event)})
    if isinstance(event, MessageDeltaEvent):
        usage = message.usage.model_copy(update=event.usage.model_dump(exclude_none=True))
        update = event.delta.model_dump() | {"usage": usage}
        return message.model_copy(update=update)
    return message


def _apply_delta(content: list[ContentBlock], event: ContentBlockDeltaEvent) -> list[ContentBlock]:
    block = content[event.index]
    if isinstance(block, TextBlock):
        block = block.model_copy(update={"text": block.text + event.delta.text})
    return [*content[: event.index], block, *content[event.index + 1 :]]


async def accumulate(events: AsyncIterable[StreamEvent]) -> Message:
    message: Message | None = None
    async for event in events:
        message = apply(message, event)
    if message is None:
        raise ValueError("the stream ended without message_start")
    return message
