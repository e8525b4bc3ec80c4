"""Server-sent events framing: `event: <type>` + `data: <json>`, keep-alive pings, and a final
`error` event when something fails after the headers went out (reference §3)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator

from sijo.errors import ApiError, InternalServerError
from sijo.protocol.events import PingEvent, StreamEvent

logger = logging.getLogger("sijo.api")


def encode(event: StreamEvent) -> bytes:
    return f"event: {event.type}\ndata: {event.model_dump_json()}\n\n".encode()


def encode_error(error: ApiError, request_id: str | None) -> bytes:
    body = json.dumps(error.body(request_id), ensure_ascii=False)
    return f"event: error\ndata: {body}\n\n".encode()


async def with_pings(events: AsyncIterator[StreamEvent], interval: float) -> AsyncIterator[StreamEvent]:
    """Pass events through, adding a `ping` after `message_start` and whenever `interval` passes quietly."""
    iterator = aiter(events)
    pending: asyncio.Future[StreamEvent] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(anext(iterator))
            done, _ = await asyncio.wait({pending}, timeout=interval)
            if not done:
                yield PingEvent()
                continue
            try:
                event = pending.result()
            except StopAsyncIteration:
                return
            pending = None
            yield event
            if event.type == "message_start":
                yield PingEvent()
    finally:
        if pending is not None and not pending.done():
            pending.cancel()


async def frames(events: AsyncIterator[StreamEvent], request_id: str | None) -> AsyncIterator[bytes]:
    try:
        async for event in events:
            yield encode(event)
    except ApiError as error:
        yield encode_error(error, request_id)
    except Exception:
        logger.exception("stream failed after the response started")
        yield encode_error(InternalServerError("Internal server error"), request_id)
