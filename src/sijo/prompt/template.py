"""Chat-template rendering: `Conversation` → the model's own prompt text → token ids.

The template is the model's (GGUF metadata), run in Jinja's immutable sandbox. Message contents
are user data: they are tokenised as plain text, so a user who types `<|im_end|>` cannot forge a
control token. Only the template's own scaffolding is parsed for special tokens. To tell the two
apart, contents are rendered as unique markers first and the rendered text is split on them.
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
from sijo.prompt.conversation import Conversation


@dataclass(frozen=True, slots=True)
class Segment:
    """A run of prompt text; `user_data` runs are tokenised without parsing special tokens."""

    text: str
    user_data: bool


@dataclass(frozen=True, slots=True)
class Prompt:
    tokens: tuple[int, ...]


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
        contents: list[str] = []

        def placeholder(text: str) -> str:
            contents.append(text)
            return f"{marker}{len(contents) - 1}\x00"

        messages: list[dict[str, Any]] = []
        if conversation.system is not None:
            messages.append({"role": "system", "content": placeholder(conversation.system)})
        messages += [{"role": t.role, "content": placeholder(t.text)} for t in conversation.turns]
        rendered = self._render(messages)
        segments = _split(rendered, marker, contents)
        if segments is None:  # the template transformed a content: fall back to the plain text
            plain = [{"role": m["role"], "content": _fill(m["content"], marker, contents)} for m in messages]
            segments = [Segment(self._render(plain), user_data=False)]
        if conversation.prefill:
            segments.append(Segment(conversation.prefill, user_data=True))
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


def _split(rendered: str, marker: str, contents: list[str]) -> list[Segment] | None:
    segments: list[Segment] = []
    rest = rendered
    for index, content in enumerate(contents):
        token = f"{marker}{index}\x00"
        before, found, rest = rest.partition(token)
        if not found or marker in before:
            return None
        segments += [Segment(before, user_data=False), Segment(content, user_data=True)]
    if marker in rest:
        return None
    segments.append(Segment(rest, user_data=False))
    return [s for s in segments if s.text]


def _fill(text: str, marker: str, contents: list[str]) -> str:
    for index, content in enumerate(contents):
        text = text.replace(f"{marker}{index}\x00", content)
    return text


async def tokenize(engine: Engine, segments: list[Segment]) -> Prompt:
    tokens: list[int] = []
    for segment in segments:
        tokens += await engine.tokenize(segment.text, special=not segment.user_data)
    info = engine.info
    if info.add_bos and (not tokens or tokens[0] != info.bos_token_id):
        tokens.insert(0, info.bos_token_id)
    return Prompt(tuple(tokens))
