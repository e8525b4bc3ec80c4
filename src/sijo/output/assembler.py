"""Assembling the stream: text and stop information → the Claude API's stream events (reference §3)."""

from __future__ import annotations

from sijo.protocol.events import (
    ContentBlockDeltaEvent,
    ContentBlockStartEvent,
    ContentBlockStopEvent,
    MessageDelta,
    MessageDeltaEvent,
    MessageDeltaUsage,
    MessageStartEvent,
    MessageStopEvent,
    StreamEvent,
    TextDelta,
)
from sijo.protocol.message import Message, StopReason, TextBlock, Usage


class MessageAssembler:
    """Builds the events of one message; text blocks open lazily so an empty reply has no block."""

    def __init__(self, *, message_id: str, model: str, usage: Usage) -> None:
        self._message_id = message_id
        self._model = model
        self._usage = usage
        self._block_open = False
        self._next_index = 0

    def start(self) -> list[StreamEvent]:
        # message_start carries the input-side usage and a provisional output count (reference §3).
        provisional = self._usage.model_copy(update={"output_tokens": min(self._usage.output_tokens, 1)})
        message = Message(
            id=self._message_id,
            model=self._model,
            content=[],
            stop_reason=None,
            stop_sequence=None,
            usage=provisional,
        )
        return [MessageStartEvent(message=message)]

    def text(self, text: str) -> list[StreamEvent]:
        if not text:
            return []
        events: list[StreamEvent] = []
        if not self._block_open:
            events.append(ContentBlockStartEvent(index=self._next_index, content_block=TextBlock(text="")))
            self._block_open = True
        events.append(ContentBlockDeltaEvent(index=self._next_index, delta=TextDelta(text=text)))
        return events

    def finish(
        self, stop_reason: StopReason, stop_sequence: str | None, output_tokens: int
    ) -> list[StreamEvent]:
        events: list[StreamEvent] = []
        if self._block_open:
            events.append(ContentBlockStopEvent(index=self._next_index))
            self._block_open = False
            self._next_index += 1
        usage = MessageDeltaUsage(
            input_tokens=self._usage.input_tokens,
            cache_creation_input_tokens=self._usage.cache_creation_input_tokens,
            cache_read_input_tokens=self._usage.cache_read_input_tokens,
            output_tokens=output_tokens,
        )
        delta = MessageDelta(stop_reason=stop_reason, stop_sequence=stop_sequence)
        events += [MessageDeltaEvent(delta=delta, usage=usage), MessageStopEvent()]
        return events
