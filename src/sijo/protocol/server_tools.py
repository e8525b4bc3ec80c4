"""The server tools' response blocks (reference §12): `server_tool_use` and each tool's result block,
one class per `type`, with the error variants and codes the SDKs declare.

A result block is sent whole in its `content_block_start` (no deltas), as the API does.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from sijo.protocol.base import ResponseModel

WebSearchErrorCode = Literal[
    "invalid_tool_input",
    "unavailable",
    "max_uses_exceeded",
    "too_many_requests",
    "query_too_long",
    "request_too_large",
]
WebFetchErrorCode = Literal[
    "invalid_tool_input",
    "url_too_long",
    "url_not_allowed",
    "url_not_in_prior_context",
    "url_not_accessible",
    "unsupported_content_type",
    "too_many_requests",
    "max_uses_exceeded",
    "unavailable",
]
CodeExecutionErrorCode = Literal[
    "invalid_tool_input",
    "unavailable",
    "too_many_requests",
    "execution_time_exceeded",
    "output_file_too_large",
]
TextEditorErrorCode = Literal[
    "invalid_tool_input", "unavailable", "too_many_requests", "execution_time_exceeded", "file_not_found"
]


class DirectCaller(ResponseModel):
    type: Literal["direct"] = "direct"


class ServerToolUseBlock(ResponseModel):
    type: Literal["server_tool_use"] = "server_tool_use"
    id: str  # srvtoolu_…
    name: str
    input: dict[str, Any]
    caller: DirectCaller = DirectCaller()


# web_search


class WebSearchResultBlock(ResponseModel):
    type: Literal["web_search_result"] = "web_search_result"
    url: str
    title: str
    encrypted_content: str  # the page text Sijo showed the model, signed: read back on a later turn
    page_age: str | None = None


class WebSearchToolResultError(ResponseModel):
    type: Literal["web_search_tool_result_error"] = "web_search_tool_result_error"
    error_code: WebSearchErrorCode


class WebSearchToolResultBlock(ResponseModel):
    type: Literal["web_search_tool_result"] = "web_search_tool_result"
    tool_use_id: str
    content: list[WebSearchResultBlock] | WebSearchToolResultError
    caller: DirectCaller = DirectCaller()


# web_fetch


class PlainTextDocumentSource(ResponseModel):
    type: Literal["text"] = "text"
    media_type: Literal["text/plain"] = "text/plain"
    data: str


class Base64PdfDocumentSource(ResponseModel):
    type: Literal["base64"] = "base64"
    media_type: Literal["application/pdf"] = "application/pdf"
    data: str


class CitationsConfig(ResponseModel):
    enabled: bool


class DocumentBlock(ResponseModel):
    type: Literal["document"] = "document"
    source: Annotated[PlainTextDocumentSource | Base64PdfDocumentSource, Field(discriminator="type")]
    title: str | None = None
    citations: CitationsConfig | None = None


class WebFetchResultBlock(ResponseModel):
    type: Literal["web_fetch_result"] = "web_fetch_result"
    url: str
    retrieved_at: str | None
    content: DocumentBlock


class WebFetchToolResultError(ResponseModel):
    type: Literal["web_fetch_tool_result_error"] = "web_fetch_tool_result_error"
    error_code: WebFetchErrorCode


class WebFetchToolResultBlock(ResponseModel):
    type: Literal["web_fetch_tool_result"] = "web_fetch_tool_result"
    tool_use_id: str
    content: Annotated[WebFetchResultBlock | WebFetchToolResultError, Field(discriminator="type")]
    caller: DirectCaller = DirectCaller()


# code_execution_20250825: bash


class BashCodeExecutionOutputBlock(ResponseModel):
    type: Literal["bash_code_execution_output"] = "bash_code_execution_output"
    file_id: str


class BashCodeExecutionResultBlock(ResponseModel):
    type: Literal["bash_code_execution_result"] = "bash_code_execution_result"
    stdout: str
    stderr: str
    return_code: int
    content: list[BashCodeExecutionOutputBlock]


class BashCodeExecutionToolResultError(ResponseModel):
    type: Literal["bash_code_execution_tool_result_error"] = "bash_code_execution_tool_result_error"
    error_code: CodeExecutionErrorCode


class BashCodeExecutionToolResultBlock(ResponseModel):
    type: Literal["bash_code_execution_tool_result"] = "bash_code_execution_tool_result"
    tool_use_id: str
    content: Annotated[
        BashCodeExecutionResultBlock | BashCodeExecutionToolResultError, Field(discriminator="type")
    ]


# code_execution_20250825: the text editor


class TextEditorViewResult(ResponseModel):
    type: Literal["text_editor_code_execution_view_result"] = "text_editor_code_execution_view_result"
    file_type: Literal["text", "image", "pdf"]
    content: str
    num_lines: int | None = None
    start_line: int | None = None
    total_lines: int | None = None


class TextEditorCreateResult(ResponseModel):
    type: Literal["text_editor_code_execution_create_result"] = "text_editor_code_execution_create_result"
    is_file_update: bool


class TextEditorStrReplaceResult(ResponseModel):
    type: Literal["text_editor_code_execution_str_replace_result"] = (
        "text_editor_code_execution_str_replace_result"
    )
    old_start: int | None = None
    old_lines: int | None = None
    new_start: int | None = None
    new_lines: int | None = None
    lines: list[str] | None = None


class TextEditorToolResultError(ResponseModel):
    type: Literal["text_editor_code_execution_tool_result_error"] = (
        "text_editor_code_execution_tool_result_error"
    )
    error_code: TextEditorErrorCode
    error_message: str | None = None


TextEditorResult = Annotated[
    TextEditorViewResult | TextEditorCreateResult | TextEditorStrReplaceResult | TextEditorToolResultError,
    Field(discriminator="type"),
]


class TextEditorCodeExecutionToolResultBlock(ResponseModel):
    type: Literal["text_editor_code_execution_tool_result"] = "text_editor_code_execution_tool_result"
    tool_use_id: str
    content: TextEditorResult


# code_execution_20250522 (legacy: Python code)


class CodeExecutionOutputBlock(ResponseModel):
    type: Literal["code_execution_output"] = "code_execution_output"
    file_id: str


class CodeExecutionResultBlock(ResponseModel):
    type: Literal["code_execution_result"] = "code_execution_result"
    stdout: str
    stderr: str
    return_code: int
    content: list[CodeExecutionOutputBlock]


class CodeExecutionToolResultError(ResponseModel):
    type: Literal["code_execution_tool_result_error"] = "code_execution_tool_result_error"
    error_code: CodeExecutionErrorCode


class CodeExecutionToolResultBlock(ResponseModel):
    type: Literal["code_execution_tool_result"] = "code_execution_tool_result"
    tool_use_id: str
    content: Annotated[CodeExecutionResultBlock | CodeExecutionToolResultError, Field(discriminator="type")]


ServerToolResultBlock = (
    WebSearchToolResultBlock
    | WebFetchToolResultBlock
    | BashCodeExecutionToolResultBlock
    | TextEditorCodeExecutionToolResultBlock
    | CodeExecutionToolResultBlock
)


class Container(ResponseModel):
    """The code execution container a reply used (`Message.container`, `message_delta.delta.container`)."""

    id: str
    expires_at: str  # RFC 3339
