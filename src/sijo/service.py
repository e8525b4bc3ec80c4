"""MessagesService: the one place that runs the pipeline — validate, resolve, render, generate, assemble.

Streaming and non-streaming share it: `prepare` does every check that can fail before a response
starts (so those failures are plain HTTP errors), `stream` yields the events, and `create` is the
fold of `stream` (`output.accumulate`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from sijo.catalog import Catalog, ServedModel
from sijo.engines.base import FinishReason, GenerationRequest, Sampling
from sijo.errors import InvalidRequestError, PromptTooLongError
from sijo.ids import new_id
from sijo.output.accumulate import accumulate
from sijo.output.assembler import MessageAssembler
from sijo.output.stops import StopMatcher
from sijo.prompt.conversation import to_conversation
from sijo.prompt.template import ChatTemplate, Prompt, tokenize
from sijo.prompt_cache import NO_CACHE, Breakpoint, PromptCache, breakpoints
from sijo.protocol.events import StreamEvent
from sijo.protocol.message import CacheCreation, Message, StopReason, Usage
from sijo.protocol.params import NOT_YET_SUPPORTED, CountTokensParams, MessageCreateParams

_STOP_REASONS: dict[FinishReason, StopReason] = {
    "eos": "end_turn",
    "length": "max_tokens",
    "context_full": "model_context_window_exceeded",
}

# Values of not-yet-supported fields that ask for nothing (so SDK defaults pass).
_NEUTRAL: dict[str, tuple[Any, ...]] = {
    "tools": ([],),
    "tool_choice": ({"type": "auto"}, {"type": "none"}),
    "thinking": ({"type": "disabled"},),
}


@dataclass(frozen=True, slots=True)
class PreparedMessage:
    model_id: str
    served: ServedModel
    prompt: Prompt
    max_tokens: int
    sampling: Sampling
    stop_sequences: tuple[str, ...]
    inference_geo: str
    workspace: str
    breakpoints: tuple[Breakpoint, ...]


@dataclass(frozen=True, slots=True)
class _Rendered:
    prompt: Prompt
    breakpoints: tuple[Breakpoint, ...]


class MessagesService:
    def __init__(self, catalog: Catalog, cache: PromptCache | None = None) -> None:
        self.catalog = catalog
        self.cache = cache if cache is not None else PromptCache()
        self._templates: dict[int, ChatTemplate] = {}

    async def prepare(self, params: MessageCreateParams, workspace: str = "default") -> PreparedMessage:
        _reject_unsupported(params)
        if params.speed == "fast":
            raise InvalidRequestError("speed: fast mode is not supported by Sijo")
        if params.stream and params.max_tokens == 0:
            raise InvalidRequestError("max_tokens: 0 is not allowed when stream is true")
        served = self.catalog.resolve(params.model)
        if params.max_tokens > served.max_output_tokens:
            raise InvalidRequestError(
                f"max_tokens: {params.max_tokens} > {served.max_output_tokens}, which is the "
                f"maximum allowed number of output tokens for {params.model}"
            )
        rendered = await self._render(served, params)
        served.engine.check_capacity()
        sampling = Sampling(
            temperature=1.0 if params.temperature is None else params.temperature,
            top_p=params.top_p,
            top_k=params.top_k or None,
        )
        return PreparedMessage(
            model_id=params.model,
            served=served,
            prompt=rendered.prompt,
            max_tokens=params.max_tokens,
            sampling=sampling,
            stop_sequences=tuple(params.stop_sequences or ()),
            inference_geo=params.inference_geo or "global",
            workspace=workspace,
            breakpoints=rendered.breakpoints,
        )

    async def count_tokens(self, params: CountTokensParams) -> int:
        _reject_unsupported(params)
        served = self.catalog.resolve(params.model)
        # The API counts a prompt over the window too: clients ask precisely to learn that it no longer fits.
        return len((await self._render(served, params, enforce_window=False)).prompt.tokens)

    async def create(self, prepared: PreparedMessage) -> Message:
        return await accumulate(self.stream(prepared))

    async def stream(self, prepared: PreparedMessage) -> AsyncIterator[StreamEvent]:
        plan = NO_CACHE
        if prepared.breakpoints:
            plan = self.cache.plan(
                workspace=prepared.workspace,
                model=prepared.served.config.id,
                prompt=prepared.prompt,
                points=list(prepared.breakpoints),
                min_tokens=prepared.served.config.cache_min_tokens,
            )
        cached = plan.usage
        usage = Usage(
            input_tokens=len(prepared.prompt.tokens) - cached.read - cached.write,
            cache_creation_input_tokens=cached.write,
            cache_read_input_tokens=cached.read,
            cache_creation=CacheCreation(
                ephemeral_5m_input_tokens=cached.write_5m, ephemeral_1h_input_tokens=cached.write_1h
            ),
            output_tokens=0,
            inference_geo=prepared.inference_geo,
        )
        assembler = MessageAssembler(message_id=new_id("msg"), model=prepared.model_id, usage=usage)
        for event in assembler.start():
            yield event
        if prepared.max_tokens == 0:
            for event in assembler.finish("max_tokens", None, 0):
                yield event
            return
        matcher = StopMatcher(list(prepared.stop_sequences))
        request = GenerationRequest(
            prepared.prompt.tokens,
            prepared.max_tokens,
            prepared.sampling,
            namespace=prepared.workspace,
            keep=plan.keep,
        )
        stop_reason: StopReason = "end_turn"
        matched: str | None = None
        output_tokens = 0
        generation = prepared.served.engine.generate(request)
        try:
            async for chunk in generation:
                output_tokens += chunk.tokens
                scan = matcher.feed(chunk.text)
                for event in assembler.text(scan.text):
                    yield event
                if scan.matched is not None:
                    stop_reason, matched = "stop_sequence", scan.matched
                    break
                if chunk.finish is not None:
                    stop_reason = _STOP_REASONS[chunk.finish]
                    break
        finally:
            await generation.aclose()
        if matched is None:
            for event in assembler.text(matcher.flush()):
                yield event
        for event in assembler.finish(stop_reason, matched, output_tokens):
            yield event

    async def _render(
        self,
        served: ServedModel,
        params: MessageCreateParams | CountTokensParams,
        *,
        enforce_window: bool = True,
    ) -> _Rendered:
        conversation = to_conversation(params.messages, params.system)
        points = breakpoints(conversation, params.cache_control)
        template = self._template(served)
        prompt = await tokenize(served.engine, template.segments(conversation))
        window = served.engine.info.context_window
        if enforce_window and len(prompt.tokens) > window:
            raise PromptTooLongError(len(prompt.tokens), window)
        return _Rendered(prompt, tuple(points))

    def _template(self, served: ServedModel) -> ChatTemplate:
        key = id(served.engine)
        if key not in self._templates:
            self._templates[key] = ChatTemplate(served.engine.info)
        return self._templates[key]


def _reject_unsupported(params: MessageCreateParams | CountTokensParams) -> None:
    set_fields = params.model_dump(include=set(NOT_YET_SUPPORTED), exclude_none=True)
    for name, value in set_fields.items():
        if value not in _NEUTRAL.get(name, ()):
            raise InvalidRequestError(f"{name}: this parameter is not supported by Sijo yet")
