"""`context_management` — the context editing beta (`context-management-2025-06-27`): the edits a
request asks for, and what the response reports about them (reference §1.1, §2).

    {"edits": [{"type": "clear_thinking_20251015", "keep": "all"},
               {"type": "clear_tool_uses_20250919", "trigger": {"type": "input_tokens", "value": 30000}}]}

The bounds are the API's: a trigger of at least 1, `keep` of at least 0 tool uses or 1 thinking turn.
`compact_20260112` (server-side compaction) is recognised so that it gets a 400 naming it.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field

from sijo.protocol.base import ResponseModel, WireModel


class InputTokensTrigger(WireModel):
    type: Literal["input_tokens"]
    value: int = Field(ge=1)


class ToolUsesTrigger(WireModel):
    type: Literal["tool_uses"]
    value: int = Field(ge=1)


Trigger = Annotated[InputTokensTrigger | ToolUsesTrigger, Field(discriminator="type")]


class ToolUsesKeep(WireModel):
    type: Literal["tool_uses"]
    value: int = Field(ge=0)


class InputTokensClearAtLeast(WireModel):
    type: Literal["input_tokens"]
    value: int = Field(ge=0)


class ClearToolUsesEdit(WireModel):
    type: Literal["clear_tool_uses_20250919"]
    trigger: Trigger | None = None  # default: more than 100,000 input tokens
    keep: ToolUsesKeep | None = None  # default: the 3 most recent tool uses
    clear_at_least: InputTokensClearAtLeast | None = None
    exclude_tools: list[str] | None = None
    clear_tool_inputs: bool | list[str] | None = None  # True: every cleared use's input; a list: by tool


class ThinkingTurns(WireModel):
    type: Literal["thinking_turns"]
    value: int = Field(ge=1)


class AllThinkingTurns(WireModel):
    type: Literal["all"]


ThinkingKeep = Annotated[ThinkingTurns | AllThinkingTurns, Field(discriminator="type")]


class ClearThinkingEdit(WireModel):
    type: Literal["clear_thinking_20251015"]
    keep: ThinkingKeep | Literal["all"] | None = None  # default: the last assistant turn's thinking


class CompactEdit(WireModel):
    """Server-side compaction: recognised, not run (its fields are not checked here)."""

    model_config = ConfigDict(extra="allow", frozen=True)
    type: Literal["compact_20260112"]


ContextEdit = Annotated[ClearToolUsesEdit | ClearThinkingEdit | CompactEdit, Field(discriminator="type")]


class ContextManagementConfig(WireModel):
    edits: list[ContextEdit] = Field(default_factory=list)


class ClearToolUsesApplied(ResponseModel):
    type: Literal["clear_tool_uses_20250919"] = "clear_tool_uses_20250919"
    cleared_tool_uses: int
    cleared_input_tokens: int


class ClearThinkingApplied(ResponseModel):
    type: Literal["clear_thinking_20251015"] = "clear_thinking_20251015"
    cleared_thinking_turns: int
    cleared_input_tokens: int


AppliedEdit = Annotated[ClearToolUsesApplied | ClearThinkingApplied, Field(discriminator="type")]


class ContextManagementResponse(ResponseModel):
    """On a Message (and the stream's final `message_delta`) of a request that sent `context_management`:
    the edits that cleared something, in the order they ran; `[]` when none did."""

    applied_edits: list[AppliedEdit]


class CountTokensContextManagement(ResponseModel):
    original_input_tokens: int  # before the edits; the count's `input_tokens` is after them
