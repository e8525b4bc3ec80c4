"""Tool definitions (`tools`) and `tool_choice` (reference §1.4), one class per `type`.

Custom tools are run by the client. The server tools (web search, web fetch, code execution) are
run by Sijo (`sijo.tools`). Other versioned Anthropic-defined tools (bash, text editor, memory, …)
are recognised so that using one gets a 400 naming it rather than a schema error.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Discriminator, Field, Tag, field_validator

from sijo.protocol.base import CacheControl, WireModel
from sijo.protocol.content import CitationsConfigParam

Caller = Literal["direct", "code_execution_20250825", "code_execution_20260120", "code_execution_20260521"]


class InputSchema(WireModel):
    """A tool's `input_schema`: a JSON Schema whose top level is an object."""

    model_config = ConfigDict(extra="allow", frozen=True)
    type: Literal["object"]
    properties: dict[str, Any] | None = None
    required: list[str] | None = None


class CustomTool(WireModel):
    type: Literal["custom"] | None = None
    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    description: str | None = None
    input_schema: InputSchema
    cache_control: CacheControl | None = None
    strict: bool | None = None
    defer_loading: bool | None = None
    allowed_callers: list[Caller] | None = None
    input_examples: list[dict[str, Any]] | None = None
    eager_input_streaming: bool | None = None

    def schema_dict(self) -> dict[str, Any]:
        return self.input_schema.model_dump(exclude_none=True)


class VersionedTool(WireModel):
    """An Anthropic-defined tool (`bash_20250124`, `web_search_20250305`, …): recognised, not run yet."""

    model_config = ConfigDict(extra="allow", frozen=True)
    type: str
    name: str

    @field_validator("type")
    @classmethod
    def _versioned(cls, value: str) -> str:
        if value == "custom" or not value[-8:].isdigit():
            raise ValueError(f"unknown tool type {value!r}")
        return value


class UserLocation(WireModel):
    type: Literal["approximate"]
    city: str | None = Field(default=None, min_length=1, max_length=255)
    region: str | None = Field(default=None, min_length=1, max_length=255)
    country: str | None = Field(default=None, min_length=2, max_length=2)
    timezone: str | None = Field(default=None, min_length=1, max_length=255)


class _ServerTool(WireModel):
    cache_control: CacheControl | None = None
    defer_loading: bool | None = None
    strict: bool | None = None
    allowed_callers: list[Caller] | None = None


class WebSearchTool(_ServerTool):
    type: Literal["web_search_20250305", "web_search_20260209", "web_search_20260318"]
    name: Literal["web_search"]
    max_uses: int | None = Field(default=None, gt=0)
    allowed_domains: list[str] | None = None
    blocked_domains: list[str] | None = None
    user_location: UserLocation | None = None


class WebFetchTool(_ServerTool):
    type: Literal["web_fetch_20250910", "web_fetch_20260209", "web_fetch_20260309", "web_fetch_20260318"]
    name: Literal["web_fetch"]
    max_uses: int | None = Field(default=None, gt=0)
    allowed_domains: list[str] | None = None
    blocked_domains: list[str] | None = None
    citations: CitationsConfigParam | None = None
    max_content_tokens: int | None = Field(default=None, gt=0)
    use_cache: bool | None = None
    url_sources: Any = None


class CodeExecutionTool(_ServerTool):
    type: Literal[
        "code_execution_20250522",
        "code_execution_20250825",
        "code_execution_20260120",
        "code_execution_20260521",
    ]
    name: Literal["code_execution"]


ServerTool = WebSearchTool | WebFetchTool | CodeExecutionTool

_SERVER_KINDS = ("web_search_", "web_fetch_", "code_execution_")


def _tool_kind(value: Any) -> str:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    if kind in (None, "custom"):
        return "custom"
    for prefix in _SERVER_KINDS:
        if isinstance(kind, str) and kind.startswith(prefix) and kind[len(prefix) :].isdigit():
            return prefix[:-1]
    return "versioned"


ToolParam = Annotated[
    Annotated[CustomTool, Tag("custom")]
    | Annotated[WebSearchTool, Tag("web_search")]
    | Annotated[WebFetchTool, Tag("web_fetch")]
    | Annotated[CodeExecutionTool, Tag("code_execution")]
    | Annotated[VersionedTool, Tag("versioned")],
    Discriminator(_tool_kind),
]


class ToolChoiceAuto(WireModel):
    type: Literal["auto"]
    disable_parallel_tool_use: bool | None = None


class ToolChoiceAny(WireModel):
    type: Literal["any"]
    disable_parallel_tool_use: bool | None = None


class ToolChoiceTool(WireModel):
    type: Literal["tool"]
    name: str
    disable_parallel_tool_use: bool | None = None


class ToolChoiceNone(WireModel):
    type: Literal["none"]


ToolChoice = Annotated[
    ToolChoiceAuto | ToolChoiceAny | ToolChoiceTool | ToolChoiceNone, Field(discriminator="type")
]
