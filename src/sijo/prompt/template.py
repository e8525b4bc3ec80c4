"""Chat-template rendering: `Conversation` → the model's own prompt text → token ids.

The template is the model's (GGUF metadata), run in Jinja's immutable sandbox. Message contents
are user data: they are tokenised as plain text, so a user who types `<|im_end|>` cannot forge a
control token. Only the template's own scaffolding is parsed for special tokens. To tell the two
apart, contents are rendered as unique markers first and the rendered text is split on them.
Each content block is its own segment, so the prompt knows where every block ends in tokens
(`Prompt.block_ends`), which is where prompt-cache breakpoints fall.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import time
from contextvars import ContextVar
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, NoReturn

from jinja2 import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from sijo.engines.base import Bitmap, Engine, EngineInfo, ImageInputUnsupportedError, ImageSpan, placeholders
from sijo.errors import InvalidRequestError, shown
from sijo.prompt import markup
from sijo.prompt.conversation import Conversation, Part, ToolCall, ToolOutcome, ToolSpec, Turn


@dataclass(frozen=True, slots=True)
class Segment:
    """A run of prompt text; `user_data` runs are tokenised without parsing special tokens."""

    text: str
    user_data: bool
    ends_block: int | None = None  # the block whose text ends with this segment
    images: tuple[Bitmap, ...] = ()  # one for each `markup.IMAGE` mark in `text`, in order


@dataclass(frozen=True, slots=True)
class Prompt:
    tokens: tuple[int, ...]
    block_ends: dict[int, int]  # block index → tokens up to and including that block
    images: tuple[ImageSpan, ...] = ()  # where `tokens` holds images, in order


def _raise_exception(message: str) -> NoReturn:
    raise TemplateError(message)


def _strftime_now(fmt: str) -> str:
    return datetime.now(UTC).strftime(fmt)


class ChatTemplate:
    """A model's chat template, and what it can render by itself.

    `native_tools`: the template renders a `tools` list, assistant `tool_calls` and `tool` messages,
    and teaches the `<tool_call>` JSON syntax Sijo's grammars force and its parser reads (the
    Hermes/Qwen family). Such templates get tools, calls and results as data; any other template
    gets them as text in Sijo's generic markup. `native_reasoning`: the template knows `</think>`
    (Qwen3, DeepSeek-R1 and kin); it gets `enable_thinking` and no prompting to reason.
    """

    def __init__(self, info: EngineInfo) -> None:
        # The settings Hugging Face uses for chat templates, which GGUF templates are written for.
        env = ImmutableSandboxedEnvironment(
            trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"]
        )
        env.globals.update(raise_exception=_raise_exception, strftime_now=_strftime_now)
        env.filters["tojson"] = self._tojson
        source = info.chat_template
        self._template = env.from_string(source)
        self._info = info
        self.native_tools = all(word in source for word in ("tools", "tool_calls", markup.CALL_OPEN.strip()))
        self.native_reasoning = markup.THINK_END in source

    def segments(self, conversation: Conversation, *, thinking: bool = False) -> list[Segment]:
        rendering = _Rendering(f"\x00sijo-{secrets.token_hex(4)}:")  # letters, so case filters show
        native = self.native_tools and any(p.data is not None for p in conversation.parts())
        messages, tools = (_native if native else _generic)(conversation, rendering)
        extra: dict[str, Any] = {"tools": tools} if tools else {}
        if self.native_reasoning:
            extra["enable_thinking"] = thinking
        rendered = self._render(messages, rendering, extra)
        segments = _split(rendered, rendering)
        if segments is None:  # the template transformed a content: fall back to the plain text
            if conversation.has_images:
                raise InvalidRequestError(
                    "messages: the model's chat template rewrites message contents, so it cannot be "
                    "given images"
                )
            plain = [{**m, "content": rendering.fill(m["content"])} for m in messages]
            segments = [Segment(self._render(plain, None, extra), user_data=False)]
        if conversation.prefill:
            segments += _Content(conversation.prefill, "").segments()
        return segments

    def _render(
        self, messages: list[dict[str, Any]], rendering: _Rendering | None, extra: dict[str, Any]
    ) -> str:
        token = _RENDERING.set(rendering)
        try:
            return self._template.render(
                messages=messages,
                add_generation_prompt=True,
                bos_token=self._info.bos_token,
                eos_token=self._info.eos_token,
                **extra,
            )
        except TemplateError as exc:
            raise InvalidRequestError(
                f"messages: the model's chat template rejected this conversation: {shown(exc, 300)}"
            ) from exc
        finally:
            _RENDERING.reset(token)

    def _tojson(self, value: Any, indent: int | None = None, **options: Any) -> str:
        """Hugging Face's `tojson` (no HTML escaping); a tool or call argument object given as data
        becomes a placeholder, so that its JSON is tokenised as user data and ends its block."""
        text = json.dumps(value, ensure_ascii=False, indent=indent, **_json_options(options))
        rendering = _RENDERING.get()
        part = rendering.objects.get(id(value)) if rendering is not None else None
        if rendering is None or part is None:
            return text
        return rendering.placeholder((replace(part, text=text),), "")


def _json_options(options: dict[str, Any]) -> dict[str, Any]:
    chosen: dict[str, Any] = {}
    if options.get("separators") is not None:
        chosen["separators"] = tuple(options["separators"])
    if options.get("sort_keys"):
        chosen["sort_keys"] = True
    return chosen


# The render in progress in this thread (renders run on worker threads, several at once).
_RENDERING: ContextVar[_Rendering | None] = ContextVar("sijo_rendering", default=None)


class _Rendering:
    """One render's placeholders: message contents, and the data objects whose JSON is user data."""

    def __init__(self, marker: str) -> None:
        self.marker = marker
        self.contents: list[_Content] = []
        self.objects: dict[int, Part] = {}

    def placeholder(self, parts: tuple[Part, ...], joiner: str) -> str:
        self.contents.append(_Content(parts, joiner))
        return f"{self.marker}{len(self.contents) - 1}\x00"

    def data(self, value: dict[str, Any], part: Part) -> dict[str, Any]:
        """Mark `value` (kept alive by the messages being rendered) as the data of `part`."""
        self.objects[id(value)] = part
        return value

    def fill(self, text: str) -> str:
        for index, content in enumerate(self.contents):
            text = text.replace(f"{self.marker}{index}\x00", content.text)
        return text


def _generic(conversation: Conversation, rendering: _Rendering) -> tuple[list[dict[str, Any]], list[Any]]:
    messages: list[dict[str, Any]] = []
    if conversation.system:
        messages.append({"role": "system", "content": rendering.placeholder(conversation.system, "\n\n")})
    messages += [
        {"role": t.role, "content": rendering.placeholder(t.parts, "" if t.role == "assistant" else "\n\n")}
        for t in conversation.turns
    ]
    return messages, []


def _native(conversation: Conversation, rendering: _Rendering) -> tuple[list[dict[str, Any]], list[Any]]:
    """Tools as a `tools` list, calls as `tool_calls`, results as `tool` messages: the OpenAI shape
    that Hugging Face chat templates are written for."""
    tools: list[Any] = []
    system: list[Part] = []
    for part in conversation.system:
        if isinstance(part.data, ToolSpec):
            spec = part.data
            function = {"name": spec.name, "description": spec.description or "", "parameters": spec.schema}
            wrapped = {"type": "function", "function": rendering.data(function, part)}
            tools.append(rendering.data(wrapped, part))
        else:
            system.append(part)
    messages: list[dict[str, Any]] = []
    if system:
        messages.append({"role": "system", "content": rendering.placeholder(tuple(system), "\n\n")})
    for turn in conversation.turns:
        messages += _native_turn(turn, rendering)
    return messages, tools


def _native_turn(turn: Turn, rendering: _Rendering) -> list[dict[str, Any]]:
    if turn.role == "assistant":
        calls = [p for p in turn.parts if isinstance(p.data, ToolCall)]
        text = tuple(p for p in turn.parts if not isinstance(p.data, ToolCall))
        content = rendering.placeholder(text, "") if text else ""
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if calls:
            message["tool_calls"] = [_call(p, rendering) for p in calls]
        return [message]
    messages: list[dict[str, Any]] = []
    for part in turn.parts:
        if isinstance(part.data, ToolOutcome):
            outcome = part.data
            content = f"Error: {outcome.content}" if outcome.is_error else outcome.content
            placeholder = rendering.placeholder((replace(part, text=content),), "")
            messages.append({"role": "tool", "content": placeholder, "tool_call_id": outcome.tool_use_id})
    rest = tuple(p for p in turn.parts if not isinstance(p.data, ToolOutcome))
    if rest:
        messages.append({"role": turn.role, "content": rendering.placeholder(rest, "\n\n")})
    return messages


def _call(part: Part, rendering: _Rendering) -> dict[str, Any]:
    assert isinstance(part.data, ToolCall)
    call = part.data
    arguments = rendering.data(dict(call.input), part)
    return {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": arguments}}


@dataclass(frozen=True, slots=True)
class _Content:
    """A message's content: its blocks and what joins them."""

    parts: tuple[Part, ...]
    joiner: str

    @property
    def text(self) -> str:
        return self.joiner.join(part.text for part in self.parts)

    def segments(self) -> list[Segment]:
        segments: list[Segment] = []
        for i, part in enumerate(self.parts):
            if i and self.joiner:
                segments.append(Segment(self.joiner, user_data=True))
            segments.append(Segment(part.text, user_data=True, ends_block=part.block, images=part.images))
        return segments


def _split(rendered: str, rendering: _Rendering) -> list[Segment] | None:
    """The render cut at its placeholders, in the order they appear; None if a content is missing or
    repeated (the template transformed it)."""
    pattern = re.compile(re.escape(rendering.marker) + r"(\d+)\x00")
    segments: list[Segment] = []
    seen: set[int] = set()
    position = 0
    for match in pattern.finditer(rendered):
        index = int(match.group(1))
        if index in seen or index >= len(rendering.contents):
            return None
        seen.add(index)
        segments.append(Segment(rendered[position : match.start()], user_data=False))
        segments += rendering.contents[index].segments()
        position = match.end()
    rest = rendered[position:]
    if rendering.marker in rest or len(seen) != len(rendering.contents):
        return None
    segments.append(Segment(rest, user_data=False))
    return [s for s in segments if s.text]


_SLICE_SECONDS = 0.002  # the longest tokenize runs on the event loop before letting others in


async def tokenize(engine: Engine, segments: list[Segment]) -> Prompt:
    info = engine.info
    tokens: list[int] = []
    block_ends: dict[int, int] = {}
    images: list[ImageSpan] = []
    pause_at = time.monotonic() + _SLICE_SECONDS
    for segment in segments:
        if segment.images:
            await _with_images(engine, segment, tokens, images)
        else:
            tokens += await engine.tokenize(segment.text, special=not segment.user_data)
        if time.monotonic() >= pause_at:  # thousands of short segments: let other requests run
            await asyncio.sleep(0)
            pause_at = time.monotonic() + _SLICE_SECONDS
        if segment.ends_block is not None:
            block_ends[segment.ends_block] = len(tokens)
    if info.add_bos and (not tokens or tokens[0] != info.bos_token_id):
        tokens.insert(0, info.bos_token_id)
        block_ends = {block: end + 1 for block, end in block_ends.items()}
        images = [replace(span, start=span.start + 1) for span in images]
    return Prompt(tuple(tokens), block_ends, tuple(images))


async def _with_images(engine: Engine, segment: Segment, tokens: list[int], images: list[ImageSpan]) -> None:
    """Append a segment that holds images: its text between them, and each image's tokens."""
    texts = segment.text.split(markup.IMAGE)
    assert len(texts) == len(segment.images) + 1, "an image mark for each image"
    for text, bitmap in zip(texts, (*segment.images, None), strict=True):
        if text:
            tokens += await engine.tokenize(text, special=not segment.user_data)
        if bitmap is not None:
            await _image(engine, bitmap, tokens, images)


async def _image(engine: Engine, bitmap: Bitmap, tokens: list[int], images: list[ImageSpan]) -> None:
    try:
        cost = await engine.image_tokens(bitmap)
    except ImageInputUnsupportedError as exc:
        raise InvalidRequestError(f"messages: {exc}") from None
    part = 0
    for piece in cost.pieces:
        if isinstance(piece, int):
            images.append(ImageSpan(len(tokens), piece, bitmap, part))
            tokens += placeholders(bitmap.digest, piece, part)
            part += 1
        else:
            tokens += piece
