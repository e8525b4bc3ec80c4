"""A `Message`, or its stream events, in OpenAI's `chat.completion` / `chat.completion.chunk` shapes.

As the Claude API's layer documents: one choice; `finish_reason` from the stop reason; text blocks
joined into `content`, `tool_use` blocks as `tool_calls` (their input as JSON text); thinking is
not returned (use the native API for it), though its tokens are counted, in
`completion_tokens_details.reasoning_tokens`. `prompt_tokens` is the whole prompt, as OpenAI counts
it: uncached, written to the cache and read from it (`prompt_tokens_details.cached_tokens`).
"""

from __future__ import annotations

import json

import orjson

from sijo.protocol.events import (
    ContentBlockDeltaEvent,
    ContentBlockStartEvent,
    InputJsonDelta,
    MessageDeltaEvent,
    MessageStartEvent,
    MessageStopEvent,
    StreamEvent,
    TextDelta,
)
from sijo.protocol.message import Message, StopReason, TextBlock, ToolUseBlock
from sijo.protocol.openai import (
    ChatChunkChoice,
    ChatChunkDelta,
    ChatChunkFunction,
    ChatChunkToolCall,
    ChatCompletion,
    ChatCompletionChoice,
    ChatCompletionChunk,
    ChatCompletionFunction,
    ChatCompletionMessage,
    ChatCompletionTokensDetails,
    ChatCompletionToolCall,
    ChatCompletionUsage,
    ChatPromptTokensDetails,
    FinishReason,
)

_FINISH_REASONS: dict[StopReason, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


def finish_reason(stop_reason: StopReason | None, *, legacy_functions: bool = False) -> FinishReason:
    reason = _FINISH_REASONS[stop_reason] if stop_reason is not None else "stop"
    return "function_call" if reason == "tool_calls" and legacy_functions else reason


def chat_usage(
    *, input_tokens: int, cache_write: int, cache_read: int, output_tokens: int, thinking_tokens: int
) -> ChatCompletionUsage:
    prompt = input_tokens + cache_write + cache_read
    return ChatCompletionUsage(
        prompt_tokens=prompt,
        completion_tokens=output_tokens,
        total_tokens=prompt + output_tokens,
        prompt_tokens_details=ChatPromptTokensDetails(
            cached_tokens=cache_read, cache_write_tokens=cache_write
        ),
        completion_tokens_details=ChatCompletionTokensDetails(reasoning_tokens=thinking_tokens),
    )


def to_chat_completion(message: Message, created: int, *, legacy_functions: bool = False) -> ChatCompletion:
    text = "".join(block.text for block in message.content if isinstance(block, TextBlock))
    calls = [
        ChatCompletionToolCall(id=block.id, function=_function(block))
        for block in message.content
        if isinstance(block, ToolUseBlock)
    ]
    reply = ChatCompletionMessage(
        content=text if text or not calls else None,
        tool_calls=calls if calls and not legacy_functions else None,
        function_call=calls[0].function if calls and legacy_functions else None,
    )
    usage = message.usage
    return ChatCompletion(
        id=message.id,
        created=created,
        model=message.model,
        choices=[
            ChatCompletionChoice(
                message=reply,
                finish_reason=finish_reason(message.stop_reason, legacy_functions=legacy_functions),
            )
        ],
        usage=chat_usage(
            input_tokens=usage.input_tokens,
            cache_write=usage.cache_creation_input_tokens,
            cache_read=usage.cache_read_input_tokens,
            output_tokens=usage.output_tokens,
            thinking_tokens=usage.output_tokens_details.thinking_tokens,
        ),
    )


def _function(block: ToolUseBlock) -> ChatCompletionFunction:
    return ChatCompletionFunction(name=block.name, arguments=json.dumps(block.input, ensure_ascii=False))


class ChunkWriter:
    """Stream events in, chunks out: `feed(event) -> [ChatCompletionChunk]`.

    The first chunk carries the role; text deltas become `content`; a `tool_use` block becomes a
    tool call (its id and name first, then its input's JSON text as `arguments` deltas); the last
    chunk with a choice carries `finish_reason`, and with `include_usage` one more, without choices,
    carries the usage.

    `frames(event)` gives the same chunks as SSE `data:` frames; those of text and arguments deltas,
    one a token or so, are written straight to bytes, byte for byte what serialising them gives."""

    def __init__(self, created: int, *, include_usage: bool = False, legacy_functions: bool = False) -> None:
        self.created = created
        self.include_usage = include_usage
        self.legacy_functions = legacy_functions
        self._id = ""
        self._model = ""
        self._calls: dict[int, int] = {}  # content block index → tool call index
        self._usage: ChatCompletionUsage | None = None
        self._head = b""  # a chunk's frame up to its delta, once message_start has given the id

    def frames(self, event: StreamEvent) -> bytes:
        """`feed(event)` as SSE frames, `data: <chunk>` each (nothing where it gives no chunk)."""
        if isinstance(event, ContentBlockDeltaEvent):
            delta = event.delta
            if isinstance(delta, TextDelta):
                return self._frame(b'{"content":%s}' % orjson.dumps(delta.text)) if delta.text else b""
            if isinstance(delta, InputJsonDelta) and event.index in self._calls and delta.partial_json:
                index, arguments = self._calls[event.index], orjson.dumps(delta.partial_json)
                if not self.legacy_functions:
                    call = b'{"index":%d,"function":{"arguments":%s}}' % (index, arguments)
                    return self._frame(b'{"tool_calls":[%s]}' % call)
                return self._frame(b'{"function_call":{"arguments":%s}}' % arguments) if index == 0 else b""
        return b"".join(
            b"data: %s\n\n" % chunk.model_dump_json(exclude_none=True).encode() for chunk in self.feed(event)
        )

    def _frame(self, delta: bytes) -> bytes:
        """The frame of a chunk whose one choice has `delta` (JSON) and no finish reason."""
        return b"%s%s}]}\n\n" % (self._head, delta)

    def feed(self, event: StreamEvent) -> list[ChatCompletionChunk]:
        if isinstance(event, MessageStartEvent):
            self._id, self._model = event.message.id, event.message.model
            self._head = b'data: {"id":%s,"object":"chat.completion.chunk","created":%d,"model":%s,' % (
                orjson.dumps(self._id),
                self.created,
                orjson.dumps(self._model),
            )
            self._head += b'"choices":[{"index":0,"delta":'
            return [self._chunk(ChatChunkDelta(role="assistant", content=""))]
        if isinstance(event, ContentBlockStartEvent) and isinstance(event.content_block, ToolUseBlock):
            self._calls[event.index] = len(self._calls)
            return self._call(
                event.index,
                ChatChunkFunction(name=event.content_block.name, arguments=""),
                event.content_block.id,
            )
        if isinstance(event, ContentBlockDeltaEvent):
            return self._delta(event)
        if isinstance(event, MessageDeltaEvent):
            usage = event.usage
            details = usage.output_tokens_details
            self._usage = chat_usage(
                input_tokens=usage.input_tokens,
                cache_write=usage.cache_creation_input_tokens,
                cache_read=usage.cache_read_input_tokens,
                output_tokens=usage.output_tokens,
                thinking_tokens=details.thinking_tokens if details is not None else 0,
            )
            reason = finish_reason(event.delta.stop_reason, legacy_functions=self.legacy_functions)
            return [self._chunk(ChatChunkDelta(), reason)]
        if isinstance(event, MessageStopEvent) and self.include_usage:
            return [
                ChatCompletionChunk(
                    id=self._id, created=self.created, model=self._model, choices=[], usage=self._usage
                )
            ]
        return []  # thinking, signatures, block stops and pings have no OpenAI counterpart

    def _delta(self, event: ContentBlockDeltaEvent) -> list[ChatCompletionChunk]:
        delta = event.delta
        if isinstance(delta, TextDelta) and delta.text:
            return [self._chunk(ChatChunkDelta(content=delta.text))]
        if isinstance(delta, InputJsonDelta) and event.index in self._calls and delta.partial_json:
            return self._call(event.index, ChatChunkFunction(arguments=delta.partial_json))
        return []

    def _call(
        self, block: int, function: ChatChunkFunction, call_id: str | None = None
    ) -> list[ChatCompletionChunk]:
        index = self._calls[block]
        if self.legacy_functions:
            # The deprecated `function_call` holds one call (parallel calls are off for it).
            return [self._chunk(ChatChunkDelta(function_call=function))] if index == 0 else []
        call = ChatChunkToolCall(
            index=index, id=call_id, type="function" if call_id is not None else None, function=function
        )
        return [self._chunk(ChatChunkDelta(tool_calls=[call]))]

    def _chunk(self, delta: ChatChunkDelta, reason: FinishReason | None = None) -> ChatCompletionChunk:
        choice = ChatChunkChoice(delta=delta, finish_reason=reason)
        return ChatCompletionChunk(id=self._id, created=self.created, model=self._model, choices=[choice])
