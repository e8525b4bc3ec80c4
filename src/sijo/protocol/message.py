"""The response `Message`, its content blocks and `Usage`, with every key the SDKs declare (reference §2)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from sijo.protocol.base import ResponseModel
from sijo.protocol.context_management import ContextManagementResponse, CountTokensContextManagement
from sijo.protocol.server_tools import (
    BashCodeExecutionToolResultBlock,
    CodeExecutionToolResultBlock,
    Container,
    ServerToolUseBlock,
    TextEditorCodeExecutionToolResultBlock,
    WebFetchToolResultBlock,
    WebSearchToolResultBlock,
)

StopReason = Literal[
    "end_turn",
    "max_tokens",
    "stop_sequence",
    "tool_use",
    "pause_turn",
    "refusal",
    "model_context_window_exceeded",
]


class CitationCharLocation(ResponseModel):
    """A span of a plain-text document: characters, 0-based, end exclusive."""

    type: Literal["char_location"] = "char_location"
    cited_text: str
    document_index: int
    document_title: str | None
    start_char_index: int
    end_char_index: int
    file_id: str | None = None


class CitationPageLocation(ResponseModel):
    """Pages of a PDF: 1-based, end exclusive."""

    type: Literal["page_location"] = "page_location"
    cited_text: str
    document_index: int
    document_title: str | None
    start_page_number: int
    end_page_number: int
    file_id: str | None = None


class CitationContentBlockLocation(ResponseModel):
    """Blocks of a content document: 0-based, end exclusive."""

    type: Literal["content_block_location"] = "content_block_location"
    cited_text: str
    document_index: int
    document_title: str | None
    start_block_index: int
    end_block_index: int
    file_id: str | None = None


class CitationWebSearchResultLocation(ResponseModel):
    """A passage of a web search result; `encrypted_index` says which (signed, opaque to clients)."""

    type: Literal["web_search_result_location"] = "web_search_result_location"
    cited_text: str  # at most 150 characters
    url: str
    title: str | None
    encrypted_index: str


TextCitation = Annotated[
    CitationCharLocation
    | CitationPageLocation
    | CitationContentBlockLocation
    | CitationWebSearchResultLocation,
    Field(discriminator="type"),
]


class TextBlock(ResponseModel):
    type: Literal["text"] = "text"
    text: str
    # The API omits `citations` on a block without any; clients (the Vercel AI SDK) reject `null`.
    citations: list[TextCitation] | None = Field(default=None, exclude_if=lambda value: value is None)


class ToolCaller(ResponseModel):
    type: Literal["direct"] = "direct"


class ToolUseBlock(ResponseModel):
    type: Literal["tool_use"] = "tool_use"
    id: str
    name: str
    input: dict[str, Any]
    caller: ToolCaller = ToolCaller()


class ThinkingBlock(ResponseModel):
    type: Literal["thinking"] = "thinking"
    thinking: str
    signature: str


class RedactedThinkingBlock(ResponseModel):
    type: Literal["redacted_thinking"] = "redacted_thinking"
    data: str


ContentBlock = Annotated[
    TextBlock
    | ToolUseBlock
    | ThinkingBlock
    | RedactedThinkingBlock
    | ServerToolUseBlock
    | WebSearchToolResultBlock
    | WebFetchToolResultBlock
    | BashCodeExecutionToolResultBlock
    | TextEditorCodeExecutionToolResultBlock
    | CodeExecutionToolResultBlock,
    Field(discriminator="type"),
]


class CacheCreation(ResponseModel):
    ephemeral_5m_input_tokens: int = 0
    ephemeral_1h_input_tokens: int = 0


class OutputTokensDetails(ResponseModel):
    thinking_tokens: int = 0


class ServerToolUsage(ResponseModel):
    web_search_requests: int = 0
    web_fetch_requests: int = 0


class Usage(ResponseModel):
    input_tokens: int
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation: CacheCreation = CacheCreation()
    output_tokens: int
    output_tokens_details: OutputTokensDetails = OutputTokensDetails()
    server_tool_use: ServerToolUsage | None = None
    service_tier: Literal["standard", "priority", "batch"] = "standard"
    inference_geo: str = "global"


class Message(ResponseModel):
    id: str
    type: Literal["message"] = "message"
    role: Literal["assistant"] = "assistant"
    model: str
    content: list[ContentBlock]
    stop_reason: StopReason | None
    stop_sequence: str | None
    stop_details: dict[str, Any] | None = None
    container: Container | None = None
    usage: Usage
    # Only on the reply to a request that sent `context_management` (the beta's key).
    context_management: ContextManagementResponse | None = Field(
        default=None, exclude_if=lambda value: value is None
    )


class MessageTokensCount(ResponseModel):
    input_tokens: int
    context_management: CountTokensContextManagement | None = Field(
        default=None, exclude_if=lambda value: value is None
    )
