"""A reply as a loop of phases (reference §10, §12): thinking, then an answer; an answer that ends in
a server tool's call is followed by running it, and the reply goes on in the same message with
another answer, from the prompt rendered again with the result (`Continuation`).

Each phase reads the `Reply` in progress, yields its stream events and leaves one of: a stop reason
(`stop`), a server tool call to run (`call`), or the prompt the next answer continues (`tokens`).
`next_phase` picks what runs next, so a new kind of phase slots in there. A reply with thinking
generates it first: the prompt ends with `<think>`, the grammar ends it at `</think>` (its budget
is that phase's `max_tokens`), and the answer's prompt is the thinking's plus the closed thinking,
so a budget that runs out ends the thinking on any model and the answer reuses its KV cells.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, field

from sijo.engines.base import FinishReason, GenerationRequest, ImageSpan, KeepPoint
from sijo.output.accumulate import Accumulator
from sijo.output.assembler import MessageAssembler
from sijo.output.citations import CitingParser
from sijo.output.grammar import thinking_grammar
from sijo.output.reply import ReplyParser, ServerCall, ThinkingStream
from sijo.output.stops import StopMatcher
from sijo.prepared import PreparedMessage
from sijo.prompt import markup
from sijo.protocol.events import StreamEvent
from sijo.protocol.message import StopReason, Usage
from sijo.reply_plan import ReplyPlan
from sijo.signing import ThinkingSigner
from sijo.tools.runner import ServerTools, ToolRun

_STOP_REASONS: dict[FinishReason, StopReason] = {
    "eos": "end_turn",
    "length": "max_tokens",
    "context_full": "model_context_window_exceeded",
    "budget": "max_tokens",  # unless what fitted was whole tool calls (`_answer`)
}


@dataclass(slots=True)
class Progress:
    output_tokens: int = 0
    thinking_tokens: int = 0
    usage: Usage | None = None  # set once the prompt's usage is known; grows as server tools run


@dataclass(slots=True)
class Reply:
    """The reply in progress: what each phase reads and moves on. A phase ends by setting `stop`,
    or `call` (a server tool to run), or leaves `tokens` for the next answer to continue."""

    prepared: PreparedMessage
    assembler: MessageAssembler
    progress: Progress
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


Phase = Callable[[Reply], AsyncGenerator[StreamEvent, None]]
# Renders the prompt that goes on after a server tool's result into `reply` (`MessagesService`).
Continuation = Callable[[Reply], Awaitable[None]]


class ReplyLoop:
    def __init__(
        self,
        signer: ThinkingSigner,
        server_tools: ServerTools | None,
        max_iterations: int,
        continuation: Continuation,
    ) -> None:
        self._signer = signer
        self._server_tools = server_tools
        self._max_iterations = max_iterations
        self._continue = continuation

    def first_phase(self, reply: Reply) -> Phase | None:
        if reply.prepared.max_tokens == 0:
            return None
        return self._think if reply.prepared.plan.thinking is not None else self._answer

    def next_phase(self, reply: Reply) -> Phase | None:
        if reply.stop is not None:
            return None
        if reply.call is not None:
            return self._run_tool
        if reply.prepared.max_tokens <= reply.progress.output_tokens:
            return None  # the budget is spent: max_tokens
        return self._answer

    async def _think(self, reply: Reply) -> AsyncGenerator[StreamEvent, None]:
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
        for event in assembler.sign_thinking(self._signer.sign(stream.text)):
            yield event
        if finish == "context_full":
            reply.stop = ("model_context_window_exceeded", None)
            return
        closed = await engine.tokenize(stream.text, special=False)
        closed += await engine.tokenize(markup.THINK_CLOSE, special=False)
        reply.tokens = reply.tokens + tuple(closed)
        reply.keep = ()
        reply.output_at_prompt = progress.output_tokens  # the thinking is in the prompt now

    async def _answer(self, reply: Reply) -> AsyncGenerator[StreamEvent, None]:
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

    async def _run_tool(self, reply: Reply) -> AsyncGenerator[StreamEvent, None]:
        """Run the server tool call the answer ended with; its result block joins the reply, which
        then goes on from a prompt rendered again with it, or pauses (`pause_turn`) after
        `max_tool_iterations` calls, for the client to send back and continue."""
        call, tools, runner = reply.call, reply.tools, self._server_tools
        assert call is not None and tools is not None and runner is not None
        reply.call = None
        block = await runner.run(call, tools)
        assert reply.progress.usage is not None
        reply.progress.usage = reply.progress.usage.model_copy(update={"server_tool_use": tools.usage})
        for event in reply.assembler.server_result(block):
            yield event
        reply.iterations += 1
        if reply.then_stop is not None:
            reply.stop = reply.then_stop
            return
        if reply.iterations >= self._max_iterations:
            reply.stop = ("pause_turn", None)
            return
        await self._continue(reply)
