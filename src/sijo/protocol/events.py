"""Stream events (reference §3), one class per `type`; the SSE event name equals `type`."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from sijo.protocol.base import ResponseModel
from sijo.protocol.context_management import ContextManagementResponse
from sijo.protocol.message import (
    ContentBlock,
    Message,
    OutputTokensDetails,
    ServerToolUsage,
    StopReason,
    TextCitation,
)
from sijo.protocol.server_tools import Container


class MessageStartEvent(ResponseModel):
    type: Literal["message_start"] = "message_start"
    message: Message


class ContentBlockStartEvent(ResponseModel):
    type: Literal["content_block_start"] = "content_block_start"
    index: int
    content_block: ContentBlock


class TextDelta(ResponseModel):
    type: Literal["text_delta"] = "text_delta"
    text: str


class InputJsonDelta(ResponseModel):
    type: Literal["input_json_delta"] = "input_json_delta"
    partial_json: str


class ThinkingDelta(ResponseModel):
    type: Literal["thinking_delta"] = "thinking_delta"
    thinking: str


class SignatureDelta(ResponseModel):
    type: Literal["signature_delta"] = "signature_delta"
    signature: str


class CitationsDelta(ResponseModel):
    type: Literal["citations_delta"] = "citations_delta"
    citation: TextCitation


BlockDelta = Annotated[
    TextDelta | InputJsonDelta | ThinkingDelta | SignatureDelta | CitationsDelta, Field(discriminator="type")
]


class ContentBlockDeltaEvent(ResponseModel):
    type: Literal["content_block_delta"] = "content_block_delta"
    index: int
    delta: BlockDelta


class ContentBlockStopEvent(ResponseModel):
    type: Literal["content_block_stop"] = "content_block_stop"
    index: int


class MessageDelta(ResponseModel):
    stop_reason: StopReason | None
    stop_sequence: str | None
    stop_details: dict[str, Any] | None = None
    # The code execution container the reply used; the key is absent from replies that used none.
    container: Container | None = Field(default=None, exclude_if=lambda value: value is None)


class MessageDeltaUsage(ResponseModel):
    """Cumulative totals; the SDKs overwrite their copy with every non-null key."""

    input_tokens: int
    cache_creation_input_tokens: int
    cache_read_input_tokens: int
    output_tokens: int
    output_tokens_details: OutputTokensDetails | None = None
    server_tool_use: ServerToolUsage | None = None


class MessageDeltaEvent(ResponseModel):
    type: Literal["message_delta"] = "message_delta"
    delta: MessageDelta
    usage: MessageDeltaUsage
    # Beside `delta`, as the beta SDKs read it, when the request sent `context_management`.
    context_management: ContextManagementResponse | None = Field(
        default=None, exclude_if=lambda value: value is None
    )


class MessageStopEvent(ResponseModel):
    type: Literal["message_stop"] = "message_stop"


class PingEvent(ResponseModel):
    type: Literal["ping"] = "ping"


StreamEvent = (
    MessageStartEvent
    | ContentBlockStartEvent
    | ContentBlockDeltaEvent
    | ContentBlockStopEvent
    | MessageDeltaEvent
    | MessageStopEvent
    | PingEvent
)
