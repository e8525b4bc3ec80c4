"""A non-streaming Message is a fold over the stream events (as the SDKs' `accumulate_event`).

A tool call's input arrives as JSON fragments; they are joined and parsed when the block stops,
leniently, so a call cut short by `max_tokens` keeps what was generated (as the SDKs do).
"""

from __future__ import annotations

from collections.abc import AsyncIterable
from typing import Any

import pydantic_core

from sijo.protocol.events import (
    CitationsDelta,
    ContentBlockDeltaEvent,
    ContentBlockStartEvent,
    ContentBlockStopEvent,
    InputJsonDelta,
    MessageDeltaEvent,
    MessageStartEvent,
    SignatureDelta,
    StreamEvent,
    TextDelta,
    ThinkingDelta,
)
from sijo.protocol.message import ContentBlock, Message, TextBlock, ThinkingBlock


class Accumulator:
    def __init__(self) -> None:
        self.message: Message | None = None
        self._json: dict[int, str] = {}

    def apply(self, event: StreamEvent) -> None:
        if isinstance(event, MessageStartEvent):
            self.message = event.message
            return
        message = self.message
        if message is None:
            raise ValueError(f"{event.type} before message_start")
        if isinstance(event, ContentBlockStartEvent):
            self.message = message.model_copy(update={"content": [*message.content, event.content_block]})
        elif isinstance(event, ContentBlockDeltaEvent):
            self._delta(message, event)
        elif isinstance(event, ContentBlockStopEvent) and event.index in self._json:
            arguments = _parse_partial(self._json.pop(event.index))
            self._replace(message, event.index, lambda b: b.model_copy(update={"input": arguments}))
        elif isinstance(event, MessageDeltaEvent):
            totals = {key: value for key, value in event.usage if value is not None}
            usage = message.usage.model_copy(update=totals)
            update = {**dict(event.delta), "usage": usage}
            if event.context_management is not None:  # beside the delta, as the beta SDKs read it
                update["context_management"] = event.context_management
            self.message = message.model_copy(update=update)

    def _delta(self, message: Message, event: ContentBlockDeltaEvent) -> None:
        delta = event.delta
        if isinstance(delta, InputJsonDelta):
            self._json[event.index] = self._json.get(event.index, "") + delta.partial_json
            return

        def update(block: ContentBlock) -> ContentBlock:
            if isinstance(block, TextBlock) and isinstance(delta, TextDelta):
                return block.model_copy(update={"text": block.text + delta.text})
            if isinstance(block, TextBlock) and isinstance(delta, CitationsDelta):
                return block.model_copy(update={"citations": [*(block.citations or []), delta.citation]})
            if isinstance(block, ThinkingBlock) and isinstance(delta, ThinkingDelta):
                return block.model_copy(update={"thinking": block.thinking + delta.thinking})
            if isinstance(block, ThinkingBlock) and isinstance(delta, SignatureDelta):
                return block.model_copy(update={"signature": delta.signature})
            return block

        self._replace(message, event.index, update)

    def _replace(self, message: Message, index: int, update: Any) -> None:
        content = list(message.content)
        content[index] = update(content[index])
        self.message = message.model_copy(update={"content": content})


def _parse_partial(text: str) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = pydantic_core.from_json(text, allow_partial=True)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


async def accumulate(events: AsyncIterable[StreamEvent]) -> Message:
    accumulator = Accumulator()
    async for event in events:
        accumulator.apply(event)
    if accumulator.message is None:
        raise ValueError("the stream ended without message_start")
    return accumulator.message
