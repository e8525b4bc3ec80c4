"""Wire params → an engine-neutral `Conversation`: system hoisted, same-role turns merged, prefill split off.

The rules follow the Claude API (reference §1.2): consecutive turns of one role are merged, a
`role: "system"` message before the first user turn joins the system prompt while one later in the
conversation stays where it is, and a final assistant turn is a prefill that the model continues.

Each wire content block stays a `Part`, numbered in prompt order (tools, system, then messages) and
carrying its `cache_control`, so that prompt caching can find where each block ends in the rendered
tokens. Tools, tool calls, tool results and thinking become text in Sijo's generic markup
(`prompt/markup.py`); tool blocks also keep what they are (`Part.data`), for chat templates that
render tools, calls and results themselves (`prompt/template.py`). Image and document blocks are
laid out by `prompt/documents.py` from what `prompt/attachments.py` loaded: text with a mark where
each image goes, the images riding on their part. Thinking sent back is checked
against its signature first, and tool results must answer the tool calls of the assistant turn just
before them (reference §1.3).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from sijo.engines.base import Bitmap
from sijo.errors import InvalidRequestError, shown
from sijo.prompt import markup
from sijo.prompt.attachments import Attachments
from sijo.prompt.documents import Documents, Passage
from sijo.prompt.server_results import result_text
from sijo.protocol.content import (
    BashCodeExecutionToolResultBlockParam,
    CodeExecutionToolResultBlockParam,
    ContainerUploadBlockParam,
    ContentBlockParam,
    DocumentBlockParam,
    ImageBlockParam,
    RedactedThinkingBlockParam,
    ServerToolResultBlockParam,
    ServerToolUseBlockParam,
    TextBlockParam,
    TextEditorCodeExecutionToolResultBlockParam,
    ThinkingBlockParam,
    ToolResultBlockParam,
    ToolUseBlockParam,
    WebFetchToolResultBlockParam,
    WebSearchToolResultBlockParam,
)
from sijo.protocol.params import MessageParam
from sijo.protocol.tools import CustomTool

# Opens a thinking signature: the thinking it carries, or ValueError if it is not genuine.
SignatureOpener = Callable[[str], str]

Role = Literal["system", "user", "assistant"]

# User and system text blocks are separate paragraphs; assistant blocks are one continuous output.
_JOINERS: dict[Role, str] = {"system": "\n\n", "user": "\n\n", "assistant": ""}


Ttl = Literal["5m", "1h"]


@dataclass(frozen=True, slots=True)
class ToolSpec:
    name: str
    description: str | None
    schema: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    name: str
    input: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ToolOutcome:
    tool_use_id: str
    content: str
    is_error: bool


# What a tool block is, for chat templates that render tools, calls and results themselves.
PartData = ToolSpec | ToolCall | ToolOutcome


@dataclass(frozen=True, slots=True)
class Part:
    """One wire content block: its text (in the generic markup for tool blocks), its index in prompt
    order, its cache breakpoint if any, and for tool blocks what they are.

    A block that holds images (an image, a PDF's pages, a tool result with a screenshot) has one
    `markup.IMAGE` mark in its text where each of its `images` goes, in order."""

    text: str
    block: int | None  # None: Sijo's own scaffolding, not a wire block
    cache_ttl: Ttl | None = None
    field: str = ""  # where the block is in the request, for error messages
    data: PartData | None = None
    images: tuple[Bitmap, ...] = ()


@dataclass(frozen=True, slots=True)
class Turn:
    role: Role
    parts: tuple[Part, ...]

    @property
    def text(self) -> str:
        return _JOINERS[self.role].join(part.text for part in self.parts)


@dataclass(frozen=True, slots=True)
class Conversation:
    system: tuple[Part, ...]
    turns: tuple[Turn, ...]
    prefill: tuple[Part, ...] = ()
    passages: tuple[Passage, ...] = ()  # what the reply may cite (documents with citations on)

    @property
    def system_text(self) -> str | None:
        return _JOINERS["system"].join(part.text for part in self.system) or None

    @property
    def prefill_text(self) -> str:
        return _JOINERS["assistant"].join(part.text for part in self.prefill)

    def with_instruction(self, text: str) -> Conversation:
        """The same conversation with Sijo's own `text` (not a wire block) ending the system prompt."""
        return replace(self, system=(*self.system, Part(text, None)))

    def parts(self) -> list[Part]:
        """Every block, in prompt order."""
        return [*self.system, *(p for turn in self.turns for p in turn.parts), *self.prefill]

    @property
    def has_images(self) -> bool:
        return any(part.images for part in self.parts())


def _refuse_signature(_signature: str) -> str:
    raise ValueError("no signer")


def to_conversation(
    messages: list[MessageParam],
    system: str | list[TextBlockParam] | None,
    *,
    tools: Sequence[CustomTool] = (),
    open_signature: SignatureOpener = _refuse_signature,
    attachments: Attachments | None = None,
    cite: bool = True,
    uploads: dict[str, str] | None = None,
    open_sealed: SignatureOpener = _refuse_signature,
) -> Conversation:
    """`uploads`: where each `container_upload` file (by id) is in the code execution container;
    `open_sealed` opens what server tools sealed (a web search result's `encrypted_content`)."""
    if not messages:
        raise InvalidRequestError("messages: at least one message is required")
    _check_tool_pairing(messages)
    blocks = _Numbering()
    system_parts = _tool_parts(tools, blocks)
    system_parts += _system_parts(system, blocks) if system else []
    last = len(messages) - 1
    documents = Documents(attachments or Attachments(), cite)
    reader = _BlockReader(blocks, open_signature, documents, uploads or {}, open_sealed)
    turns = _merge(
        [turn for i, message in enumerate(messages) for turn in _to_turns(i, message, i == last, reader)]
    )
    while turns and turns[0].role == "system":
        system_parts += turns.pop(0).parts
    prefill = _split_prefill(turns)
    if not turns:
        raise InvalidRequestError("messages: at least one user message is required")
    return Conversation(
        system=tuple(system_parts), turns=tuple(turns), prefill=prefill, passages=tuple(documents.passages)
    )


class _Numbering:
    def __init__(self) -> None:
        self.next = 0

    def take(self) -> int:
        self.next += 1
        return self.next - 1


def _tool_parts(tools: Sequence[CustomTool], blocks: _Numbering) -> list[Part]:
    """One part per tool (its breakpoint ends there); the header and footer ride on the first and last."""
    parts: list[Part] = []
    for i, tool in enumerate(tools):
        text = markup.tool_line(tool.name, tool.description, tool.schema_dict())
        if i == 0:
            text = markup.TOOLS_HEADER + "\n" + text
        if i == len(tools) - 1:
            text = text + "\n" + markup.TOOLS_FOOTER
        ttl = (tool.cache_control.ttl or "5m") if tool.cache_control is not None else None
        spec = ToolSpec(tool.name, tool.description, tool.schema_dict())
        parts.append(Part(text, blocks.take(), ttl, f"tools.{i}", spec))
    return parts


_SERVER_RESULTS = (
    WebSearchToolResultBlockParam,
    WebFetchToolResultBlockParam,
    CodeExecutionToolResultBlockParam,
    BashCodeExecutionToolResultBlockParam,
    TextEditorCodeExecutionToolResultBlockParam,
)


def _to_turns(index: int, message: MessageParam, is_final: bool, reader: _BlockReader) -> list[Turn]:
    """A message as turns: one, unless it is an assistant message holding server tool results, which
    the model reads as tool responses between its own turns (a call, its result, the text after)."""
    field = f"messages.{index}.content"
    parts: tuple[Part, ...]
    if isinstance(message.content, str):
        parts = (Part(message.content, reader.blocks.take(), field=field),) if message.content else ()
    else:
        parts = tuple(reader.part(f"{field}.{j}", message.role, b, j) for j, b in enumerate(message.content))
    if not parts and not (is_final and message.role == "assistant"):
        raise InvalidRequestError(
            f"messages.{index}: all messages must have non-empty content except for the "
            "optional final assistant message"
        )
    if message.role != "assistant" or isinstance(message.content, str):
        return [Turn(message.role, parts)]
    turns: list[Turn] = []
    for block, part in zip(message.content, parts, strict=True):
        role: Role = "user" if isinstance(block, _SERVER_RESULTS) else "assistant"
        if turns and turns[-1].role == role:
            turns[-1] = Turn(role, (*turns[-1].parts, part))
        else:
            turns.append(Turn(role, (part,)))
    return turns or [Turn("assistant", ())]


class _BlockReader:
    """Wire blocks → parts: text as is, tool and thinking blocks in the generic markup."""

    def __init__(
        self,
        blocks: _Numbering,
        open_signature: SignatureOpener,
        documents: Documents,
        uploads: dict[str, str],
        open_sealed: SignatureOpener,
    ) -> None:
        self.blocks = blocks
        self._open_signature = open_signature
        self._documents = documents
        self._uploads = uploads
        self._open_sealed = open_sealed

    def part(self, field: str, role: str, block: ContentBlockParam, position: int) -> Part:
        ttl = (block.cache_control.ttl or "5m") if block.cache_control is not None else None
        if isinstance(block, ImageBlockParam | DocumentBlockParam):
            _require_role(field, block.type, role, "user")
            text, images = self._documents.read(block, field)
            return Part(text, self.blocks.take(), ttl, field, images=images)
        if isinstance(block, ToolResultBlockParam):
            _require_role(field, block.type, role, "user")
            content, images = self._result(field, block)
            outcome = ToolOutcome(block.tool_use_id, content, bool(block.is_error))
            text = markup.tool_response_text(outcome.content, is_error=outcome.is_error)
            return Part(text, self.blocks.take(), ttl, field, outcome, images)
        if isinstance(block, _SERVER_RESULTS):
            _require_role(field, block.type, role, "assistant")
            return self._server_result(field, block, ttl)
        text, data = self._read(field, role, block, position)
        return Part(text, self.blocks.take(), ttl, field, data)

    def _server_result(self, field: str, block: ServerToolResultBlockParam, ttl: Ttl | None) -> Part:
        passages = self._documents.passages if self._documents.cite else None
        content, is_error = result_text(block, field, self._open_sealed, passages)
        outcome = ToolOutcome(block.tool_use_id, content, is_error)
        text = markup.tool_response_text(outcome.content, is_error=outcome.is_error)
        return Part(text, self.blocks.take(), ttl, field, outcome)

    def _result(self, field: str, block: ToolResultBlockParam) -> tuple[str, tuple[Bitmap, ...]]:
        """A tool result's content as text, with the images it holds marked where they are."""
        if block.content is None or isinstance(block.content, str):
            return block.content or "", ()
        texts: list[str] = []
        images: list[Bitmap] = []
        for j, item in enumerate(block.content):
            where = f"{field}.content.{j}"
            if isinstance(item, TextBlockParam):
                texts.append(_text_of(where, item))
            elif isinstance(item, ImageBlockParam | DocumentBlockParam):
                text, found = self._documents.read(item, where)
                texts.append(text)
                images += found
            else:
                raise InvalidRequestError(
                    f"{where}.type: content blocks of type '{item.type}' are not supported in tool "
                    "results by Sijo yet"
                )
        return "\n\n".join(texts), tuple(images)

    def _read(
        self, field: str, role: str, block: ContentBlockParam, position: int
    ) -> tuple[str, PartData | None]:
        if isinstance(block, TextBlockParam):
            return _text_of(field, block), None
        if isinstance(block, ToolUseBlockParam):
            _require_role(field, block.type, role, "assistant")
            separator = markup.CALL_SEPARATOR if position else ""
            call = ToolCall(block.id, block.name, block.input)
            return separator + markup.call_text(block.name, block.input), call
        if isinstance(block, ServerToolUseBlockParam):
            _require_role(field, block.type, role, "assistant")
            separator = markup.CALL_SEPARATOR if position else ""
            call = ToolCall(block.id, block.name, block.input)
            return separator + markup.call_text(block.name, block.input), call
        if isinstance(block, ContainerUploadBlockParam):
            _require_role(field, block.type, role, "user")
            path = self._uploads.get(block.file_id, block.file_id)
            return f"[The file {path} was uploaded to the code execution container.]", None
        if isinstance(block, ThinkingBlockParam | RedactedThinkingBlockParam):
            _require_role(field, block.type, role, "assistant")
            return markup.thinking_text(self._thinking(field, block)), None
        raise InvalidRequestError(
            f"{field}.type: content blocks of type '{block.type}' are not supported by Sijo yet"
        )

    def _thinking(self, field: str, block: ThinkingBlockParam | RedactedThinkingBlockParam) -> str:
        signed = block.data if isinstance(block, RedactedThinkingBlockParam) else block.signature
        try:
            thinking = self._open_signature(signed)
        except ValueError:
            thinking = None
        if thinking is None or (
            isinstance(block, ThinkingBlockParam) and block.thinking not in ("", thinking)
        ):
            what = (
                "data` in `redacted_thinking"
                if isinstance(block, RedactedThinkingBlockParam)
                else "signature` in `thinking"
            )
            raise InvalidRequestError(f"{field}: Invalid `{what}` block") from None
        return thinking


def _text_of(field: str, block: TextBlockParam) -> str:
    if not block.text:
        raise InvalidRequestError(f"{field}.text: text content blocks must be non-empty")
    return block.text


def _require_role(field: str, kind: str, role: str, expected: str) -> None:
    if role != expected:
        raise InvalidRequestError(f"{field}: `{kind}` blocks can only be in `{expected}` messages")


def _check_tool_pairing(messages: list[MessageParam]) -> None:
    """Every tool_result answers a tool_use of the message just before it and comes first; every
    tool_use is answered in the very next message."""
    for i, message in enumerate(messages):
        if message.role == "user" and isinstance(message.content, list):
            _check_results(i, message.content, messages[i - 1] if i else None)
    for i, message in enumerate(messages):
        if message.role != "assistant" or isinstance(message.content, str):
            continue
        calls = [b.id for b in message.content if isinstance(b, ToolUseBlockParam)]
        if len(set(calls)) != len(calls):
            raise InvalidRequestError(f"messages.{i}: `tool_use` ids must be unique")
        following = messages[i + 1] if i + 1 < len(messages) else None
        answered = {b.tool_use_id for b in _results(following)}
        missing = [c for c in calls if c not in answered]
        if missing:
            raise InvalidRequestError(
                f"messages.{i}: `tool_use` ids were found without `tool_result` blocks immediately "
                f"after: {shown(', '.join(missing), 300)}. Each `tool_use` block must have a corresponding "
                "`tool_result` block in the next message."
            )


def _results(message: MessageParam | None) -> list[ToolResultBlockParam]:
    if message is None or message.role != "user" or isinstance(message.content, str):
        return []
    return [b for b in message.content if isinstance(b, ToolResultBlockParam)]


def _check_results(i: int, blocks: list[ContentBlockParam], previous: MessageParam | None) -> None:
    calls: set[str] = set()
    if previous is not None and previous.role == "assistant" and isinstance(previous.content, list):
        calls = {b.id for b in previous.content if isinstance(b, ToolUseBlockParam)}
    seen_other = False
    for j, block in enumerate(blocks):
        if not isinstance(block, ToolResultBlockParam):
            seen_other = True
            continue
        if block.tool_use_id not in calls:
            raise InvalidRequestError(
                f"messages.{i}.content.{j}: unexpected `tool_use_id` found in `tool_result` blocks: "
                f"{shown(block.tool_use_id)}. Each `tool_result` block must have a corresponding `tool_use` "
                "block in the previous message."
            )
        if seen_other:
            raise InvalidRequestError(
                f"messages.{i}.content.{j}: `tool_result` blocks must come first in the user "
                "message's content, before any other blocks"
            )


def _system_parts(system: str | list[TextBlockParam], blocks: _Numbering) -> list[Part]:
    if isinstance(system, str):
        return [Part(system, blocks.take(), field="system")]
    parts = []
    for j, block in enumerate(system):
        ttl = (block.cache_control.ttl or "5m") if block.cache_control is not None else None
        parts.append(Part(_text_of(f"system.{j}", block), blocks.take(), ttl, f"system.{j}"))
    return [_without_billing_nonce(part) for part in parts]


# Claude Code's first system block carries a per-request nonce (`cch=…;`); left in, it would make
# every prompt unique from its first block on, and no prefix would ever be cached.
_BILLING_HEADER = "x-anthropic-billing-header:"
_NONCE = re.compile(r"\s*\bcch=[^;]*;?")


def _without_billing_nonce(part: Part) -> Part:
    if not part.text.startswith(_BILLING_HEADER):
        return part
    return replace(part, text=_NONCE.sub("", part.text))


def _merge(turns: list[Turn]) -> list[Turn]:
    merged: list[Turn] = []
    for turn in turns:
        if merged and merged[-1].role == turn.role:
            merged[-1] = Turn(turn.role, merged[-1].parts + turn.parts)
        else:
            merged.append(turn)
    return merged


def _split_prefill(turns: list[Turn]) -> tuple[Part, ...]:
    """Remove a final assistant turn from `turns` and return its blocks as the prefill."""
    if not turns or turns[-1].role != "assistant":
        return ()
    prefill = turns.pop()
    if prefill.text != prefill.text.rstrip():
        raise InvalidRequestError("final assistant content cannot end with trailing whitespace")
    return prefill.parts
