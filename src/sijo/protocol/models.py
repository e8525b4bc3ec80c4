"""`ModelInfo` and its `capabilities` (reference §9)."""

from __future__ import annotations

from typing import Literal

from sijo.protocol.base import ResponseModel


class Support(ResponseModel):
    supported: bool


class ContextManagementCapability(ResponseModel):
    supported: bool
    clear_thinking_20251015: Support | None = None
    clear_tool_uses_20250919: Support | None = None
    compact_20260112: Support | None = None


class EffortCapability(ResponseModel):
    supported: bool
    low: Support
    medium: Support
    high: Support
    max: Support
    xhigh: Support | None = None


class ThinkingTypes(ResponseModel):
    adaptive: Support
    enabled: Support


class ThinkingCapability(ResponseModel):
    supported: bool
    types: ThinkingTypes


class ModelCapabilities(ResponseModel):
    batch: Support
    citations: Support
    code_execution: Support
    context_management: ContextManagementCapability
    effort: EffortCapability
    image_input: Support
    pdf_input: Support
    structured_outputs: Support
    thinking: ThinkingCapability


class ModelInfo(ResponseModel):
    type: Literal["model"] = "model"
    id: str
    display_name: str
    created_at: str
    max_input_tokens: int | None
    max_tokens: int | None
    capabilities: ModelCapabilities | None


class ModelPage(ResponseModel):
    data: list[ModelInfo]
    has_more: bool
    first_id: str | None
    last_id: str | None
