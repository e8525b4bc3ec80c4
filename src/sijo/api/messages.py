"""POST /v1/messages and POST /v1/messages/count_tokens."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from sijo.api import sse
from sijo.api.auth import Authenticated
from sijo.api.body import parse_body
from sijo.api.deps import ServiceDep, SettingsDep
from sijo.api.errors import request_id
from sijo.protocol.message import MessageTokensCount
from sijo.protocol.params import CountTokensParams, MessageCreateParams

router = APIRouter()
T = TypeVar("T")


class ClientDisconnected(Exception):
    """The client went away before a non-streaming response was ready."""


@router.post("/v1/messages")
async def create_message(
    request: Request, workspace: Authenticated, service: ServiceDep, settings: SettingsDep
) -> Response:
    params = await parse_body(request, MessageCreateParams, settings.max_request_bytes)
    prepared = await service.prepare(params, workspace)
    if params.stream:
        events = sse.with_pings(service.stream(prepared), settings.ping_interval)
        return StreamingResponse(
            sse.frames(events, request_id(request)),
            media_type="text/event-stream; charset=utf-8",
            headers={"cache-control": "no-cache"},
        )
    try:
        message = await _unless_disconnected(request, service.create(prepared))
    except ClientDisconnected:
        return Response(status_code=499)
    return JSONResponse(message.model_dump(mode="json"))


@router.post("/v1/messages/count_tokens")
async def count_tokens(
    request: Request, _: Authenticated, service: ServiceDep, settings: SettingsDep
) -> JSONResponse:
    params = await parse_body(request, CountTokensParams, settings.max_request_bytes)
    count = MessageTokensCount(input_tokens=await service.count_tokens(params))
    return JSONResponse(count.model_dump(mode="json"))


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
        raise ClientDisconnected
    return task.result()


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass
