"""Input content blocks (`MessageParam.content`), one class per `type`, as a discriminated union.

Every block type of the real API is known here, so that an unknown `type` gets the real API's
validation error while a known one that Sijo does not run yet gets a 400 naming it
(see `prompt/conversation.py`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field

from sijo.protocol.base import CacheControl, WireModel


class TextBlockParam(WireModel):
    type: Literal["text"]
    text: str
    cache_control: CacheControl | None = None
    citations: list[dict[str, Any]] | None = None


class _OpaqueBlockParam(WireModel):
    """A block type Sijo recognises but does not run yet; its fields are not checked here."""

    model_config = ConfigDict(extra="allow", frozen=True)
    cache_control: CacheControl | None = None


class Base64ImageSource(WireModel):
    type: Literal["base64"]
    media_type: Literal["image/jpeg", "image/png", "image/gif", "image/webp"]
    data: str


class UrlImageSource(WireModel):
    type: Literal["url"]
    url: str


class FileImageSource(WireModel):
    type: Literal["file"]
    file_id: str


ImageSource = Annotated[Base64ImageSource | UrlImageSource | FileImageSource, Field(discriminator="type")]


class ImageBlockParam(WireModel):
    type: Literal["image"]
    source: ImageSource
    cache_control: CacheControl | None = None


class ToolReferenceBlockParam(_OpaqueBlockParam):
    type: Literal["tool_reference"]


class Base64PdfSource(WireModel):
    type: Literal["base64"]
    media_type: Literal["application/pdf"]
    data: str


class PlainTextSource(WireModel):
    type: Literal["text"]
    media_type: Literal["text/plain"]
    data: str


class ContentBlockSource(WireModel):
    """A document made of blocks: each text block is a citable unit (`content_block_location`)."""

    type: Literal["content"]
    content: str | list[Annotated[TextBlockParam | ImageBlockParam, Field(discriminator="type")]]


class UrlPdfSource(WireModel):
    type: Literal["url"]
    url: str


class FileDocumentSource(WireModel):
    type: Literal["file"]
    file_id: str


DocumentSource = Annotated[
    Base64PdfSource | PlainTextSource | ContentBlockSource | UrlPdfSource | FileDocumentSource,
    Field(discriminator="type"),
]


class CitationsConfigParam(WireModel):
    enabled: bool | None = None


class DocumentBlockParam(WireModel):
    type: Literal["document"]
    source: DocumentSource
    title: str | None = None
    context: str | None = None
    citations: CitationsConfigParam | None = None
    cache_control: CacheControl | None = None


class SearchResultBlockParam(_OpaqueBlockParam):
    type: Literal["search_result"]


ToolResultContentParam = Annotated[
    TextBlockParam | ImageBlockParam | SearchResultBlockParam | DocumentBlockParam | ToolReferenceBlockParam,
    Field(discriminator="type"),
]


class ToolCallerParam(WireModel):
    model_config = ConfigDict(extra="allow", frozen=True)
    type: str


class ToolUseBlockParam(WireModel):
    type: Literal["tool_use"]
    id: str
    name: str
    input: dict[str, Any]
    caller: ToolCallerParam | None = None
    cache_control: CacheControl | None = None


class ToolResultBlockParam(WireModel):
    type: Literal["tool_result"]
    tool_use_id: str
    content: str | list[ToolResultContentParam] | None = None
    is_error: bool | None = None
    cache_control: CacheControl | None = None


class ThinkingBlockParam(WireModel):
    type: Literal["thinking"]
    thinking: str
    signature: str
    cache_control: CacheControl | None = None


class RedactedThinkingBlockParam(WireModel):
    type: Literal["redacted_thinking"]
    data: str
    cache_control: CacheControl | None = None


class ServerToolUseBlockParam(WireModel):
    """A server tool call of an earlier reply, sent back (reference §12)."""

    type: Literal["server_tool_use"]
    id: str
    name: str
    input: dict[str, Any]
    caller: ToolCallerParam | None = None
    cache_control: CacheControl | None = None


class _ServerToolResultParam(WireModel):
    """A server tool's result of an earlier reply, sent back (read by `prompt/server_results.py`)."""

    model_config = ConfigDict(extra="allow", frozen=True)
    tool_use_id: str
    content: Any
    cache_control: CacheControl | None = None


class WebSearchToolResultBlockParam(_ServerToolResultParam):
    type: Literal["web_search_tool_result"]


class WebFetchToolResultBlockParam(_ServerToolResultParam):
    type: Literal["web_fetch_tool_result"]


class CodeExecutionToolResultBlockParam(_ServerToolResultParam):
    type: Literal["code_execution_tool_result"]


class BashCodeExecutionToolResultBlockParam(_ServerToolResultParam):
    type: Literal["bash_code_execution_tool_result"]


class TextEditorCodeExecutionToolResultBlockParam(_ServerToolResultParam):
    type: Literal["text_editor_code_execution_tool_result"]


ServerToolResultBlockParam = (
    WebSearchToolResultBlockParam
    | WebFetchToolResultBlockParam
    | CodeExecutionToolResultBlockParam
    | BashCodeExecutionToolResultBlockParam
    | TextEditorCodeExecutionToolResultBlockParam
)


class ToolSearchToolResultBlockParam(_OpaqueBlockParam):
    type: Literal["tool_search_tool_result"]


class ContainerUploadBlockParam(WireModel):
    """A Files API file to place in the code execution container."""

    type: Literal["container_upload"]
    file_id: str
    cache_control: CacheControl | None = None


class MidConvSystemBlockParam(_OpaqueBlockParam):
    type: Literal["mid_conv_system"]


ContentBlockParam = Annotated[
    TextBlockParam
    | ImageBlockParam
    | DocumentBlockParam
    | SearchResultBlockParam
    | ToolUseBlockParam
    | ToolResultBlockParam
    | ThinkingBlockParam
    | RedactedThinkingBlockParam
    | ServerToolUseBlockParam
    | WebSearchToolResultBlockParam
    | WebFetchToolResultBlockParam
    | CodeExecutionToolResultBlockParam
    | BashCodeExecutionToolResultBlockParam
    | TextEditorCodeExecutionToolResultBlockParam
    | ToolSearchToolResultBlockParam
    | ContainerUploadBlockParam
    | MidConvSystemBlockParam,
    Field(discriminator="type"),
]
