"""Assembling the stream: thinking, text and tool calls → the Claude API's stream events (reference §3).

Blocks open lazily and close when the next kind starts, so indices are sequential and an empty
reply has no block. A tool call's input streams as `input_json_delta` fragments; a thinking block
ends with one `signature_delta`.
"""

from __future__ import annotations

from typing import Literal

from sijo.protocol.events import (
    CitationsDelta,
    ContentBlockDeltaEvent,
    ContentBlockStartEvent,
    ContentBlockStopEvent,
    MessageDelta,
    MessageDeltaEvent,
    MessageDeltaUsage,
    MessageStartEvent,
    MessageStopEvent,
    SignatureDelta,
    StreamEvent,
)
from sijo.protocol.message import (
    Message,
    OutputTokensDetails,
    ServerToolUsage,
    StopReason,
    TextBlock,
    TextCitation,
    ThinkingBlock,
    ToolUseBlock,
    Usage,
)
from sijo.protocol.server_tools import Container, ServerToolResultBlock, ServerToolUseBlock

BlockKind = Literal["text", "thinking", "tool_use"]


class MessageAssembler:
    def __init__(self, *, message_id: str, model: str, usage: Usage) -> None:
        self._message_id = message_id
        self._model = model
        self._usage = usage
        self._open: BlockKind | None = None
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
        events = self._open_block("text")
        events.append(_delta(self._next_index, {"type": "text_delta", "text": text}))
        return events

    def cited_text(self, citations: list[TextCitation]) -> list[StreamEvent]:
        """Open a text block of its own for text that cites `citations` (sent before its text, as the
        API does); the next `text` after `close` opens a plain block again."""
        events = self.close()
        events.append(
            ContentBlockStartEvent(index=self._next_index, content_block=TextBlock(text="", citations=[]))
        )
        self._open = "text"
        events += [
            ContentBlockDeltaEvent(index=self._next_index, delta=CitationsDelta(citation=citation))
            for citation in citations
        ]
        return events

    def thinking(self, thinking: str) -> list[StreamEvent]:
        """Thinking text (may be empty: with `display: omitted` the block still opens)."""
        events = self._open_block("thinking")
        if thinking:
            events.append(_delta(self._next_index, {"type": "thinking_delta", "thinking": thinking}))
        return events

    def sign_thinking(self, signature: str) -> list[StreamEvent]:
        events = self._open_block("thinking")
        events.append(
            ContentBlockDeltaEvent(index=self._next_index, delta=SignatureDelta(signature=signature))
        )
        return events + self.close()

    def tool_use(self, tool_use_id: str, name: str, *, server: bool = False) -> list[StreamEvent]:
        """Open a tool call's block (a `server_tool_use` for a server tool); its input follows."""
        events = self.close()
        block: ToolUseBlock | ServerToolUseBlock = (
            ServerToolUseBlock(id=tool_use_id, name=name, input={})
            if server
            else ToolUseBlock(id=tool_use_id, name=name, input={})
        )
        events.append(ContentBlockStartEvent(index=self._next_index, content_block=block))
        self._open = "tool_use"
        return events

    def server_result(self, block: ServerToolResultBlock) -> list[StreamEvent]:
        """A server tool's result: the whole block in its start event, then its stop (reference §12)."""
        events = self.close()
        events.append(ContentBlockStartEvent(index=self._next_index, content_block=block))
        self._next_index += 1
        events.append(ContentBlockStopEvent(index=self._next_index - 1))
        return events

    def tool_input(self, fragment: str) -> list[StreamEvent]:
        if self._open != "tool_use" or not fragment:
            return []
        return [_delta(self._next_index, {"type": "input_json_delta", "partial_json": fragment})]

    def close(self) -> list[StreamEvent]:
        if self._open is None:
            return []
        self._open = None
        self._next_index += 1
        return [ContentBlockStopEvent(index=self._next_index - 1)]

    def finish(
        self,
        stop_reason: StopReason,
        stop_sequence: str | None,
        output_tokens: int,
        thinking_tokens: int = 0,
        *,
        input_tokens: int | None = None,
        server_tool_use: ServerToolUsage | None = None,
        container: Container | None = None,
    ) -> list[StreamEvent]:
        """The end: `input_tokens` where server tools' results added to the prompt's."""
        events = self.close()
        usage = MessageDeltaUsage(
            input_tokens=self._usage.input_tokens if input_tokens is None else input_tokens,
            cache_creation_input_tokens=self._usage.cache_creation_input_tokens,
            cache_read_input_tokens=self._usage.cache_read_input_tokens,
            output_tokens=output_tokens,
            output_tokens_details=OutputTokensDetails(thinking_tokens=thinking_tokens),
            server_tool_use=server_tool_use,
        )
        delta = MessageDelta(stop_reason=stop_reason, stop_sequence=stop_sequence, container=container)
        events += [MessageDeltaEvent(delta=delta, usage=usage), MessageStopEvent()]
        return events

    def _open_block(self, kind: BlockKind) -> list[StreamEvent]:
        if self._open == kind:
            return []
        events = self.close()
        block: TextBlock | ThinkingBlock = (
            TextBlock(text="") if kind == "text" else ThinkingBlock(thinking="", signature="")
        )
        events.append(ContentBlockStartEvent(index=self._next_index, content_block=block))
        self._open = kind
        return events


def _delta(index: int, delta: dict[str, str]) -> ContentBlockDeltaEvent:
    """A text, thinking or tool input delta (one a token): built by validating its dict, which takes
    half the time of building its two models one by one."""
    return ContentBlockDeltaEvent.model_validate({"index": index, "delta": delta})
