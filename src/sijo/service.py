"""MessagesService: the one place that runs the pipeline — validate, resolve, render, generate, assemble.

Streaming and non-streaming share it: `prepare` does every check that can fail before a response
starts (so those failures are plain HTTP errors), `stream` yields the events, and `create` is the
fold of `stream` (`output.accumulate`).

A reply with thinking is generated in two phases on the same engine: first the thinking (the prompt
ends with `<think>`; the grammar ends it at `</think>`; its budget is that phase's `max_tokens`), then
the answer, whose prompt is the first phase's plus the closed thinking. A budget that runs out
therefore ends the thinking on any model, and the second phase reuses the first one's KV cells.

A request's `context_management` edits run where the prompt is rendered (`prompt/context_edits.py`):
each edit that clears something renders the prompt once more, to measure what it freed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from sijo.catalog import Catalog, ServedModel
from sijo.engines.base import Admission, FinishReason, GenerationRequest, GrammarError, KeepPoint, Sampling
from sijo.errors import InvalidRequestError, PromptTooLongError, ThreadUnsupportedRequestError, shown
from sijo.ids import new_id
from sijo.media.fetch import FetchPolicy
from sijo.output.accumulate import accumulate
from sijo.output.assembler import MessageAssembler
from sijo.output.citations import CitingParser
from sijo.output.grammar import thinking_grammar
from sijo.output.reply import ReplyParser, ThinkingStream
from sijo.output.stops import StopMatcher
from sijo.prompt import markup
from sijo.prompt.attachments import Attachments, DecodedImages, StoredBytes, load_attachments
from sijo.prompt.context_edits import apply_edits, checked_edits
from sijo.prompt.conversation import Conversation, to_conversation
from sijo.prompt.template import ChatTemplate, Prompt, Segment, tokenize
from sijo.prompt_cache import NO_CACHE, Breakpoint, PromptCache, breakpoints
from sijo.protocol.context_management import ContextManagementResponse, CountTokensContextManagement
from sijo.protocol.events import MessageDeltaEvent, StreamEvent
from sijo.protocol.message import CacheCreation, Message, MessageTokensCount, StopReason, Usage
from sijo.protocol.params import NOT_YET_SUPPORTED, CountTokensParams, MessageCreateParams, MessageParam
from sijo.protocol.reasoning import ThinkingAdaptive, ThinkingEnabled
from sijo.reply_plan import ReplyPlan, custom_tools, plan_reply, with_citations
from sijo.signing import ThinkingSigner
from sijo.store.ledger import UsageLedger
from sijo.usage import UsageRecord

_STOP_REASONS: dict[FinishReason, StopReason] = {
    "eos": "end_turn",
    "length": "max_tokens",
    "context_full": "model_context_window_exceeded",
    "budget": "max_tokens",  # unless what fitted was whole tool calls (`_answer`)
}


_PLAIN = ReplyPlan()


# Reads a Files API file: (workspace, file id, max bytes) → the file (its bytes if it is at most
# that long), or None if the workspace has no such file.
FileSource = Callable[[str, str, int], Awaitable[StoredBytes | None]]


@dataclass(frozen=True, slots=True)
class Account:
    """Whom a request's usage is recorded against (None: no key, or the default workspace)."""

    api_key_id: str | None = None
    workspace_id: str | None = None


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
    plan: ReplyPlan = _PLAIN
    account: Account = Account()
    batch: bool = False  # a Message Batches request: background priority, service_tier "batch"
    admission: Admission | None = None  # set while it streams: the engine's promise of a place
    context_management: ContextManagementResponse | None = None  # the edits applied, if any were asked


@dataclass(frozen=True, slots=True)
class _Layout:
    segments: list[Segment]
    breakpoints: tuple[Breakpoint, ...]
    plan: ReplyPlan
    thinking: bool


@dataclass(frozen=True, slots=True)
class _Rendered:
    prompt: Prompt
    breakpoints: tuple[Breakpoint, ...]
    plan: ReplyPlan
    original_tokens: int = 0  # the prompt's tokens before any context edits
    context_management: ContextManagementResponse | None = None


@dataclass(slots=True)
class _Progress:
    output_tokens: int = 0
    thinking_tokens: int = 0
    usage: Usage | None = None  # set once the prompt's usage is known


class MessagesService:
    def __init__(
        self,
        catalog: Catalog,
        signer: ThinkingSigner,
        cache: PromptCache | None = None,
        ledger: UsageLedger | None = None,
        *,
        files: FileSource | None = None,
        fetch_policy: FetchPolicy | None = None,
    ) -> None:
        self.catalog = catalog
        self.ledger = ledger
        self.files = files
        self.fetch_policy = fetch_policy
        self._decoded = DecodedImages()
        self.signer = signer
        self.cache = cache if cache is not None else PromptCache()
        self._templates: dict[int, ChatTemplate] = {}

    async def prepare(
        self,
        params: MessageCreateParams,
        workspace: str = "default",
        *,
        account: Account = Account(),
        batch: bool = False,
    ) -> PreparedMessage:
        if params.thread is not None:  # first, so that SDK helpers go on without a thread
            raise ThreadUnsupportedRequestError()
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
        rendered = await self._render(served, params, workspace)
        plan = await self._compile(served, rendered.plan, params)
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
            plan=plan,
            account=account,
            batch=batch,
            context_management=rendered.context_management,
        )

    async def count_tokens(self, params: CountTokensParams, workspace: str = "default") -> MessageTokensCount:
        _reject_unsupported(params)
        served = self.catalog.resolve(params.model)
        # The API counts a prompt over the window too: clients ask precisely to learn that it no longer fits.
        rendered = await self._render(served, params, workspace, enforce_window=False)
        original = None
        if rendered.context_management is not None:
            original = CountTokensContextManagement(original_input_tokens=rendered.original_tokens)
        return MessageTokensCount(input_tokens=len(rendered.prompt.tokens), context_management=original)

    async def create(self, prepared: PreparedMessage) -> Message:
        return await accumulate(self.stream(prepared))

    async def stream(self, prepared: PreparedMessage) -> AsyncIterator[StreamEvent]:
        """The reply's events; whatever it consumed goes to the usage ledger, even if the client
        leaves early (the tokens were spent). A batch request's usage is written by the batch
        worker, with its result, so that a request rerun after a crash is billed once.

        The engine admits the request before the first event, so a request it cannot take fails
        with `OverloadedError` (a 529) before anything is sent, and never once it has started."""
        admission = prepared.served.engine.admit()
        progress = _Progress()
        try:
            admitted = replace(prepared, admission=admission)
            async with aclosing(self._events(admitted, progress)) as events:
                async for event in events:
                    yield event
        finally:
            admission.release()
            if self.ledger is not None and progress.usage is not None and not prepared.batch:
                spent = usage_record(
                    prepared, progress.usage, progress.output_tokens, progress.thinking_tokens
                )
                self.ledger.submit(spent)

    async def _events(
        self, prepared: PreparedMessage, progress: _Progress
    ) -> AsyncGenerator[StreamEvent, None]:
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
            service_tier="batch" if prepared.batch else "standard",
            inference_geo=prepared.inference_geo,
        )
        progress.usage = usage
        assembler = MessageAssembler(message_id=new_id("msg"), model=prepared.model_id, usage=usage)
        for event in assembler.start():
            yield event
        stop: tuple[StopReason, str | None] | None = None
        tokens = prepared.prompt.tokens
        if prepared.max_tokens > 0 and prepared.plan.thinking is not None:
            ended: list[tuple[int, ...] | StopReason] = []
            async with aclosing(self._think(prepared, assembler, progress, plan.keep, ended)) as events:
                async for event in events:
                    yield event
            if isinstance(ended[0], str):
                stop = (ended[0], None)
            else:
                tokens = ended[0]
        if stop is None and prepared.max_tokens > progress.output_tokens:
            keep = () if prepared.plan.thinking is not None else plan.keep
            result: list[tuple[StopReason, str | None]] = []
            async with aclosing(self._answer(prepared, assembler, progress, tokens, keep, result)) as events:
                async for event in events:
                    yield event
            stop = result[0]
        stop = stop or ("max_tokens", None)
        for event in assembler.finish(*stop, progress.output_tokens, progress.thinking_tokens):
            if isinstance(event, MessageDeltaEvent) and prepared.context_management is not None:
                event = event.model_copy(update={"context_management": prepared.context_management})
            yield event

    async def _think(
        self,
        prepared: PreparedMessage,
        assembler: MessageAssembler,
        progress: _Progress,
        keep: tuple[KeepPoint, ...],
        ended: list[tuple[int, ...] | StopReason],
    ) -> AsyncGenerator[StreamEvent, None]:
        """Phase one. Appends to `ended` the answer's prompt, or the stop reason if nothing may follow."""
        thinking = prepared.plan.thinking
        assert thinking is not None
        engine = prepared.served.engine
        request = GenerationRequest(
            prepared.prompt.tokens,
            min(thinking.budget, prepared.max_tokens),
            prepared.sampling,
            namespace=prepared.workspace,
            keep=keep,
            grammar=thinking_grammar(),
            background=prepared.batch,
            admission=prepared.admission,
            images=prepared.prompt.images,
        )
        stream = ThinkingStream()
        finish: FinishReason = "length"
        for event in assembler.thinking(""):
            yield event
        generation = engine.generate(request)
        try:
            async for chunk in generation:
                progress.output_tokens += chunk.tokens
                progress.thinking_tokens += chunk.tokens
                shown = stream.feed(chunk.text)
                if thinking.display == "summarized":
                    for event in assembler.thinking(shown):
                        yield event
                if chunk.finish is not None:
                    finish = chunk.finish
                    break
        finally:
            await generation.aclose()
        rest = stream.flush()
        if thinking.display == "summarized":
            for event in assembler.thinking(rest):
                yield event
        for event in assembler.sign_thinking(self.signer.sign(stream.text)):
            yield event
        if finish == "context_full":
            ended.append("model_context_window_exceeded")
            return
        closed = await engine.tokenize(stream.text, special=False)
        closed += await engine.tokenize(markup.THINK_CLOSE, special=False)
        ended.append(prepared.prompt.tokens + tuple(closed))

    async def _answer(
        self,
        prepared: PreparedMessage,
        assembler: MessageAssembler,
        progress: _Progress,
        tokens: tuple[int, ...],
        keep: tuple[KeepPoint, ...],
        result: list[tuple[StopReason, str | None]],
    ) -> AsyncGenerator[StreamEvent, None]:
        matcher = StopMatcher(list(prepared.stop_sequences))
        parser: ReplyParser | CitingParser = ReplyParser(assembler, calls=prepared.plan.calls)
        if prepared.plan.passages:
            parser = CitingParser(assembler, {passage.ref: passage for passage in prepared.plan.passages})
        budget = prepared.max_tokens - progress.output_tokens
        request = GenerationRequest(
            tokens,
            budget,
            prepared.sampling,
            namespace=prepared.workspace,
            keep=keep,
            grammar=prepared.plan.grammar,
            end_in_budget=prepared.plan.grammar is not None,
            background=prepared.batch,
            admission=prepared.admission,
            images=prepared.prompt.images,
        )
        stop_reason: StopReason = "end_turn"
        whole = True  # the reply ended where it was whole: its turn, or a budget with no room for more
        matched: str | None = None
        if len(tokens) >= prepared.served.engine.info.context_window:
            result.append(("model_context_window_exceeded", None))
            return
        generation = prepared.served.engine.generate(request)
        try:
            async for chunk in generation:
                progress.output_tokens += chunk.tokens
                scan = matcher.feed(chunk.text)
                for event in parser.feed(scan.text):
                    yield event
                if scan.matched is not None:
                    stop_reason, matched = "stop_sequence", scan.matched
                    break
                if chunk.finish is not None:
                    stop_reason = _STOP_REASONS[chunk.finish]
                    whole = chunk.finish in ("eos", "budget")
                    break
        finally:
            await generation.aclose()
        if matched is None:
            for event in parser.feed(matcher.flush()):
                yield event
        for event in parser.flush(ended=stop_reason == "end_turn"):
            yield event
        if whole and matched is None and parser.tool_calls:  # calls that fitted whole get run
            stop_reason = "tool_use"
        result.append((stop_reason, matched))

    async def _render(
        self,
        served: ServedModel,
        params: MessageCreateParams | CountTokensParams,
        workspace: str,
        *,
        enforce_window: bool = True,
    ) -> _Rendered:
        """The prompt generation reads: the request's messages after its context edits, if any."""
        attachments = await self._attachments(served, params, workspace)
        if params.context_management is None:
            rendered = await self._render_messages(served, params, params.messages, attachments)
        else:
            thinking = isinstance(params.thinking, ThinkingEnabled | ThinkingAdaptive)
            edited = await apply_edits(
                params.messages,
                checked_edits(params.context_management, thinking=thinking),
                render=lambda messages: self._render_messages(served, params, messages, attachments),
                size=lambda rendered: len(rendered.prompt.tokens),
            )
            applied = ContextManagementResponse(applied_edits=edited.applied)
            rendered = replace(
                edited.rendered, original_tokens=edited.original_tokens, context_management=applied
            )
        window = served.engine.info.context_window
        if enforce_window and len(rendered.prompt.tokens) > window:
            raise PromptTooLongError(len(rendered.prompt.tokens), window)
        return rendered

    async def _attachments(
        self, served: ServedModel, params: MessageCreateParams | CountTokensParams, workspace: str
    ) -> Attachments:
        files = self.files

        async def read_file(file_id: str, max_bytes: int) -> StoredBytes | None:
            return None if files is None else await files(workspace, file_id, max_bytes)

        return await load_attachments(
            params.messages,
            read_file=read_file,
            policy=self.fetch_policy,
            read_images=served.engine.info.image_input,
            model=params.model,
            decoded=self._decoded,
        )

    async def _render_messages(
        self,
        served: ServedModel,
        params: MessageCreateParams | CountTokensParams,
        messages: list[MessageParam],
        attachments: Attachments,
    ) -> _Rendered:
        # Off the event loop: a request of 50,000 messages takes seconds to lay out, and every
        # other request would wait for it. Tokenising yields to the loop as it goes.
        layout = await asyncio.to_thread(self._layout, served, params, messages, attachments)
        segments = layout.segments
        prompt = await tokenize(served.engine, segments)
        if layout.thinking and not segments[-1].text.endswith(markup.THINK_OPEN):
            opener = await served.engine.tokenize(markup.THINK_OPEN, special=False)
            prompt = replace(prompt, tokens=prompt.tokens + tuple(opener))
        return _Rendered(prompt, layout.breakpoints, layout.plan, original_tokens=len(prompt.tokens))

    def _layout(
        self,
        served: ServedModel,
        params: MessageCreateParams | CountTokensParams,
        messages: list[MessageParam],
        attachments: Attachments,
    ) -> _Layout:
        """The prompt's text segments, cache breakpoints and reply plan for `messages` (the request's,
        or those its context edits left), in pure CPU work."""
        tools = custom_tools(params)
        opener = self.signer.opener()
        conversation = to_conversation(
            messages, params.system, tools=tools, open_signature=opener, attachments=attachments
        )
        plan = plan_reply(
            params,
            tools,
            budgets=served.config.thinking_budgets,
            last_user_text=_last_user_text(conversation),
            has_prefill=bool(conversation.prefill),
            force_tool_use=served.config.force_tool_use,
        )
        plan = _capped_thinking(plan, params, served.config.max_thinking_tokens)
        plan = with_citations(plan, params, conversation.passages)
        if conversation.passages and not plan.passages:  # a reply that may call tools cites nothing
            conversation = to_conversation(
                messages,
                params.system,
                tools=tools,
                open_signature=opener,
                attachments=attachments,
                cite=False,
            )
        template = self._template(served)
        thinking = plan.thinking is not None
        if plan.passages:
            conversation = conversation.with_instruction(markup.CITE_INSTRUCTION)
        if thinking and not template.native_reasoning:
            conversation = conversation.with_instruction(markup.THINKING_INSTRUCTION)
        points = breakpoints(conversation, params.cache_control)
        segments = template.segments(conversation, thinking=thinking)
        return _Layout(segments, tuple(points), plan, thinking)

    async def _compile(self, served: ServedModel, plan: ReplyPlan, params: MessageCreateParams) -> ReplyPlan:
        """Compile the answer's grammar now, so a schema the engine cannot handle is a 400, not a
        failed stream. Non-strict tool schemas that do not compile are opened up to any object."""
        if plan.grammar is None:
            return plan
        engine = served.engine
        try:
            await asyncio.to_thread(engine.check_grammar, plan.grammar)
            return plan
        except GrammarError as exc:
            error = exc
        if plan.relaxed_grammar is not None:
            try:
                await asyncio.to_thread(engine.check_grammar, plan.relaxed_grammar)
                return replace(plan, grammar=plan.relaxed_grammar)
            except GrammarError as exc:
                error = exc
        where = (
            "output_config.format.schema"
            if params.output_config and params.output_config.format
            else ("output_format.schema" if params.output_format else "tools")
        )
        raise InvalidRequestError(
            f"{where}: the schema could not be compiled into a grammar: {shown(error, 300)}"
        )

    def _template(self, served: ServedModel) -> ChatTemplate:
        key = id(served.engine)
        if key not in self._templates:  # two threads may both build it: either copy serves
            self._templates[key] = ChatTemplate(served.engine.info)
        return self._templates[key]


def _capped_thinking(
    plan: ReplyPlan, params: MessageCreateParams | CountTokensParams, cap: int | None
) -> ReplyPlan:
    """`plan` with a manual `budget_tokens` cut to the model's `max_thinking_tokens`: a small model
    asked for Claude Code's 31,999 would think for minutes. Usage counts the thinking that ran."""
    thinking = plan.thinking
    if cap is None or thinking is None or not isinstance(params.thinking, ThinkingEnabled):
        return plan
    return replace(plan, thinking=replace(thinking, budget=min(thinking.budget, cap)))


def _last_user_text(conversation: Conversation) -> str:
    users = [turn for turn in conversation.turns if turn.role == "user"]
    return users[-1].text if users else ""


def _reject_unsupported(params: MessageCreateParams | CountTokensParams) -> None:
    set_fields: dict[str, Any] = params.model_dump(include=set(NOT_YET_SUPPORTED), exclude_none=True)
    for name in set_fields:
        raise InvalidRequestError(f"{name}: this parameter is not supported by Sijo yet")


def usage_record(
    prepared: PreparedMessage, usage: Usage, output_tokens: int, thinking_tokens: int
) -> UsageRecord:
    """The ledger's record of a reply to `prepared` whose prompt billed `usage`."""
    return UsageRecord(
        at=datetime.now(UTC),
        api_key_id=prepared.account.api_key_id,
        workspace_id=prepared.account.workspace_id,
        model=prepared.model_id,
        service_tier="batch" if prepared.batch else "standard",
        uncached_input_tokens=usage.input_tokens,
        output_tokens=output_tokens,
        cache_write_5m_tokens=usage.cache_creation.ephemeral_5m_input_tokens,
        cache_write_1h_tokens=usage.cache_creation.ephemeral_1h_input_tokens,
        cache_read_tokens=usage.cache_read_input_tokens,
        thinking_tokens=thinking_tokens,
    )
