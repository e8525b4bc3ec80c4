"""OpenAI Chat Completions wire types, for the OpenAI SDK compatibility layer (`api/openai.py`).

The Claude API documents what its compatibility layer takes (platform.claude.com, "OpenAI SDK
compatibility"): most fields run, a documented few must have one value (`n`), and the rest are
ignored rather than refused — so unknown keys are ignored here, unlike the Anthropic wire types,
which reject them. Every class is prefixed `Chat`/`OpenAI` so that none shares a name with an
Anthropic wire type in the OpenAPI document.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from sijo.protocol.base import ResponseModel
from sijo.protocol.reasoning import ThinkingConfig


class OpenAIWireModel(BaseModel):
    """A request-side OpenAI object: unknown keys are ignored, as the Claude API's layer does."""

    model_config = ConfigDict(extra="ignore", frozen=True)


# --- request: content parts ----------------------------------------------------------------------


class ChatTextPart(OpenAIWireModel):
    type: Literal["text"]
    text: str


class ChatImageUrl(OpenAIWireModel):
    url: str
    detail: Any = None  # ignored


class ChatImagePart(OpenAIWireModel):
    type: Literal["image_url"]
    image_url: ChatImageUrl


class ChatAudioPart(OpenAIWireModel):
    """Audio input: not supported by the Claude API's layer, which strips it from the input."""

    type: Literal["input_audio"]
    input_audio: Any = None


class ChatFilePart(OpenAIWireModel):
    type: Literal["file"]
    file: Any = None


class ChatRefusalPart(OpenAIWireModel):
    type: Literal["refusal"]
    refusal: str


ChatUserPart = Annotated[
    ChatTextPart | ChatImagePart | ChatAudioPart | ChatFilePart, Field(discriminator="type")
]
ChatAssistantPart = Annotated[ChatTextPart | ChatRefusalPart, Field(discriminator="type")]


# --- request: messages ---------------------------------------------------------------------------


class ChatFunctionCall(OpenAIWireModel):
    name: str
    arguments: str  # JSON text


class ChatToolCall(OpenAIWireModel):
    id: str
    type: Literal["function"]
    function: ChatFunctionCall


class ChatSystemMessage(OpenAIWireModel):
    role: Literal["system"]
    content: str | list[ChatTextPart]
    name: str | None = None  # ignored


class ChatDeveloperMessage(OpenAIWireModel):
    role: Literal["developer"]
    content: str | list[ChatTextPart]
    name: str | None = None  # ignored


class ChatUserMessage(OpenAIWireModel):
    role: Literal["user"]
    content: str | list[ChatUserPart]
    name: str | None = None  # ignored


class ChatAssistantMessage(OpenAIWireModel):
    role: Literal["assistant"]
    content: str | list[ChatAssistantPart] | None = None
    tool_calls: list[ChatToolCall] | None = None
    function_call: ChatFunctionCall | None = None  # deprecated form of one tool call
    name: str | None = None  # ignored
    refusal: str | None = None  # ignored
    audio: Any = None  # ignored


class ChatToolMessage(OpenAIWireModel):
    role: Literal["tool"]
    content: str | list[ChatTextPart]
    tool_call_id: str


class ChatFunctionMessage(OpenAIWireModel):
    """The deprecated answer to a `function_call`: paired with the latest call of that name."""

    role: Literal["function"]
    content: str | None
    name: str


ChatMessage = Annotated[
    ChatSystemMessage
    | ChatDeveloperMessage
    | ChatUserMessage
    | ChatAssistantMessage
    | ChatToolMessage
    | ChatFunctionMessage,
    Field(discriminator="role"),
]


# --- request: tools ------------------------------------------------------------------------------


class ChatFunctionDefinition(OpenAIWireModel):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None  # ignored, as documented: every call is constrained to its schema anyway


class ChatFunctionTool(OpenAIWireModel):
    type: Literal["function"]
    function: ChatFunctionDefinition


class ChatCustomTool(OpenAIWireModel):
    """A free-form (grammar or text) tool: recognised, so that it is refused by name."""

    type: Literal["custom"]
    custom: Any = None


ChatTool = Annotated[ChatFunctionTool | ChatCustomTool, Field(discriminator="type")]


class ChatFunctionName(OpenAIWireModel):
    name: str


class ChatNamedToolChoice(OpenAIWireModel):
    type: Literal["function"]
    function: ChatFunctionName


class ChatNamedCustomToolChoice(OpenAIWireModel):
    type: Literal["custom"]
    custom: Any = None


class ChatAllowedTools(OpenAIWireModel):
    mode: Literal["auto", "required"]
    tools: list[ChatNamedToolChoice]


class ChatAllowedToolsChoice(OpenAIWireModel):
    type: Literal["allowed_tools"]
    allowed_tools: ChatAllowedTools


ChatToolChoice = (
    Literal["none", "auto", "required"]
    | Annotated[
        ChatNamedToolChoice | ChatNamedCustomToolChoice | ChatAllowedToolsChoice,
        Field(discriminator="type"),
    ]
)
ChatFunctionCallChoice = Literal["none", "auto"] | ChatFunctionName  # deprecated `function_call`


# --- request: response_format, stream_options ----------------------------------------------------


class ChatResponseFormatText(OpenAIWireModel):
    type: Literal["text"]


class ChatResponseFormatJsonObject(OpenAIWireModel):
    """JSON mode without a schema: ignored, as the Claude API's layer ignores `response_format`
    (the structured-outputs subset cannot say "any object")."""

    type: Literal["json_object"]


class ChatJsonSchema(OpenAIWireModel):
    name: str
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class ChatResponseFormatJsonSchema(OpenAIWireModel):
    type: Literal["json_schema"]
    json_schema: ChatJsonSchema


ChatResponseFormat = Annotated[
    ChatResponseFormatText | ChatResponseFormatJsonObject | ChatResponseFormatJsonSchema,
    Field(discriminator="type"),
]


class ChatStreamOptions(OpenAIWireModel):
    include_usage: bool | None = None
    include_obfuscation: Any = None  # ignored


ReasoningEffort = Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"]


class ChatCompletionCreateParams(OpenAIWireModel):
    """POST /v1/chat/completions. `thinking` is the Anthropic config, sent as `extra_body`."""

    # Unknown keys are kept (not checked) so that the ones a request sent can be logged as ignored.
    model_config = ConfigDict(extra="allow", frozen=True)

    model: str
    messages: list[ChatMessage] = Field(min_length=1, max_length=100_000)
    max_tokens: int | None = Field(default=None, ge=0)
    max_completion_tokens: int | None = Field(default=None, ge=0)
    stream: bool | None = None
    stream_options: ChatStreamOptions | None = None
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, ge=0.0, le=1.0)
    n: int | None = None
    stop: str | list[str] | None = None
    tools: list[ChatTool] | None = None
    tool_choice: ChatToolChoice | None = None
    parallel_tool_calls: bool | None = None
    functions: list[ChatFunctionDefinition] | None = None
    function_call: ChatFunctionCallChoice | None = None
    response_format: ChatResponseFormat | None = None
    reasoning_effort: ReasoningEffort | None = None
    thinking: ThinkingConfig | None = None
    # Documented as ignored by the Claude API's layer: accepted with any value, never used.
    logprobs: Any = None
    top_logprobs: Any = None
    metadata: Any = None
    prediction: Any = None
    presence_penalty: Any = None
    frequency_penalty: Any = None
    seed: Any = None
    service_tier: Any = None
    audio: Any = None
    logit_bias: Any = None
    store: Any = None
    user: Any = None
    modalities: Any = None


IGNORED_FIELDS: tuple[str, ...] = (
    "logprobs",
    "top_logprobs",
    "metadata",
    "prediction",
    "presence_penalty",
    "frequency_penalty",
    "seed",
    "service_tier",
    "audio",
    "logit_bias",
    "store",
    "user",
    "modalities",
)


# --- response ------------------------------------------------------------------------------------

FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "function_call"]


class ChatCompletionFunction(ResponseModel):
    name: str
    arguments: str


class ChatCompletionToolCall(ResponseModel):
    id: str
    type: Literal["function"] = "function"
    function: ChatCompletionFunction


class ChatCompletionMessage(ResponseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None
    refusal: str | None = None
    tool_calls: list[ChatCompletionToolCall] | None = None
    function_call: ChatCompletionFunction | None = None


class ChatCompletionChoice(ResponseModel):
    index: int = 0
    message: ChatCompletionMessage
    finish_reason: FinishReason
    logprobs: None = None


class ChatPromptTokensDetails(ResponseModel):
    cached_tokens: int  # read from the prompt cache
    cache_write_tokens: int  # written to it


class ChatCompletionTokensDetails(ResponseModel):
    reasoning_tokens: int


class ChatCompletionUsage(ResponseModel):
    """`prompt_tokens` counts the whole prompt, cached tokens included, as OpenAI's does."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: ChatPromptTokensDetails
    completion_tokens_details: ChatCompletionTokensDetails


class ChatCompletion(ResponseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatCompletionChoice]
    usage: ChatCompletionUsage
    system_fingerprint: str | None = None
    service_tier: str | None = None


class ChatChunkFunction(ResponseModel):
    name: str | None = None
    arguments: str | None = None


class ChatChunkToolCall(ResponseModel):
    index: int
    id: str | None = None
    type: Literal["function"] | None = None
    function: ChatChunkFunction


class ChatChunkDelta(ResponseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None
    tool_calls: list[ChatChunkToolCall] | None = None
    function_call: ChatChunkFunction | None = None


class ChatChunkChoice(ResponseModel):
    index: int = 0
    delta: ChatChunkDelta
    finish_reason: FinishReason | None = None


class ChatCompletionChunk(ResponseModel):
    """Serialised without its null keys (`exclude_none`), as OpenAI's deltas carry only what changed."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChatChunkChoice]
    usage: ChatCompletionUsage | None = None


# --- models and errors ---------------------------------------------------------------------------


class OpenAIModel(ResponseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str


class OpenAIModelList(ResponseModel):
    object: Literal["list"] = "list"
    data: list[OpenAIModel]


class OpenAIErrorDetail(ResponseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class OpenAIErrorResponse(ResponseModel):
    error: OpenAIErrorDetail
