"""Tool definitions (`tools`) and `tool_choice` (reference §1.4), one class per `type`.

Custom tools are what Sijo runs. The versioned Anthropic-defined tools (bash, text editor, web
search, …) are recognised so that using one gets a 400 naming it rather than a schema error.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Discriminator, Field, Tag, field_validator

from sijo.protocol.base import CacheControl, WireModel

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


def _tool_kind(value: Any) -> str:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return "custom" if kind in (None, "custom") else "versioned"


ToolParam = Annotated[
    Annotated[CustomTool, Tag("custom")] | Annotated[VersionedTool, Tag("versioned")],
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
