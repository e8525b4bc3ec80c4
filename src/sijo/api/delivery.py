"""Delivering a prepared message over HTTP, shared by the routes that run one (`messages.py` and the
OpenAI compatibility layer, `openai.py`): garbage collection around large bodies, charging a stream's
tokens when it ends, starting a stream before its 200, and cancelling work whose client left."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable
from contextlib import aclosing
from typing import TypeVar

from fastapi import Request
from fastapi.responses import StreamingResponse

from sijo.api import sse
from sijo.api.auth import Caller
from sijo.api.body import INLINE_BYTES, ClientDisconnected, declared_length
from sijo.api.errors import request_id
from sijo.prepared import Prepared
from sijo.protocol.events import MessageDeltaEvent, MessageStartEvent, StreamEvent
from sijo.protocol.message import Message
from sijo.ratelimit import RateLimiter, RateLimitState
from sijo.service import MessagesService

T = TypeVar("T")


def parsing_may_be_long(request: Request) -> bool:
    """A body that may take long to parse: larger than what is parsed inline, or of unknown size."""
    declared = declared_length(request)
    return declared is None or declared > INLINE_BYTES


async def settled(
    events: AsyncIterator[StreamEvent], limiter: RateLimiter, caller: Caller
) -> AsyncGenerator[StreamEvent, None]:
    """The stream, charging its output tokens to the caller's limits when it ends (or is left), and
    giving back the prompt tokens read from the cache, which input-token limits do not count."""
    output_tokens = cache_read = 0
    try:
        async for event in events:
            if isinstance(event, MessageStartEvent):
                cache_read = event.message.usage.cache_read_input_tokens
            elif isinstance(event, MessageDeltaEvent):
                output_tokens = event.usage.output_tokens
            yield event
    finally:
        await limiter.settle(caller.rate_key, caller.limits, output_tokens, cache_read)


async def streamed(
    request: Request,
    service: MessagesService,
    prepared: Prepared,
    limiter: RateLimiter,
    caller: Caller,
    ping_interval: float,
) -> StreamingResponse:
    """An admitted message as the API streams it: started before the 200, written as SSE with pings."""
    events = await started_stream(service, prepared, limiter, caller)
    return StreamingResponse(
        sse.frames(sse.batches(events, ping_interval), request_id(request)),
        media_type="text/event-stream; charset=utf-8",
        headers={"cache-control": "no-cache"},
    )


async def started_with(first: T, rest: AsyncGenerator[T, None]) -> AsyncIterator[T]:
    """`first` (already taken from `rest`, to start it before the response does), then the rest."""
    async with aclosing(rest):
        yield first
        async for item in rest:
            yield item


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """Run `work`, cancelling it (and so its generation) if the client disconnects first."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(disconnected(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for pending in (task, watcher):
            if not pending.done():
                pending.cancel()
    if task.cancelled() or not task.done():
        raise ClientDisconnected("while its message was generated")
    return task.result()


async def disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def started_stream(
    service: MessagesService, prepared: Prepared, limiter: RateLimiter, caller: Caller
) -> AsyncIterator[StreamEvent]:
    """The reply's events, settled with the limiter when they end. The engine admits the request as
    the stream starts: it is started here, before the 200 goes out, so that a request it cannot take
    is refused with a 529 rather than an SSE error."""
    events = settled(service.stream(prepared), limiter, caller)
    first = await anext(events)
    return started_with(first, events)


async def completed(
    request: Request,
    service: MessagesService,
    prepared: Prepared,
    limiter: RateLimiter,
    caller: Caller,
) -> tuple[Message, RateLimitState]:
    """The whole reply (cancelled if the client leaves first), its output charged to the caller's
    limits and its cache reads given back; with the limits' state after that."""
    message = await unless_disconnected(request, service.create(prepared))
    usage = message.usage
    state = await limiter.settle(
        caller.rate_key, caller.limits, usage.output_tokens, usage.cache_read_input_tokens
    )
    return message, state
