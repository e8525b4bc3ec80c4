"""OpenAI chat messages as Anthropic `messages` and `system`, remembering where each block came from.

System and developer messages are hoisted and joined with one newline, as the Claude API's layer
does (its only system prompt comes first). Consecutive messages of one role are merged here, not
later, so that every content block's origin is known: `messages.2.content.1` of the translation
names, say, the second of two `tool` messages, `messages.4`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from sijo.errors import InvalidRequestError, shown
from sijo.protocol.openai import (
    ChatAssistantMessage,
    ChatAudioPart,
    ChatDeveloperMessage,
    ChatFilePart,
    ChatFunctionCall,
    ChatFunctionMessage,
    ChatImagePart,
    ChatMessage,
    ChatSystemMessage,
    ChatTextPart,
    ChatToolMessage,
    ChatUserMessage,
)


@dataclass(frozen=True, slots=True)
class Origin:
    """Where one translated content block came from: `path`, within the request's `message`.
    `exact`: the block is that part itself, so a path inside it is the same inside the part."""

    message: str
    path: str
    exact: bool = False


@dataclass(slots=True)
class Conversation:
    messages: list[dict[str, Any]] = field(default_factory=list)
    origins: list[list[Origin]] = field(default_factory=list)
    system: str | None = None
    system_origin: str = "messages"
    ignored: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _Builder:
    conversation: Conversation = field(default_factory=Conversation)
    system: list[str] = field(default_factory=list)
    calls: dict[str, str] = field(default_factory=dict)  # function name → its latest call's id

    def add(self, role: str, blocks: list[tuple[dict[str, Any], Origin]]) -> None:
        """Append blocks as a `role` message, merged into the last message if it has that role."""
        if not blocks:
            return
        messages, origins = self.conversation.messages, self.conversation.origins
        if not messages or messages[-1]["role"] != role:
            messages.append({"role": role, "content": []})
            origins.append([])
        messages[-1]["content"] += [block for block, _ in blocks]
        origins[-1] += [origin for _, origin in blocks]


def to_messages(messages: list[ChatMessage]) -> Conversation:
    builder = _Builder()
    for i, message in enumerate(messages):
        where = f"messages.{i}"
        if isinstance(message, ChatSystemMessage | ChatDeveloperMessage):
            if not builder.system:
                builder.conversation.system_origin = where
            builder.system.append(_text(message.content))
        elif isinstance(message, ChatUserMessage):
            builder.add("user", _user_blocks(message, where, builder.conversation.ignored))
        elif isinstance(message, ChatAssistantMessage):
            builder.add("assistant", _assistant_blocks(message, where, builder.calls))
        elif isinstance(message, ChatToolMessage):
            result = _tool_result(message.tool_call_id, _text(message.content))
            builder.add("user", [(result, Origin(where, where))])
        else:
            builder.add("user", [_function_result(message, where, builder.calls)])
    if builder.system:
        builder.conversation.system = "\n".join(builder.system)
    return builder.conversation


def _text(content: str | list[ChatTextPart] | None) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    return "\n".join(part.text for part in content)


def _user_blocks(
    message: ChatUserMessage, where: str, ignored: list[str]
) -> list[tuple[dict[str, Any], Origin]]:
    if isinstance(message.content, str):
        return [({"type": "text", "text": message.content}, Origin(where, f"{where}.content"))]
    blocks: list[tuple[dict[str, Any], Origin]] = []
    for j, part in enumerate(message.content):
        origin = Origin(where, f"{where}.content.{j}", exact=True)
        if isinstance(part, ChatTextPart):
            blocks.append(({"type": "text", "text": part.text}, origin))
        elif isinstance(part, ChatImagePart):
            blocks.append((_image(part.image_url.url), origin))
        elif isinstance(part, ChatAudioPart):
            ignored.append(f"{where}.content.{j} (input_audio)")  # the layer strips audio input
        elif isinstance(part, ChatFilePart):
            raise InvalidRequestError(
                f"{where}.content.{j}.type: 'file' content parts are not supported by Sijo yet"
            )
    return blocks


def _image(url: str) -> dict[str, Any]:
    """An `image_url` as an Anthropic image block: a `data:` URL is inline base64, else a URL."""
    header, comma, data = url.partition(",")
    if url.startswith("data:") and comma and header.endswith(";base64"):
        media_type = header.removeprefix("data:").removesuffix(";base64")
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
    return {"type": "image", "source": {"type": "url", "url": url}}


def _assistant_blocks(
    message: ChatAssistantMessage, where: str, calls: dict[str, str]
) -> list[tuple[dict[str, Any], Origin]]:
    blocks: list[tuple[dict[str, Any], Origin]] = []
    if isinstance(message.content, str):
        if message.content:
            blocks.append(({"type": "text", "text": message.content}, Origin(where, f"{where}.content")))
    else:
        for j, part in enumerate(message.content or []):
            if isinstance(part, ChatTextPart) and part.text:
                blocks.append(
                    ({"type": "text", "text": part.text}, Origin(where, f"{where}.content.{j}", True))
                )
    for j, call in enumerate(message.tool_calls or []):
        path = f"{where}.tool_calls.{j}"
        use = _tool_use(call.id, call.function, f"{path}.function.arguments")
        calls[call.function.name] = call.id
        blocks.append((use, Origin(where, path)))
    if message.function_call is not None:
        call_id = f"call_{where.replace('.', '_')}"  # the deprecated form carries no id
        use = _tool_use(call_id, message.function_call, f"{where}.function_call.arguments")
        calls[message.function_call.name] = call_id
        blocks.append((use, Origin(where, f"{where}.function_call")))
    return blocks


def _tool_use(call_id: str, function: ChatFunctionCall, arguments_path: str) -> dict[str, Any]:
    try:
        arguments = json.loads(function.arguments) if function.arguments.strip() else {}
    except ValueError:
        arguments = None
    if not isinstance(arguments, dict):
        raise InvalidRequestError(f"{arguments_path}: must be a JSON object, got {shown(function.arguments)}")
    return {"type": "tool_use", "id": call_id, "name": function.name, "input": arguments}


def _tool_result(tool_use_id: str, text: str) -> dict[str, Any]:
    return {"type": "tool_result", "tool_use_id": tool_use_id, "content": text}


def _function_result(
    message: ChatFunctionMessage, where: str, calls: dict[str, str]
) -> tuple[dict[str, Any], Origin]:
    call_id = calls.get(message.name)
    if call_id is None:
        raise InvalidRequestError(
            f"{where}.name: no earlier assistant function_call named {shown(json.dumps(message.name))}"
        )
    return _tool_result(call_id, message.content or ""), Origin(where, where)
