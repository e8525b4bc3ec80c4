"""POST /v1/messages and POST /v1/messages/count_tokens."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from sijo.api.auth import Authenticated
from sijo.api.body import parse_body
from sijo.api.delivery import completed, parsing_may_be_long, streamed
from sijo.api.deps import LimiterDep, ServiceDep, SettingsDep
from sijo.api.gc_pause import collection_paused
from sijo.api.openapi import answers, request_body
from sijo.engines.upstream.anthropic import FORWARDED_HEADERS
from sijo.protocol.message import Message, MessageTokensCount
from sijo.protocol.params import CountTokensParams, MessageCreateParams

router = APIRouter()


@router.post(
    "/v1/messages",
    openapi_extra=request_body(MessageCreateParams),
    responses=answers(Message, media_type="text/event-stream", description="A Message, or its stream"),
)
async def create_message(
    request: Request, caller: Authenticated, service: ServiceDep, settings: SettingsDep, limiter: LimiterDep
) -> Response:
    with collection_paused(parsing_may_be_long(request)):
        params = await parse_body(request, MessageCreateParams, settings.max_request_bytes)
        prepared = await service.prepare(
            params, caller.workspace, account=caller.account, forwarded=forwarded_headers(request)
        )
        stream = params.stream
        del params  # a large body's objects go while the collector is paused (gc_pause.py)
    # Rate limits are checked once the prompt's tokens are known; output is charged when it is spent,
    # and the prompt tokens read from the cache are given back then (the API does not count them).
    state = await limiter.admit(caller.rate_key, caller.limits, prepared.input_tokens)
    request.state.ratelimit_headers = state.headers()
    if stream:
        return await streamed(request, service, prepared, limiter, caller, settings.ping_interval)
    message, state = await completed(request, service, prepared, limiter, caller)
    request.state.ratelimit_headers = state.headers()
    return JSONResponse(message.model_dump(mode="json"))


@router.post(
    "/v1/messages/count_tokens",
    openapi_extra=request_body(CountTokensParams),
    responses=answers(MessageTokensCount),
)
async def count_tokens(
    request: Request, caller: Authenticated, service: ServiceDep, settings: SettingsDep
) -> JSONResponse:
    with collection_paused(parsing_may_be_long(request)):
        params = await parse_body(request, CountTokensParams, settings.max_request_bytes)
        count = await service.count_tokens(params, caller.workspace, forwarded=forwarded_headers(request))
        del params
    return JSONResponse(count.model_dump(mode="json"))


def forwarded_headers(request: Request) -> dict[str, str]:
    """What a Messages API upstream must see of the client's request: the betas it asked for."""
    return {name: value for name in FORWARDED_HEADERS if (value := request.headers.get(name))}
