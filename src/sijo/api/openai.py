"""POST /v1/chat/completions: the OpenAI SDK compatibility layer, as the Claude API offers it
(`OpenAI(base_url=".../v1/")`), and OpenAI-shaped answers for GET /v1/models (`models.py`).

A chat completion runs on the Messages pipeline itself: the request is translated
(`openai_compat/request.py`), then prepared, admitted, rate-limited, generated, cached and recorded
in the usage ledger exactly as POST /v1/messages does it (`messages.py`), and the `Message` or its
events are translated back (`openai_compat/reply.py`). OpenAI SDKs send no `anthropic-version` and
put the key in `Authorization: Bearer`; errors here take OpenAI's shape,
`{"error": {"message", "type", "param", "code"}}`, with the same status codes and messages.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel

from sijo.api import sse
from sijo.api.auth import Authenticator, Caller, presented_keys
from sijo.api.body import INLINE_BYTES, read_body, validate_body
from sijo.api.delivery import completed, parsing_may_be_long, started_stream
from sijo.api.deps import LimiterDep, ServiceDep, SettingsDep
from sijo.api.errors import request_id
from sijo.api.gc_pause import collection_paused
from sijo.api.openapi import answers, request_body
from sijo.catalog import available
from sijo.config import Settings
from sijo.errors import ApiError, InternalServerError, NotFoundError, PromptTooLongError
from sijo.openai_compat.reply import ChunkWriter, to_chat_completion
from sijo.openai_compat.request import Translation, to_message_params
from sijo.protocol.events import PingEvent, StreamEvent
from sijo.protocol.models import ModelInfo
from sijo.protocol.openai import (
    ChatCompletion,
    ChatCompletionCreateParams,
    OpenAIErrorDetail,
    OpenAIErrorResponse,
    OpenAIModel,
    OpenAIModelList,
)
from sijo.ratelimit import RateLimiter, RateLimitState
from sijo.service import MessagesService

router = APIRouter()
logger = logging.getLogger("sijo.api")
OWNED_BY = "sijo"


@router.post(
    "/v1/chat/completions",
    openapi_extra=request_body(ChatCompletionCreateParams),
    responses=answers(
        ChatCompletion,
        media_type="text/event-stream",
        description="A chat completion, or its chunks",
        error=OpenAIErrorResponse,
    ),
)
async def create_chat_completion(
    request: Request, service: ServiceDep, settings: SettingsDep, limiter: LimiterDep
) -> Response:
    try:
        caller = await authenticate_openai(request)
        response = await _complete(request, caller, service, settings, limiter)
    except ApiError as error:
        response = render_openai(error)
    return with_request_id(request, response)


async def _complete(
    request: Request, caller: Caller, service: MessagesService, settings: Settings, limiter: RateLimiter
) -> Response:
    with collection_paused(parsing_may_be_long(request)):
        body = await read_body(request, settings.max_request_bytes)
        if len(body) <= INLINE_BYTES:
            translation = _translated(body, service)
        else:
            translation = await asyncio.to_thread(_translated, body, service)
        del body
        try:
            prepared = await service.prepare(translation.params, caller.workspace, account=caller.account)
        except ApiError as error:
            raise translation.origins.renamed(error) from None
        stream, include_usage = translation.params.stream, translation.include_usage
        legacy, ignored = translation.legacy_functions, translation.ignored
        del translation  # a large body's objects go while the collector is paused (gc_pause.py)
    if ignored:
        logger.info("POST /v1/chat/completions ignored what Sijo does not run: %s", ", ".join(ignored))
    state = await limiter.admit(caller.rate_key, caller.limits, prepared.input_tokens)
    request.state.ratelimit_headers = ratelimit_headers(state)
    created = int(time.time())
    if stream:
        writer = ChunkWriter(created, include_usage=include_usage, legacy_functions=legacy)
        events = await started_stream(service, prepared, limiter, caller)  # as in messages.py
        return StreamingResponse(
            _frames(sse.batches(events, settings.ping_interval), writer),
            media_type="text/event-stream; charset=utf-8",
            headers={"cache-control": "no-cache"},
        )
    message, state = await completed(request, service, prepared, limiter, caller)
    request.state.ratelimit_headers = ratelimit_headers(state)
    completion = to_chat_completion(message, created, legacy_functions=legacy)
    return JSONResponse(completion.model_dump(mode="json"))


def _translated(body: bytes, service: MessagesService) -> Translation:
    """Validated (strictly, a 400 naming the field), its model resolved, and translated."""
    chat = validate_body(body, ChatCompletionCreateParams)
    served = service.catalog.resolve(chat.model)
    return to_message_params(chat, served.max_output_tokens)


async def _frames(batched: AsyncIterator[list[StreamEvent]], writer: ChunkWriter) -> AsyncIterator[bytes]:
    """OpenAI's SSE: `data: <chunk>` frames, those of a batch of events (`sse.batches`) as one piece,
    then `data: [DONE]`; keep-alives are SSE comments, and a failure after the headers went out is
    one `data: {"error": …}` frame, which the SDK raises."""
    done: list[bytes] = []
    try:
        async for batch in batched:
            for event in batch:
                done.append(b": ping\n\n" if isinstance(event, PingEvent) else writer.frames(event))
            if chunk := b"".join(done):
                yield chunk
            done.clear()
    except ApiError as error:
        yield b"".join([*done, _error_frame(error)])
        return
    except Exception:
        logger.exception("chat completion stream failed after the response started")
        yield b"".join([*done, _error_frame(InternalServerError("Internal server error"))])
        return
    yield b"data: [DONE]\n\n"


def _error_frame(error: ApiError) -> bytes:
    return f"data: {openai_error(error).model_dump_json()}\n\n".encode()


# --- shared with models.py -----------------------------------------------------------------------


def openai_client(request: Request) -> bool:
    """Whether the caller speaks OpenAI: the Anthropic SDKs always send `anthropic-version`."""
    return "anthropic-version" not in request.headers


async def authenticate_openai(request: Request) -> Caller:
    """`auth.authenticate` without its `anthropic-version` check; the key may come as
    `Authorization: Bearer` (what OpenAI SDKs send) or `x-api-key`, as there."""
    authenticator: Authenticator = request.app.state.authenticator
    caller = await authenticator.caller(presented_keys(request))
    limiter: RateLimiter = request.app.state.limiter
    request.state.ratelimit_headers = ratelimit_headers(await limiter.peek(caller.rate_key, caller.limits))
    return caller


def ratelimit_headers(state: RateLimitState, now: datetime | None = None) -> dict[str, str]:
    """The `anthropic-ratelimit-*` headers and OpenAI's `x-ratelimit-*` for the same buckets
    (requests, and tokens), whose resets are durations ("12s") rather than times."""
    headers = state.headers()
    moment = now or datetime.now(UTC)
    for name in ("requests", "tokens"):
        reset = datetime.fromisoformat(headers[f"anthropic-ratelimit-{name}-reset"].replace("Z", "+00:00"))
        headers[f"x-ratelimit-limit-{name}"] = headers[f"anthropic-ratelimit-{name}-limit"]
        headers[f"x-ratelimit-remaining-{name}"] = headers[f"anthropic-ratelimit-{name}-remaining"]
        headers[f"x-ratelimit-reset-{name}"] = f"{max(0, math.ceil((reset - moment).total_seconds()))}s"
    return headers


def openai_error(error: ApiError) -> OpenAIErrorResponse:
    """The error in OpenAI's shape: the same message and type; `param` is the field it names."""
    head, sep, _ = error.message.partition(": ")
    param = head if sep and " " not in head and error.status_code in (400, 404) else None
    code = None
    if isinstance(error, PromptTooLongError):
        code = "context_length_exceeded"
    elif isinstance(error, NotFoundError) and param == "model":
        code = "model_not_found"
    detail = OpenAIErrorDetail(message=error.message, type=error.error_type, param=param, code=code)
    return OpenAIErrorResponse(error=detail)


def render_openai(error: ApiError) -> JSONResponse:
    retry = error.status_code >= 500 or error.status_code == 429
    headers = {"x-should-retry": "true" if retry else "false", **error.headers}
    body = openai_error(error).model_dump(mode="json")
    return JSONResponse(body, status_code=error.status_code, headers=headers)


async def openai_models(request: Request, service: MessagesService, model_id: str | None) -> Response:
    """GET /v1/models (every model: OpenAI's list is not paged) or /v1/models/{id}, OpenAI-shaped."""
    try:
        await authenticate_openai(request)
        if model_id is not None:
            answer: BaseModel = openai_model(available(service.catalog.resolve(model_id)).info())
        else:
            answer = OpenAIModelList(data=[openai_model(info) for info in service.catalog.infos()])
    except ApiError as error:
        return with_request_id(request, render_openai(error))
    return with_request_id(request, JSONResponse(answer.model_dump(mode="json")))


def with_request_id(request: Request, response: Response) -> Response:
    """The request id under OpenAI's name too (`x-request-id`: the SDK's `_request_id`); the
    `request-id` header is the middleware's, on every response."""
    response.headers["x-request-id"] = request_id(request) or ""
    return response


def openai_model(info: ModelInfo) -> OpenAIModel:
    created = datetime.fromisoformat(info.created_at.replace("Z", "+00:00"))
    return OpenAIModel(id=info.id, created=int(created.timestamp()), owned_by=OWNED_BY)
