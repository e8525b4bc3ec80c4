"""Message Batches (reference §8): create, retrieve, list, cancel, delete, and results as JSONL."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse

from sijo.api.auth import Authenticated, Caller
from sijo.api.body import read_body, validate_body
from sijo.api.deps import BatchesDep, ClockDep, LimiterDep, SettingsDep, WorkerDep
from sijo.api.openapi import answers, request_body
from sijo.api.pagination import select_page
from sijo.config import Settings
from sijo.errors import InvalidRequestError, NotFoundError, RateLimitError, shown
from sijo.protocol.base import rfc3339
from sijo.protocol.batches import (
    BatchCreateParams,
    DeletedMessageBatch,
    MessageBatch,
    MessageBatchPage,
    RequestCounts,
)
from sijo.store.batches import Batch, BatchStore, Owner

router = APIRouter()


def _wire(batch: Batch, request: Request, settings: Settings) -> MessageBatch:
    ended = batch.ended_at is not None
    # every request counts as processing until the whole batch ends (reference §8)
    settled = {k: v for k, v in batch.counts.items() if k not in ("pending", "running")}
    counts = RequestCounts(**settled) if ended else RequestCounts(processing=batch.request_count)
    base = (settings.public_url or str(request.base_url)).rstrip("/")
    return MessageBatch(
        id=batch.id,
        processing_status="ended" if ended else "canceling" if batch.cancel_initiated_at else "in_progress",
        request_counts=counts,
        created_at=rfc3339(batch.created_at),
        expires_at=rfc3339(batch.expires_at),
        ended_at=rfc3339(batch.ended_at) if batch.ended_at else None,
        cancel_initiated_at=rfc3339(batch.cancel_initiated_at) if batch.cancel_initiated_at else None,
        results_url=f"{base}/v1/messages/batches/{batch.id}/results" if ended else None,
    )


def _respond(batch: Batch, request: Request, settings: Settings) -> JSONResponse:
    return JSONResponse(_wire(batch, request, settings).model_dump(mode="json"))


async def _owned(store: BatchStore, batch_id: str, caller: Caller) -> Batch:
    batch = await asyncio.to_thread(store.get, batch_id, caller.workspace)
    if batch is None:  # another workspace's batch is not found either
        raise NotFoundError(f"message_batch_id: no batch {shown(batch_id)}")
    return batch


@router.post(
    "/v1/messages/batches", openapi_extra=request_body(BatchCreateParams), responses=answers(MessageBatch)
)
async def create_batch(
    request: Request,
    caller: Authenticated,
    store: BatchesDep,
    worker: WorkerDep,
    settings: SettingsDep,
    clock: ClockDep,
    limiter: LimiterDep,
) -> JSONResponse:
    body = await read_body(request, settings.batches.max_bytes)
    # Up to 256 MB of JSON: validated off the event loop, so other requests keep flowing meanwhile.
    rows = await asyncio.to_thread(_requests, body, settings.batches.max_requests)
    state = await limiter.admit(caller.rate_key, caller.limits, 0)  # the create call is one request
    request.state.ratelimit_headers = state.headers()
    await _check_queue(store, caller, len(rows), settings.rate_limits.batch_queue_requests)
    owner = Owner(caller.workspace, caller.account.workspace_id, caller.account.api_key_id)
    now = clock()
    expires = now + timedelta(seconds=settings.batches.expires_after)
    batch = await asyncio.to_thread(store.create, owner, rows, now, expires)
    worker.wake()
    return _respond(batch, request, settings)


@router.get("/v1/messages/batches", responses=answers(MessageBatchPage))
async def list_batches(
    request: Request,
    caller: Authenticated,
    store: BatchesDep,
    settings: SettingsDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
    after_id: str | None = None,
    before_id: str | None = None,
) -> JSONResponse:
    ids = await asyncio.to_thread(store.ids, caller.workspace)
    page_ids, has_more = select_page(ids, limit, after_id, before_id, "batch id")
    chunk = await asyncio.to_thread(store.many, page_ids)
    page = MessageBatchPage(
        data=[_wire(batch, request, settings) for batch in chunk],
        has_more=has_more,
        first_id=chunk[0].id if chunk else None,
        last_id=chunk[-1].id if chunk else None,
    )
    return JSONResponse(page.model_dump(mode="json"))


async def _check_queue(store: BatchStore, caller: Caller, adding: int, limit: int) -> None:
    """The processing-queue limit: a key's batch requests waiting or running at once."""
    queued = await asyncio.to_thread(store.queued, caller.account.api_key_id)
    if queued + adding <= limit:
        return
    message = (
        f"This batch of {adding} requests would exceed the limit of {limit} batch requests waiting or "
        f"running for this API key ({queued} are now); retry once some have finished."
    )
    hopeless = {"x-should-retry": "false"} if adding > limit else {}
    raise RateLimitError(message, headers={"retry-after": "60", **hopeless})


def _requests(body: bytes, limit: int) -> list[tuple[str, str]]:
    """The batch's (custom_id, params JSON) pairs, or a 400 naming the field at fault."""
    params = validate_body(body, BatchCreateParams)
    if len(params.requests) > limit:
        raise InvalidRequestError(
            f"requests: a batch holds at most {limit} requests, got {len(params.requests)}"
        )
    seen: set[str] = set()
    for index, item in enumerate(params.requests):
        if item.custom_id in seen:
            raise InvalidRequestError(
                f"requests.{index}.custom_id: {shown(item.custom_id)!r} is not unique in the batch"
            )
        seen.add(item.custom_id)
    return [(item.custom_id, json.dumps(item.params, ensure_ascii=False)) for item in params.requests]


@router.get("/v1/messages/batches/{batch_id}", responses=answers(MessageBatch))
async def retrieve_batch(
    batch_id: str, request: Request, caller: Authenticated, store: BatchesDep, settings: SettingsDep
) -> JSONResponse:
    return _respond(await _owned(store, batch_id, caller), request, settings)


@router.post("/v1/messages/batches/{batch_id}/cancel", responses=answers(MessageBatch))
async def cancel_batch(
    batch_id: str,
    request: Request,
    caller: Authenticated,
    store: BatchesDep,
    settings: SettingsDep,
    clock: ClockDep,
) -> JSONResponse:
    batch = await asyncio.to_thread(store.cancel, batch_id, caller.workspace, clock())
    if batch is None:  # another workspace's batch is not found either
        raise NotFoundError(f"message_batch_id: no batch {shown(batch_id)}")
    return _respond(batch, request, settings)


@router.delete("/v1/messages/batches/{batch_id}", responses=answers(DeletedMessageBatch))
async def delete_batch(batch_id: str, caller: Authenticated, store: BatchesDep) -> JSONResponse:
    batch = await _owned(store, batch_id, caller)
    if batch.ended_at is None:
        raise InvalidRequestError(
            f"message_batch_id: batch {batch_id} is still in progress; cancel it and wait until it has ended"
        )
    await asyncio.to_thread(store.delete, batch_id, caller.workspace)
    return JSONResponse(DeletedMessageBatch(id=batch_id).model_dump(mode="json"))


@router.get(
    "/v1/messages/batches/{batch_id}/results",
    responses=answers(None, media_type="application/x-jsonl", description="One result per line"),
)
async def batch_results(batch_id: str, caller: Authenticated, store: BatchesDep) -> StreamingResponse:
    batch = await _owned(store, batch_id, caller)
    if batch.ended_at is None:
        raise InvalidRequestError(
            f"message_batch_id: batch {batch_id} has not ended; its results are ready when "
            "processing_status is ended"
        )
    return StreamingResponse(result_stream(store, batch_id), media_type="application/x-jsonl")


async def result_stream(store: BatchStore, batch_id: str) -> AsyncIterator[bytes]:
    """The results file, read from the database a chunk at a time as the client takes it."""
    lines = store.result_lines(batch_id)
    while True:
        chunk = await asyncio.to_thread(_take, lines, 200)
        if not chunk:
            return
        yield b"".join(chunk)


def _take(lines: Iterator[bytes], count: int) -> list[bytes]:
    return list(itertools.islice(lines, count))
