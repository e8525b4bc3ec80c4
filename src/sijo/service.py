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
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from pydantic import TypeAdapter

from sijo.catalog import Catalog, ServedModel
from sijo.engines.base import (
    Admission,
    FinishReason,
    GenerationRequest,
    GrammarError,
    ImageSpan,
    KeepPoint,
    Sampling,
)
from sijo.errors import InvalidRequestError, PromptTooLongError, ThreadUnsupportedRequestError, shown
from sijo.ids import new_id
from sijo.media.fetch import FetchPolicy
from sijo.output.accumulate import Accumulator, accumulate
from sijo.output.assembler import MessageAssembler
from sijo.output.citations import CitingParser
from sijo.output.grammar import thinking_grammar
from sijo.output.reply import ReplyParser, ServerCall, ThinkingStream
from sijo.output.stops import StopMatcher
from sijo.prompt import markup
from sijo.prompt.attachments import Attachments, DecodedImages, StoredBytes, load_attachments
from sijo.prompt.context_edits import apply_edits, checked_edits
from sijo.prompt.conversation import Conversation, to_conversation
from sijo.prompt.template import ChatTemplate, Prompt, Segment, tokenize
from sijo.prompt_cache import NO_CACHE, Breakpoint, PromptCache, breakpoints
from sijo.protocol.content import ContainerUploadBlockParam, ContentBlockParam, ServerToolResultBlockParam
from sijo.protocol.context_management import ContextManagementResponse, CountTokensContextManagement
from sijo.protocol.events import MessageDeltaEvent, StreamEvent
from sijo.protocol.message import CacheCreation, ContentBlock, Message, MessageTokensCount, StopReason, Usage
from sijo.protocol.params import NOT_YET_SUPPORTED, CountTokensParams, MessageCreateParams, MessageParam
from sijo.protocol.reasoning import ThinkingAdaptive, ThinkingEnabled
from sijo.protocol.server_tools import ServerToolResultBlock
from sijo.reply_plan import ReplyPlan, custom_tools, plan_reply, with_citations
from sijo.signing import SEALING, ThinkingSigner
from sijo.store.ledger import UsageLedger
from sijo.tools.runner import ServerTools, ToolRun
from sijo.tools.toolset import ServerToolSet, server_toolset
from sijo.usage import UsageRecord

_STOP_REASONS: dict[FinishReason, StopReason] = {
    "eos": "end_turn",
    "length": "max_tokens",
    "context_full": "model_context_window_exceeded",
    "budget": "max_tokens",  # unless what fitted was whole tool calls (`_answer`)
}


_PLAIN = ReplyPlan()
_NO_TOOLS = ServerToolSet()


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
    # What a reply that runs server tools renders again after each result (`_continue`).
    params: MessageCreateParams | None = None
    messages: tuple[MessageParam, ...] = ()  # the request's messages after its context edits
    attachments: Attachments | None = None
    toolset: ServerToolSet = _NO_TOOLS
    container_id: str | None = None
    uploads: tuple[tuple[str, bytes], ...] = ()


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
    messages: tuple[MessageParam, ...] = ()  # what was rendered (the request's, after its edits)
    attachments: Attachments | None = None


@dataclass(slots=True)
class _Progress:
    output_tokens: int = 0
    thinking_tokens: int = 0
    usage: Usage | None = None  # set once the prompt's usage is known; grows as server tools run


@dataclass(slots=True)
class _Reply:
    """The reply in progress: what each phase reads and moves on. A phase ends by setting `stop`,
    or `call` (a server tool to run), or leaves `tokens` for the next answer to continue."""

    prepared: PreparedMessage
    assembler: MessageAssembler
    progress: _Progress
    tokens: tuple[int, ...]  # the prompt the next generation continues
    images: tuple[ImageSpan, ...]
    keep: tuple[KeepPoint, ...]
    plan: ReplyPlan  # the next answer's
    content: Accumulator = field(default_factory=Accumulator)  # the blocks so far
    tools: ToolRun | None = None
    stop: tuple[StopReason, str | None] | None = None
    call: ServerCall | None = None
    then_stop: tuple[StopReason, str | None] | None = None  # after `call` is run
    iterations: int = 0  # server tool calls run
    output_at_prompt: int = 0  # output tokens when `tokens` was last rendered


_Phase = Callable[[_Reply], AsyncGenerator[StreamEvent, None]]


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
        server_tools: ServerTools | None = None,
        max_tool_iterations: int = 10,
    ) -> None:
        self.catalog = catalog
        self.server_tools = server_tools
        self.max_tool_iterations = max_tool_iterations
        self.ledger = ledger
        self.files = files
        self.fetch_policy = fetch_policy
        self._decoded = DecodedImages()
        self.signer = signer
        self.sealer = signer.derived(SEALING)
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
        toolset = server_toolset(params)
        container_id, uploads = await self._tool_inputs(params, toolset, workspace)
        rendered = await self._render(served, params, workspace, uploads=uploads)
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
            params=params,
            messages=rendered.messages,
            attachments=rendered.attachments,
            toolset=toolset,
            container_id=container_id,
            uploads=tuple(uploads.values()),
        )

    async def _tool_inputs(
        self, params: MessageCreateParams, toolset: ServerToolSet, workspace: str
    ) -> tuple[str | None, dict[str, tuple[str, bytes]]]:
        """The request's `container` (checked: the workspace's and alive) and its `container_upload`
        files (read), by file id."""
        file_ids = [
            block.file_id
            for message in params.messages
            if not isinstance(message.content, str)
            for block in message.content
            if isinstance(block, ContainerUploadBlockParam)
        ]
        if toolset and self.server_tools is None:
            raise InvalidRequestError("tools: server tools are not available on this server")
        if (params.container is not None or file_ids) and toolset.code_execution is None:
            raise InvalidRequestError(
                "container: a container and container_upload blocks need the code_execution tool"
            )
        if self.server_tools is None or toolset.code_execution is None:
            return None, {}
        container_id = _container_id(params.container)
        if container_id is not None:
            self.server_tools.reuse(workspace, container_id)
        read = await self.server_tools.uploads(workspace, file_ids)
        return container_id, dict(zip(file_ids, read, strict=True))

    async def count_tokens(self, params: CountTokensParams, workspace: str = "default") -> MessageTokensCount:
        _reject_unsupported(params)
        served = self.catalog.resolve(params.model)
        server_toolset(params)
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
        """The reply as a loop of phases: thinking, then answers, with a server tool run between
        two answers wherever one ended in a server tool's call (`_next_phase`)."""
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
        reply = _Reply(
            prepared,
            assembler,
            progress,
            tokens=prepared.prompt.tokens,
            images=prepared.prompt.images,
            keep=plan.keep,
            plan=prepared.plan,
            tools=self._tool_run(prepared),
        )
        for event in assembler.start():
            reply.content.apply(event)
            yield event
        phase: _Phase | None = None
        if prepared.max_tokens > 0:
            phase = self._think if prepared.plan.thinking is not None else self._answer
        while phase is not None:
            async with aclosing(phase(reply)) as events:
                async for event in events:
                    reply.content.apply(event)
                    yield event
            phase = self._next_phase(reply)
        stop = reply.stop or ("max_tokens", None)
        tools = reply.tools
        for event in assembler.finish(
            *stop,
            progress.output_tokens,
            progress.thinking_tokens,
            input_tokens=progress.usage.input_tokens,
            server_tool_use=None if tools is None else tools.usage,
            container=None if tools is None else tools.container_info,
        ):
            if isinstance(event, MessageDeltaEvent) and prepared.context_management is not None:
                event = event.model_copy(update={"context_management": prepared.context_management})
            yield event

    def _next_phase(self, reply: _Reply) -> _Phase | None:
        if reply.stop is not None:
            return None
        if reply.call is not None:
            return self._run_tool
        if reply.prepared.max_tokens <= reply.progress.output_tokens:
            return None  # the budget is spent: max_tokens
        return self._answer

    def _tool_run(self, prepared: PreparedMessage) -> ToolRun | None:
        if not prepared.toolset:
            return None
        return ToolRun(
            prepared.workspace,
            prepared.toolset,
            [_fetchable(message) for message in prepared.messages],
            container_id=prepared.container_id,
            uploads=prepared.uploads,
        )

    async def _think(self, reply: _Reply) -> AsyncGenerator[StreamEvent, None]:
        """Thinking: leaves the answer's prompt (this one plus the closed thinking), or a stop if
        nothing may follow."""
        prepared, assembler, progress = reply.prepared, reply.assembler, reply.progress
        thinking = prepared.plan.thinking
        assert thinking is not None
        engine = prepared.served.engine
        request = GenerationRequest(
            reply.tokens,
            min(thinking.budget, prepared.max_tokens),
            prepared.sampling,
            namespace=prepared.workspace,
            keep=reply.keep,
            grammar=thinking_grammar(),
            background=prepared.batch,
            admission=prepared.admission,
            images=reply.images,
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
            reply.stop = ("model_context_window_exceeded", None)
            return
        closed = await engine.tokenize(stream.text, special=False)
        closed += await engine.tokenize(markup.THINK_CLOSE, special=False)
        reply.tokens = reply.tokens + tuple(closed)
        reply.keep = ()
        reply.output_at_prompt = progress.output_tokens  # the thinking is in the prompt now

    async def _answer(self, reply: _Reply) -> AsyncGenerator[StreamEvent, None]:
        """An answer: text, client tool calls, or text ending in a server tool's call to run."""
        prepared, progress, plan = reply.prepared, reply.progress, reply.plan
        matcher = StopMatcher(list(prepared.stop_sequences))
        server_tools = prepared.toolset.names() if plan.calls else frozenset()
        parser: ReplyParser | CitingParser = ReplyParser(
            reply.assembler, calls=plan.calls, server_tools=server_tools
        )
        if plan.passages:
            parser = CitingParser(reply.assembler, {passage.ref: passage for passage in plan.passages})
        request = GenerationRequest(
            reply.tokens,
            prepared.max_tokens - progress.output_tokens,
            prepared.sampling,
            namespace=prepared.workspace,
            keep=reply.keep,
            grammar=plan.grammar,
            end_in_budget=plan.grammar is not None,
            background=prepared.batch,
            admission=prepared.admission,
            images=reply.images,
        )
        stop_reason: StopReason = "end_turn"
        whole = True  # the reply ended where it was whole: its turn, or a budget with no room for more
        matched: str | None = None
        if len(reply.tokens) >= prepared.served.engine.info.context_window:
            reply.stop = ("model_context_window_exceeded", None)
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
                if isinstance(parser, ReplyParser) and parser.server_call is not None:
                    break  # run it: the reply goes on after its result
                if chunk.finish is not None:
                    stop_reason = _STOP_REASONS[chunk.finish]
                    whole = chunk.finish in ("eos", "budget")
                    break
        finally:
            await generation.aclose()
        if matched is None:
            for event in parser.feed(matcher.flush()):
                yield event
        if isinstance(parser, ReplyParser) and parser.server_call is not None:
            # Run it (a stop sequence can only have come after it). After a client's call, the
            # reply then ends for the client to run theirs, as the API's does.
            reply.call = parser.server_call
            reply.then_stop = ("tool_use", None) if parser.tool_calls else None
            return
        for event in parser.flush(ended=stop_reason == "end_turn"):
            yield event
        if whole and matched is None and parser.tool_calls:  # calls that fitted whole get run
            stop_reason = "tool_use"
        reply.stop = (stop_reason, matched)

    async def _run_tool(self, reply: _Reply) -> AsyncGenerator[StreamEvent, None]:
        """Run the server tool call the answer ended with; its result block joins the reply, which
        then goes on from a prompt rendered again with it, or pauses (`pause_turn`) after
        `max_tool_iterations` calls, for the client to send back and continue."""
        call, tools, runner = reply.call, reply.tools, self.server_tools
        assert call is not None and tools is not None and runner is not None
        reply.call = None
        assert reply.content.message is not None
        results = [b for b in reply.content.message.content if isinstance(b, ServerToolResultBlock)]
        tools.context[len(reply.prepared.messages) :] = [block.model_dump_json() for block in results]
        block = await runner.run(call, tools)
        assert reply.progress.usage is not None
        reply.progress.usage = reply.progress.usage.model_copy(update={"server_tool_use": tools.usage})
        for event in reply.assembler.server_result(block):
            yield event
        reply.iterations += 1
        if reply.then_stop is not None:
            reply.stop = reply.then_stop
            return
        if reply.iterations >= self.max_tool_iterations:
            reply.stop = ("pause_turn", None)
            return
        await self._continue(reply)

    async def _continue(self, reply: _Reply) -> None:
        """The prompt after a server tool's result: the request's messages, then the reply so far
        as an assistant message, rendered as a later request sending it back would be."""
        prepared, progress = reply.prepared, reply.progress
        params, message = prepared.params, reply.content.message
        assert params is not None and message is not None and progress.usage is not None
        so_far = MessageParam(role="assistant", content=[_as_param(block) for block in message.content])
        messages = [*prepared.messages, so_far]
        rendered = await self._render_messages(
            prepared.served, params, messages, prepared.attachments or Attachments(), open_thinking=False
        )
        plan = await self._compile(prepared.served, rendered.plan, params)
        generated = progress.output_tokens - reply.output_at_prompt
        added = max(0, len(rendered.prompt.tokens) - len(reply.tokens) - generated)
        progress.usage = progress.usage.model_copy(
            update={"input_tokens": progress.usage.input_tokens + added}
        )
        reply.tokens, reply.images, reply.keep = rendered.prompt.tokens, rendered.prompt.images, ()
        reply.plan = replace(plan, thinking=None)
        reply.output_at_prompt = progress.output_tokens

    async def _render(
        self,
        served: ServedModel,
        params: MessageCreateParams | CountTokensParams,
        workspace: str,
        *,
        enforce_window: bool = True,
        uploads: dict[str, tuple[str, bytes]] | None = None,
    ) -> _Rendered:
        """The prompt generation reads: the request's messages after its context edits, if any.
        `uploads`: the `container_upload` files, by id (their names are shown to the model)."""
        attachments = await self._attachments(served, params, workspace)
        attachments.uploads = {file_id: name for file_id, (name, _) in (uploads or {}).items()}
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
        *,
        open_thinking: bool = True,
    ) -> _Rendered:
        """`open_thinking`: a prompt for thinking ends with its opening tag (a reply that goes on
        after a server tool's result answers straight away)."""
        # Off the event loop: a request of 50,000 messages takes seconds to lay out, and every
        # other request would wait for it. Tokenising yields to the loop as it goes.
        layout = await asyncio.to_thread(self._layout, served, params, messages, attachments)
        segments = layout.segments
        prompt = await tokenize(served.engine, segments)
        if open_thinking and layout.thinking and not segments[-1].text.endswith(markup.THINK_OPEN):
            opener = await served.engine.tokenize(markup.THINK_OPEN, special=False)
            prompt = replace(prompt, tokens=prompt.tokens + tuple(opener))
        return _Rendered(
            prompt,
            layout.breakpoints,
            layout.plan,
            original_tokens=len(prompt.tokens),
            messages=tuple(messages),
            attachments=attachments,
        )

    def _layout(
        self,
        served: ServedModel,
        params: MessageCreateParams | CountTokensParams,
        messages: list[MessageParam],
        attachments: Attachments,
    ) -> _Layout:
        """The prompt's text segments, cache breakpoints and reply plan for `messages` (the request's,
        or those its context edits left), in pure CPU work."""
        toolset = server_toolset(params)
        functions = toolset.functions()
        tools = custom_tools(params, functions) + functions
        opener = self.signer.opener()
        conversation = to_conversation(
            messages,
            params.system,
            tools=tools,
            open_signature=opener,
            attachments=attachments,
            uploads=attachments.uploads,
            open_sealed=self.sealer.opener(),
        )
        plan = plan_reply(
            params.model_copy(update={"messages": messages}),
            tools,
            budgets=served.config.thinking_budgets,
            last_user_text=_last_user_text(conversation),
            has_prefill=bool(conversation.prefill),
            force_tool_use=served.config.force_tool_use,
            groups=toolset.groups(),
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
                uploads=attachments.uploads,
                open_sealed=self.sealer.opener(),
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


_CONTENT_PARAM: TypeAdapter[ContentBlockParam] = TypeAdapter(ContentBlockParam)


def _as_param(block: ContentBlock) -> ContentBlockParam:
    """A block of the reply so far as a client would send it back."""
    return _CONTENT_PARAM.validate_python(block.model_dump(mode="json", exclude_none=True))


def _fetchable(message: MessageParam) -> str:
    """What of a message web_fetch may take URLs from: a user's whole message (text, documents, tool
    results), and of an assistant's only the results of server tools, never its own words."""
    if message.role == "user":
        return message.model_dump_json()
    if isinstance(message.content, str):
        return ""
    return "\n".join(
        b.model_dump_json() for b in message.content if isinstance(b, ServerToolResultBlockParam)
    )


def _container_id(container: Any) -> str | None:
    """The request's `container`: an id, or `{"id": …}` (skills are not run by Sijo)."""
    if container is None:
        return None
    if isinstance(container, str) and container:
        return container
    if isinstance(container, dict) and isinstance(container.get("id"), str):
        if container.get("skills"):
            raise InvalidRequestError("container.skills: skills are not supported by Sijo")
        return str(container["id"])
    if isinstance(container, dict) and container.get("id") is None and not container.get("skills"):
        return None
    raise InvalidRequestError("container: expected a container id or an object with an `id`")


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
        web_search_requests=0 if usage.server_tool_use is None else usage.server_tool_use.web_search_requests,
    )
