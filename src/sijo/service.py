"""MessagesService: the one place that runs the pipeline — validate, resolve, render, generate, assemble.

Streaming and non-streaming share it: `prepare` does every check that can fail before a response
starts (so those failures are plain HTTP errors), `stream` yields the events, and `create` is the
fold of `stream` (`output.accumulate`).

The reply itself is a loop of phases (`phases.py`): thinking, answers, and the server tools run
between them; after a tool's result, the service renders the prompt again with the reply so far
(`_continue`), as a later request sending the blocks back would be rendered.

A request's `context_management` edits run where the prompt is rendered (`prompt/context_edits.py`):
each edit that clears something renders the prompt once more, to measure what it freed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from contextlib import aclosing
from dataclasses import dataclass, replace
from typing import Any

from pydantic import TypeAdapter

from sijo.billing import ContentClock, bill
from sijo.catalog import Catalog, RemoteModel, Route, ServedModel, available
from sijo.engines.base import (
    GrammarError,
    Sampling,
)
from sijo.errors import (
    InvalidRequestError,
    NotFoundError,
    PromptTooLongError,
    ThreadUnsupportedRequestError,
    UpstreamUnavailableError,
    shown,
)
from sijo.ids import new_id
from sijo.media.fetch import FetchPolicy
from sijo.metrics import Metrics
from sijo.output.accumulate import accumulate
from sijo.output.assembler import MessageAssembler
from sijo.phases import Progress, Reply, ReplyLoop
from sijo.prepared import Account, Prepared, PreparedMessage, RemoteMessage
from sijo.prompt import markup
from sijo.prompt.attachments import Attachments, DecodedImages, StoredBytes, load_attachments
from sijo.prompt.context_edits import apply_edits, checked_edits
from sijo.prompt.conversation import Conversation, to_conversation
from sijo.prompt.template import ChatTemplate, Prompt, Segment, tokenize
from sijo.prompt_cache import NO_CACHE, Breakpoint, PromptCache, breakpoints
from sijo.protocol.content import (
    ContainerUploadBlockParam,
    ContentBlockParam,
    WebFetchToolResultBlockParam,
    WebSearchToolResultBlockParam,
)
from sijo.protocol.context_management import ContextManagementResponse, CountTokensContextManagement
from sijo.protocol.events import (
    MessageDeltaEvent,
    MessageStartEvent,
    PingEvent,
    StreamEvent,
)
from sijo.protocol.message import CacheCreation, ContentBlock, Message, MessageTokensCount, Usage
from sijo.protocol.params import NOT_YET_SUPPORTED, CountTokensParams, MessageCreateParams, MessageParam
from sijo.protocol.reasoning import ThinkingAdaptive, ThinkingEnabled
from sijo.relay import relay, remote_usage_record
from sijo.reply_plan import ReplyPlan, custom_tools, plan_reply, with_citations
from sijo.signing import SEALING, ThinkingSigner
from sijo.store.ledger import UsageLedger
from sijo.tools.runner import ServerTools, ToolRun
from sijo.tools.toolset import ServerToolSet, server_toolset
from sijo.usage import UsageRecord

# Reads a Files API file: (workspace, file id, max bytes) → the file (its bytes if it is at most
# that long), or None if the workspace has no such file.
FileSource = Callable[[str, str, int], Awaitable[StoredBytes | None]]


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


_NO_ACCOUNT = Account()


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
        metrics: Metrics | None = None,
    ) -> None:
        self.catalog = catalog
        self.metrics = metrics
        self.server_tools = server_tools
        self.ledger = ledger
        self.files = files
        self.fetch_policy = fetch_policy
        self._decoded = DecodedImages()
        self.signer = signer
        self.sealer = signer.derived(SEALING)
        self._loop = ReplyLoop(signer, server_tools, max_tool_iterations, self._continue)
        self.cache = cache if cache is not None else PromptCache()
        self._templates: dict[int, ChatTemplate] = {}

    async def prepare(
        self,
        params: MessageCreateParams,
        workspace: str = "default",
        *,
        account: Account = _NO_ACCOUNT,
        batch: bool = False,
        forwarded: Mapping[str, str] | None = None,
    ) -> Prepared:
        """The request made ready on the first healthy route of its model (`catalog.available`);
        `forwarded`: the client's headers a Messages API upstream must see (its betas)."""
        if params.thread is not None and not self._remote(params.model):
            raise ThreadUnsupportedRequestError()  # first, so that SDK helpers go on without a thread
        route = available(self.catalog.resolve(params.model))
        if isinstance(route, ServedModel):
            _check_local(params)
        if params.stream and params.max_tokens == 0:
            raise InvalidRequestError("max_tokens: 0 is not allowed when stream is true")
        return await self._prepare_on(
            route, params, workspace, account, batch, tuple((forwarded or {}).items())
        )

    def _remote(self, model_id: str) -> bool:
        try:
            return isinstance(available(self.catalog.resolve(model_id)), RemoteModel)
        except NotFoundError:
            return False

    async def _prepare_on(
        self,
        route: Route,
        params: MessageCreateParams,
        workspace: str,
        account: Account,
        batch: bool,
        forwarded: tuple[tuple[str, str], ...],
    ) -> Prepared:
        if params.max_tokens > route.max_output_tokens:
            raise InvalidRequestError(
                f"max_tokens: {params.max_tokens} > {route.max_output_tokens}, which is the "
                f"maximum allowed number of output tokens for {params.model}"
            )
        if isinstance(route, RemoteModel):  # the upstream checks the rest, as the API it is
            return RemoteMessage(params.model, route, params, workspace, account, batch, forwarded)
        served = route
        _check_local(params)
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
            forwarded=forwarded,
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

    async def count_tokens(
        self,
        params: CountTokensParams,
        workspace: str = "default",
        forwarded: Mapping[str, str] | None = None,
    ) -> MessageTokensCount:
        route = available(self.catalog.resolve(params.model))
        while isinstance(route, RemoteModel):
            body = params.model_dump(mode="json", exclude_unset=True, by_alias=True)
            try:
                return MessageTokensCount.model_validate(
                    await route.upstream.count_tokens(body, dict(forwarded or {}))
                )
            except UpstreamUnavailableError:
                if route.fallback is None:
                    raise
                route = available(route.fallback)
        _reject_unsupported(params)
        # The API counts a prompt over the window too: clients ask precisely to learn that it no longer fits.
        rendered = await self._render(route, params, workspace, enforce_window=False)
        original = None
        if rendered.context_management is not None:
            original = CountTokensContextManagement(original_input_tokens=rendered.original_tokens)
        return MessageTokensCount(input_tokens=len(rendered.prompt.tokens), context_management=original)

    async def create(self, prepared: Prepared) -> Message:
        return await accumulate(self.stream(prepared))

    async def stream(self, prepared: Prepared) -> AsyncIterator[StreamEvent]:
        """The reply's events, from the route `prepare` chose. A route that may fail for reasons of
        its own (an upstream, or one with a fallback) holds `message_start` back until the reply has
        begun: if it fails before that, the next healthy route takes the request over, and nothing
        of the failed attempt was sent. After that, a failure is an `error` event."""
        while True:
            route = prepared.route if isinstance(prepared, RemoteMessage) else prepared.served
            held: list[StreamEvent] | None = [] if _holds_back(route) else None
            try:
                async with aclosing(self._attempt(prepared)) as events:
                    async for event in events:
                        if held is not None and isinstance(event, MessageStartEvent | PingEvent):
                            held.append(event)
                            continue
                        for waiting in held or ():
                            yield waiting
                        held = None
                        yield event
                for waiting in held or ():
                    yield waiting
                return
            except UpstreamUnavailableError:
                params = prepared.params
                if held is None or route.fallback is None or params is None:
                    raise
                prepared = await self._prepare_on(
                    available(route.fallback),
                    params,
                    prepared.workspace,
                    prepared.account,
                    prepared.batch,
                    prepared.forwarded,
                )

    def _attempt(self, prepared: Prepared) -> AsyncGenerator[StreamEvent, None]:
        if isinstance(prepared, RemoteMessage):
            return relay(prepared, self.ledger, self.metrics)
        return self._stream_local(prepared)

    async def _stream_local(self, prepared: PreparedMessage) -> AsyncGenerator[StreamEvent, None]:
        """The reply's events; whatever it consumed goes to the usage ledger, even if the client
        leaves early (the tokens were spent). A batch request's usage is written by the batch
        worker, with its result, so that a request rerun after a crash is billed once; an upstream
        that failed before any output bills nothing.

        The engine admits the request before the first event, so a request it cannot take fails
        with `OverloadedError` (a 529) before anything is sent, and never once it has started."""
        admission = prepared.served.engine.admit()
        progress = Progress()
        clock = ContentClock()
        try:
            admitted = replace(prepared, admission=admission)
            async with aclosing(self._events(admitted, progress)) as events:
                async for event in events:
                    clock.see(event)
                    yield event
        except UpstreamUnavailableError:
            if clock.first is None:
                progress.usage = None
            raise
        finally:
            admission.release()
            if progress.usage is not None:
                spent = usage_record(
                    prepared, progress.usage, progress.output_tokens, progress.thinking_tokens
                )
                bill(spent, clock, batch=prepared.batch, ledger=self.ledger, metrics=self.metrics)

    async def _events(
        self, prepared: PreparedMessage, progress: Progress
    ) -> AsyncGenerator[StreamEvent, None]:
        """The reply as a loop of phases: thinking, then answers, with a server tool run between
        two answers wherever one ended in a server tool's call (`_next_phase`)."""
        plan = NO_CACHE
        if prepared.breakpoints:
            plan = await self.cache.plan(
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
        reply = Reply(
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
        phase = self._loop.first_phase(reply)
        while phase is not None:
            async with aclosing(phase(reply)) as events:
                async for event in events:
                    reply.content.apply(event)
                    yield event
            phase = self._loop.next_phase(reply)
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

    async def _continue(self, reply: Reply) -> None:
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
    results), and of an assistant's only its search and fetch results, never what the model wrote."""
    if message.role == "user":
        return message.model_dump_json()
    if isinstance(message.content, str):
        return ""
    found = (WebSearchToolResultBlockParam, WebFetchToolResultBlockParam)
    return "\n".join(b.model_dump_json() for b in message.content if isinstance(b, found))


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


def _check_local(params: MessageCreateParams) -> None:
    """What only the Claude API itself can serve (a Messages API upstream takes it as it is)."""
    if params.thread is not None:
        raise ThreadUnsupportedRequestError()
    _reject_unsupported(params)
    if params.speed == "fast":
        raise InvalidRequestError("speed: fast mode is not supported by Sijo")


def _holds_back(route: Route) -> bool:
    return route.fallback is not None or isinstance(route, RemoteModel) or route.engine.info.remote


def _reject_unsupported(params: MessageCreateParams | CountTokensParams) -> None:
    set_fields: dict[str, Any] = params.model_dump(include=set(NOT_YET_SUPPORTED), exclude_none=True)
    for name in set_fields:
        raise InvalidRequestError(f"{name}: this parameter is not supported by Sijo yet")


def usage_record(prepared: Prepared, usage: Usage, output_tokens: int, thinking_tokens: int) -> UsageRecord:
    """The ledger's record of a reply to `prepared` whose prompt billed `usage`."""
    if isinstance(prepared, RemoteMessage):
        return remote_usage_record(prepared, usage)
    return prepared.account.record(prepared.model_id, prepared.batch, usage, output_tokens, thinking_tokens)
