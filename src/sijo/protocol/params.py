"""Request bodies: `MessageCreateParams` (POST /v1/messages) and `CountTokensParams`.

Fields Sijo does not run yet are still declared (typed loosely), so that using one gets a 400
naming it instead of the generic "Extra inputs are not permitted" (reference §1.1).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from sijo.protocol.base import CacheControl, WireModel
from sijo.protocol.content import ContentBlockParam, TextBlockParam
from sijo.protocol.context_management import ContextManagementConfig
from sijo.protocol.reasoning import JsonSchemaFormat, OutputConfig, ThinkingConfig
from sijo.protocol.tools import ToolChoice, ToolParam


class MessageParam(WireModel):
    role: Literal["user", "assistant", "system"]
    content: str | list[ContentBlockParam]


class Metadata(WireModel):
    user_id: str | None = Field(default=None, max_length=256)


class _ConversationParams(WireModel):
    """What both Messages and count_tokens accept."""

    model: str
    messages: list[MessageParam] = Field(max_length=100_000)
    system: str | list[TextBlockParam] | None = None
    tools: list[ToolParam] | None = None
    tool_choice: ToolChoice | None = None
    thinking: ThinkingConfig | None = None
    output_config: OutputConfig | None = None
    output_format: JsonSchemaFormat | None = None  # deprecated alias of output_config.format
    cache_control: CacheControl | None = None
    context_management: ContextManagementConfig | None = None
    mcp_servers: Any = None


class MessageCreateParams(_ConversationParams):
    max_tokens: int = Field(ge=0)
    stream: bool = False
    temperature: float | None = Field(default=None, ge=0.0, le=1.0)
    top_p: float | None = Field(default=None, ge=0.0, le=1.0)
    top_k: int | None = Field(default=None, ge=0, le=2**31 - 1)
    stop_sequences: list[str] | None = None
    metadata: Metadata | None = None
    service_tier: Literal["auto", "standard_only"] | None = None
    inference_geo: str | None = None
    speed: Literal["standard", "fast"] | None = None
    container: Any = None
    diagnostics: Any = None
    fallbacks: Any = None
    fallback_credit_token: Any = None
    thread: Any = None  # message threads (beta): refused with the API's `thread_unsupported_request`


class CountTokensParams(_ConversationParams):
    pass


# The body fields of the real API that Sijo does not run yet; a request using one gets a 400.
NOT_YET_SUPPORTED: tuple[str, ...] = (
    "mcp_servers",
    "diagnostics",
    "fallbacks",
    "fallback_credit_token",
)
