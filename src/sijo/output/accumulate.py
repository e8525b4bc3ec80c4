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
    """The fold. Every reply's events go through one as they stream (the service keeps the blocks so
    far), so an event costs the same however long the reply has grown: text and thinking deltas are
    kept as pieces until `message` is read, and a tool's input fragments until its block stops."""

    def __init__(self) -> None:
        self._start: Message | None = None  # the message as of the last message event, content aside
        self._blocks: list[ContentBlock] = []
        self._pieces: dict[int, list[str]] = {}  # text or thinking not yet joined into its block
        self._json: dict[int, list[str]] = {}
        self._message: Message | None = None  # `message`, until the next event

    @property
    def message(self) -> Message | None:
        if self._message is None and self._start is not None:
            for index, pieces in self._pieces.items():
                self._blocks[index] = _joined(self._blocks[index], pieces)
            self._pieces.clear()
            self._message = self._start.model_copy(update={"content": list(self._blocks)})
        return self._message

    def apply(self, event: StreamEvent) -> None:
        if isinstance(event, MessageStartEvent):
            self._start, self._message = event.message, event.message
            self._blocks, self._pieces, self._json = list(event.message.content), {}, {}
            return
        start = self._start
        if start is None:
            raise ValueError(f"{event.type} before message_start")
        if isinstance(event, ContentBlockDeltaEvent):
            self._delta(event)
        elif isinstance(event, ContentBlockStartEvent):
            self._blocks.append(event.content_block)
        elif isinstance(event, ContentBlockStopEvent) and event.index in self._json:
            arguments = _parse_partial("".join(self._json.pop(event.index)))
            block = self._blocks[event.index]
            self._blocks[event.index] = block.model_copy(update={"input": arguments})
        elif isinstance(event, MessageDeltaEvent):
            totals = {key: value for key, value in event.usage if value is not None}
            usage = start.usage.model_copy(update=totals)
            update = {**dict(event.delta), "usage": usage}
            if event.context_management is not None:  # beside the delta, as the beta SDKs read it
                update["context_management"] = event.context_management
            self._start = start.model_copy(update=update)
        else:
            return
        self._message = None

    def _delta(self, event: ContentBlockDeltaEvent) -> None:
        delta, index = event.delta, event.index
        if isinstance(delta, InputJsonDelta):
            self._json.setdefault(index, []).append(delta.partial_json)
            return
        block = self._blocks[index]
        if isinstance(block, TextBlock) and isinstance(delta, TextDelta):
            self._pieces.setdefault(index, []).append(delta.text)
        elif isinstance(block, ThinkingBlock) and isinstance(delta, ThinkingDelta):
            self._pieces.setdefault(index, []).append(delta.thinking)
        elif isinstance(block, TextBlock) and isinstance(delta, CitationsDelta):
            citations = [*(block.citations or []), delta.citation]
            self._blocks[index] = block.model_copy(update={"citations": citations})
        elif isinstance(block, ThinkingBlock) and isinstance(delta, SignatureDelta):
            self._blocks[index] = block.model_copy(update={"signature": delta.signature})


def _joined(block: ContentBlock, pieces: list[str]) -> ContentBlock:
    """A text or thinking block with its pieces appended (only those two blocks take pieces)."""
    if isinstance(block, TextBlock):
        return block.model_copy(update={"text": block.text + "".join(pieces)})
    if isinstance(block, ThinkingBlock):
        return block.model_copy(update={"thinking": block.thinking + "".join(pieces)})
    return block


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
