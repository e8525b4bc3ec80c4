"""POST /v1/messages and POST /v1/messages/count_tokens."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable
from contextlib import aclosing
from typing import TypeVar

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from sijo.api import sse
from sijo.api.auth import Authenticated, Caller
from sijo.api.body import INLINE_BYTES, ClientDisconnected, declared_length, parse_body
from sijo.api.deps import LimiterDep, ServiceDep, SettingsDep
from sijo.api.errors import request_id
from sijo.api.gc_pause import collection_paused
from sijo.api.openapi import answers, request_body
from sijo.protocol.events import MessageDeltaEvent, MessageStartEvent, StreamEvent
from sijo.protocol.message import Message, MessageTokensCount
from sijo.protocol.params import CountTokensParams, MessageCreateParams
from sijo.ratelimit import RateLimiter

router = APIRouter()
T = TypeVar("T")


@router.post(
    "/v1/messages",
    openapi_extra=request_body(MessageCreateParams),
    responses=answers(Message, media_type="text/event-stream", description="A Message, or its stream"),
)
async def create_message(
    request: Request, caller: Authenticated, service: ServiceDep, settings: SettingsDep, limiter: LimiterDep
) -> Response:
    with collection_paused(_large(request)):
        params = await parse_body(request, MessageCreateParams, settings.max_request_bytes)
        prepared = await service.prepare(params, caller.workspace, account=caller.account)
        stream = params.stream
        del params  # a large body's objects go while the collector is paused (gc_pause.py)
    # Rate limits are checked once the prompt's tokens are known; output is charged when it is spent,
    # and the prompt tokens read from the cache are given back then (the API does not count them).
    state = await limiter.admit(caller.rate_key, caller.limits, len(prepared.prompt.tokens))
    request.state.ratelimit_headers = state.headers()
    if stream:
        events = _settled(service.stream(prepared), limiter, caller)
        # The engine admits the request as the stream starts: start it before the 200 goes out, so
        # that a request it cannot take is refused with a 529 rather than an SSE error.
        first = await anext(events)
        return StreamingResponse(
            sse.frames(sse.with_pings(_after(first, events), settings.ping_interval), request_id(request)),
            media_type="text/event-stream; charset=utf-8",
            headers={"cache-control": "no-cache"},
        )
    message = await _unless_disconnected(request, service.create(prepared))
    usage = message.usage
    state = await limiter.settle(
        caller.rate_key, caller.limits, usage.output_tokens, usage.cache_read_input_tokens
    )
    request.state.ratelimit_headers = state.headers()
    return JSONResponse(message.model_dump(mode="json"))


@router.post(
    "/v1/messages/count_tokens",
    openapi_extra=request_body(CountTokensParams),
    responses=answers(MessageTokensCount),
)
async def count_tokens(
    request: Request, _: Authenticated, service: ServiceDep, settings: SettingsDep
) -> JSONResponse:
    with collection_paused(_large(request)):
        params = await parse_body(request, CountTokensParams, settings.max_request_bytes)
        count = MessageTokensCount(input_tokens=await service.count_tokens(params))
        del params
    return JSONResponse(count.model_dump(mode="json"))


def _large(request: Request) -> bool:
    """A body that may take long to parse: larger than what is parsed inline, or of unknown size."""
    declared = declared_length(request)
    return declared is None or declared > INLINE_BYTES


async def _settled(
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


async def _after(first: T, rest: AsyncGenerator[T, None]) -> AsyncIterator[T]:
    async with aclosing(rest):
        yield first
        async for item in rest:
            yield item


async def _unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """Run `work`, cancelling it (and so its generation) if the client disconnects first."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for pending in (task, watcher):
            if not pending.done():
                pending.cancel()
    if task.cancelled() or not task.done():
        raise ClientDisconnected("while its message was generated")
    return task.result()


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass
