"""A chat completion request as `MessageCreateParams`, following the Claude API's OpenAI SDK
compatibility layer (platform.claude.com, "OpenAI SDK compatibility"):

- `system` and `developer` messages, wherever they are, are hoisted and joined with one newline
  into the single system prompt; `tool` (and deprecated `function`) messages become `tool_result`
  blocks, assistant `tool_calls` become `tool_use` blocks.
- `max_completion_tokens` (or `max_tokens`) is `max_tokens`; `temperature` above 1 is capped at 1;
  `stop` works except for whitespace-only sequences; `n` must be 1.
- `tools[].function` becomes a custom tool (`strict` is ignored: every call is constrained to its
  schema anyway); `tool_choice` `auto`/`none`/`required`/a named function become `auto`/`none`/
  `any`/`tool`, and `parallel_tool_calls: false` is `disable_parallel_tool_use`.
- `extra_body={"thinking": …}` is the Anthropic thinking config. Beyond the Claude API's layer,
  which ignores them, Sijo runs `reasoning_effort` (adaptive thinking at that effort; `none` is
  none) and `response_format` `json_schema` (`output_config.format`, a constrained answer); and it
  caches prompts automatically, as OpenAI does, so `prompt_tokens_details.cached_tokens` is real.
- The fields the layer documents as ignored are accepted with any value and logged.

Errors found later, by the pipeline, name Anthropic fields; `Origins` names the client's instead.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from sijo.errors import ApiError, InvalidRequestError
from sijo.openai_compat.messages import Origin, to_messages
from sijo.protocol.openai import (
    IGNORED_FIELDS,
    ChatAllowedToolsChoice,
    ChatCompletionCreateParams,
    ChatCustomTool,
    ChatFunctionDefinition,
    ChatFunctionName,
    ChatNamedToolChoice,
    ChatResponseFormatJsonSchema,
)
from sijo.protocol.params import MessageCreateParams
from sijo.protocol.validation import describe_errors


@dataclass(slots=True)
class Origins:
    """Where each part of the translated request came from, so that an error names the client's
    field: `messages.3.content.0` of the translation may be `messages.5` of the request."""

    fields: dict[str, str] = field(default_factory=dict)  # Anthropic path prefix → OpenAI one
    messages: list[list[Origin]] = field(default_factory=list)  # per message, per content block
    tools: list[tuple[str, bool]] = field(default_factory=list)  # path, and whether under `function`

    def path(self, anthropic: str) -> str:
        parts = anthropic.split(".")
        if parts[0] == "messages" and len(parts) > 1 and parts[1].isdigit():
            return self._message_path(int(parts[1]), parts[2:]) or anthropic
        if parts[0] == "tools" and len(parts) > 1 and parts[1].isdigit() and int(parts[1]) < len(self.tools):
            where, nested = self.tools[int(parts[1])]
            rest = parts[2:]
            if rest[:1] == ["input_schema"]:
                rest = ["parameters", *rest[1:]]
            return ".".join([where, *(["function"] if nested and rest else []), *rest])
        for prefix in sorted(self.fields, key=len, reverse=True):
            if anthropic == prefix or anthropic.startswith(prefix + "."):
                return self.fields[prefix] + anthropic[len(prefix) :]
        return anthropic

    def _message_path(self, index: int, rest: list[str]) -> str | None:
        if index >= len(self.messages) or not self.messages[index]:
            return None
        blocks = self.messages[index]
        if len(rest) >= 2 and rest[0] == "content" and rest[1].isdigit() and int(rest[1]) < len(blocks):
            origin = blocks[int(rest[1])]
            return ".".join([origin.path, *rest[2:]]) if origin.exact else origin.path
        return blocks[0].message

    def renamed(self, error: ApiError) -> ApiError:
        """`error` naming the client's field, where its message starts with a field path.

        Sijo's 400s are worded `path.to.field: what is wrong` (protocol/validation.py); only that
        leading path is rewritten, and only for plain invalid-request errors."""
        if type(error) is not InvalidRequestError:
            return error
        head, sep, tail = error.message.partition(": ")
        if not sep or " " in head:
            return error
        return InvalidRequestError(f"{self.path(head)}: {tail}", headers=error.headers)


@dataclass(frozen=True, slots=True)
class Translation:
    params: MessageCreateParams
    origins: Origins
    include_usage: bool  # stream_options.include_usage: a last chunk with the usage
    legacy_functions: bool  # `functions` was used: answer with `function_call`, not `tool_calls`
    ignored: tuple[str, ...]  # what the request set that is not run, for the log


def to_message_params(request: ChatCompletionCreateParams, default_max_tokens: int) -> Translation:
    """The request as Anthropic params; a 400 naming the request's own field if it cannot be."""
    if request.n is not None and request.n != 1:
        raise InvalidRequestError(f"n: must be 1 (Sijo returns one choice), got {request.n}")
    origins = Origins()
    ignored = [name for name in IGNORED_FIELDS if getattr(request, name) is not None]
    ignored += sorted(request.model_extra or {})
    conversation = to_messages(request.messages)
    origins.messages = conversation.origins
    ignored += conversation.ignored
    data: dict[str, Any] = {
        "model": request.model,
        "messages": conversation.messages,
        "stream": bool(request.stream),
        # OpenAI caches prompts without being asked; the Claude API's automatic caching does the same.
        "cache_control": {"type": "ephemeral"},
    }
    if conversation.system is not None:
        data["system"] = conversation.system
        origins.fields["system"] = conversation.system_origin
    data["max_tokens"], origins.fields["max_tokens"] = _max_tokens(request, default_max_tokens)
    ignored += _sampling(request, data)
    ignored += _tools(request, data, origins)
    ignored += _output(request, data, origins)
    try:
        params = MessageCreateParams.model_validate(data)
    except ValidationError as exc:
        error = InvalidRequestError(describe_errors(exc.errors(), data))
        raise origins.renamed(error) from None
    include_usage = bool(request.stream_options and request.stream_options.include_usage)
    legacy = request.functions is not None and request.tools is None
    return Translation(params, origins, include_usage, legacy, tuple(ignored))


def _max_tokens(request: ChatCompletionCreateParams, default: int) -> tuple[int, str]:
    if request.max_completion_tokens is not None:
        return request.max_completion_tokens, "max_completion_tokens"
    if request.max_tokens is not None:
        return request.max_tokens, "max_tokens"
    return default, "max_completion_tokens"


def _sampling(request: ChatCompletionCreateParams, data: dict[str, Any]) -> list[str]:
    ignored: list[str] = []
    if request.temperature is not None:
        data["temperature"] = min(request.temperature, 1.0)  # the layer caps values above 1 at 1
    if request.top_p is not None:
        data["top_p"] = request.top_p
    stops = [request.stop] if isinstance(request.stop, str) else list(request.stop or [])
    kept = [stop for stop in stops if stop.strip()]
    if len(kept) < len(stops):
        ignored.append("stop (whitespace-only sequences)")
    if kept:
        data["stop_sequences"] = kept
    return ignored


def _tools(request: ChatCompletionCreateParams, data: dict[str, Any], origins: Origins) -> list[str]:
    """`tools` (or the deprecated `functions`) and `tool_choice` (or `function_call`)."""
    if request.tools is not None and request.functions is not None:
        raise InvalidRequestError("functions: cannot be used together with tools; use tools")
    definitions: list[tuple[ChatFunctionDefinition, str, bool]] = []
    for i, tool in enumerate(request.tools or []):
        if isinstance(tool, ChatCustomTool):
            raise InvalidRequestError(f"tools.{i}.type: 'custom' tools are not supported by Sijo yet")
        definitions.append((tool.function, f"tools.{i}", True))
    definitions += [(function, f"functions.{i}", False) for i, function in enumerate(request.functions or [])]
    legacy = request.functions is not None
    choice, allowed = _tool_choice(request, legacy)
    if allowed is not None:
        _check_allowed(allowed, [d.name for d, _, _ in definitions])
        definitions = [d for d in definitions if d[0].name in allowed]
    if definitions:
        data["tools"] = [_custom_tool(definition) for definition, _, _ in definitions]
        origins.tools = [(where, nested) for _, where, nested in definitions]
        origins.fields["tools"] = "functions" if legacy else "tools"
    if choice is not None:
        data["tool_choice"] = choice
        where = "function_call" if request.function_call is not None else "tool_choice"
        origins.fields["tool_choice.name"] = f"{where}{'.function' if where == 'tool_choice' else ''}.name"
        origins.fields["tool_choice"] = where
    return ["tools.function.strict"] if any(d.strict is not None for d, _, _ in definitions) else []


def _custom_tool(definition: ChatFunctionDefinition) -> dict[str, Any]:
    tool: dict[str, Any] = {
        "name": definition.name,
        "input_schema": definition.parameters or {"type": "object", "properties": {}},
    }
    if definition.description is not None:
        tool["description"] = definition.description
    return tool


def _tool_choice(
    request: ChatCompletionCreateParams, legacy: bool
) -> tuple[dict[str, Any] | None, list[str] | None]:
    """The Anthropic `tool_choice`, and the names `allowed_tools` keeps (None: every tool)."""
    choice = request.tool_choice if request.tool_choice is not None else request.function_call
    # The deprecated `function_call` answer holds one call; `parallel_tool_calls` defaults to true.
    serial = legacy or request.parallel_tool_calls is False
    flag = {"disable_parallel_tool_use": True} if serial else {}
    allowed: list[str] | None = None
    if choice is None:
        return ({"type": "auto", **flag} if serial and (request.tools or request.functions) else None), None
    if choice == "none":
        return {"type": "none"}, None
    if isinstance(choice, ChatAllowedToolsChoice):
        allowed = [tool.function.name for tool in choice.allowed_tools.tools]
        choice = choice.allowed_tools.mode
    if choice == "auto":
        return {"type": "auto", **flag}, allowed
    if choice == "required":
        return {"type": "any", **flag}, allowed
    if isinstance(choice, ChatNamedToolChoice | ChatFunctionName):
        name = choice.function.name if isinstance(choice, ChatNamedToolChoice) else choice.name
        return {"type": "tool", "name": name, **flag}, None
    raise InvalidRequestError("tool_choice.type: 'custom' tools are not supported by Sijo yet")


def _check_allowed(allowed: list[str], names: list[str]) -> None:
    for i, name in enumerate(allowed):
        if name not in names:
            raise InvalidRequestError(
                f"tool_choice.allowed_tools.tools.{i}.function.name: no function named "
                f"{json.dumps(name)[:100]} in tools"
            )


def _output(request: ChatCompletionCreateParams, data: dict[str, Any], origins: Origins) -> list[str]:
    """`response_format` (a `json_schema` is a constrained answer), `reasoning_effort`, `thinking`."""
    ignored: list[str] = []
    output: dict[str, Any] = {}
    fmt = request.response_format
    if isinstance(fmt, ChatResponseFormatJsonSchema) and fmt.json_schema.schema_ is not None:
        output["format"] = {"type": "json_schema", "schema": fmt.json_schema.schema_}
        origins.fields["output_config.format.schema"] = "response_format.json_schema.schema"
        origins.fields["output_config.format"] = "response_format"
    elif fmt is not None and fmt.type != "text":
        ignored.append(f"response_format ({fmt.type} without a schema)")
    if request.thinking is not None:
        data["thinking"] = request.thinking.model_dump(mode="json", exclude_none=True)
    effort = request.reasoning_effort
    if effort is not None and effort != "none":
        output["effort"] = "low" if effort == "minimal" else effort
        origins.fields["output_config.effort"] = "reasoning_effort"
        data.setdefault("thinking", {"type": "adaptive"})
    if output:
        data["output_config"] = output
    return ignored
