"""Chat-template rendering: `Conversation` → the model's own prompt text → token ids.

The template is the model's (GGUF metadata), run in Jinja's immutable sandbox. Message contents
are user data: they are tokenised as plain text, so a user who types `<|im_end|>` cannot forge a
control token. Only the template's own scaffolding is parsed for special tokens. To tell the two
apart, contents are rendered as unique markers first and the rendered text is split on them.
Each content block is its own segment, so the prompt knows where every block ends in tokens
(`Prompt.block_ends`), which is where prompt-cache breakpoints fall.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NoReturn

from jinja2 import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from sijo.engines.base import Engine, EngineInfo
from sijo.errors import InvalidRequestError
from sijo.prompt.conversation import Conversation, Part


@dataclass(frozen=True, slots=True)
class Segment:
    """A run of prompt text; `user_data` runs are tokenised without parsing special tokens."""

    text: str
    user_data: bool
    ends_block: int | None = None  # the block whose text ends with this segment


@dataclass(frozen=True, slots=True)
class Prompt:
    tokens: tuple[int, ...]
    block_ends: dict[int, int]  # block index → tokens up to and including that block


def _raise_exception(message: str) -> NoReturn:
    raise TemplateError(message)


def _strftime_now(fmt: str) -> str:
    return datetime.now(UTC).strftime(fmt)


class ChatTemplate:
    def __init__(self, info: EngineInfo) -> None:
        # The settings Hugging Face uses for chat templates, which GGUF templates are written for.
        env = ImmutableSandboxedEnvironment(
            trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"]
        )
        env.globals.update(raise_exception=_raise_exception, strftime_now=_strftime_now)
        self._template = env.from_string(info.chat_template)
        self._info = info

    def segments(self, conversation: Conversation) -> list[Segment]:
        marker = f"\x00sijo-{secrets.token_hex(4)}:"  # letters, so case filters show
        contents: list[_Content] = []

        def placeholder(parts: tuple[Part, ...], joiner: str) -> str:
            contents.append(_Content(parts, joiner))
            return f"{marker}{len(contents) - 1}\x00"

        messages: list[dict[str, Any]] = []
        if conversation.system:
            messages.append({"role": "system", "content": placeholder(conversation.system, "\n\n")})
        messages += [
            {"role": t.role, "content": placeholder(t.parts, "" if t.role == "assistant" else "\n\n")}
            for t in conversation.turns
        ]
        rendered = self._render(messages)
        segments = _split(rendered, marker, contents)
        if segments is None:  # the template transformed a content: fall back to the plain text
            plain = [{"role": m["role"], "content": _fill(m["content"], marker, contents)} for m in messages]
            segments = [Segment(self._render(plain), user_data=False)]
        if conversation.prefill:
            segments += _Content(conversation.prefill, "").segments()
        return segments

    def _render(self, messages: list[dict[str, Any]]) -> str:
        try:
            return self._template.render(
                messages=messages,
                add_generation_prompt=True,
                bos_token=self._info.bos_token,
                eos_token=self._info.eos_token,
            )
        except TemplateError as exc:
            raise InvalidRequestError(
                f"messages: the model's chat template rejected this conversation: {exc}"
            ) from exc


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
            segments.append(Segment(part.text, user_data=True, ends_block=part.block))
        return segments


def _split(rendered: str, marker: str, contents: list[_Content]) -> list[Segment] | None:
    segments: list[Segment] = []
    rest = rendered
    for index, content in enumerate(contents):
        token = f"{marker}{index}\x00"
        before, found, rest = rest.partition(token)
        if not found or marker in before:
            return None
        segments += [Segment(before, user_data=False), *content.segments()]
    if marker in rest:
        return None
    segments.append(Segment(rest, user_data=False))
    return [s for s in segments if s.text]


def _fill(text: str, marker: str, contents: list[_Content]) -> str:
    for index, content in enumerate(contents):
        text = text.replace(f"{marker}{index}\x00", content.text)
    return text


async def tokenize(engine: Engine, segments: list[Segment]) -> Prompt:
    info = engine.info
    tokens: list[int] = []
    block_ends: dict[int, int] = {}
    for segment in segments:
        tokens += await engine.tokenize(segment.text, special=not segment.user_data)
        if segment.ends_block is not None:
            block_ends[segment.ends_block] = len(tokens)
    if info.add_bos and (not tokens or tokens[0] != info.bos_token_id):
        tokens.insert(0, info.bos_token_id)
        block_ends = {block: end + 1 for block, end in block_ends.items()}
    return Prompt(tuple(tokens), block_ends)
