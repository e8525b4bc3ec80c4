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
    """Pass events through, adding a `ping` after `message_start` and after `interval` of silence.

    One producer task pulls the events into a small queue (so a slow client slows generation down
    rather than piling events up); the hot path costs a queue hand-off, not a task per event.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[StreamEvent | BaseException | None] = asyncio.Queue(maxsize=16)
    last_sent = loop.time()

    async def produce() -> None:
        try:
            async for event in events:
                await queue.put(event)
            await queue.put(None)
        except Exception as exc:
            await queue.put(exc)

    async def keep_alive() -> None:
        while True:
            await asyncio.sleep(max(0.0, last_sent + interval - loop.time()))
            if loop.time() - last_sent >= interval and queue.empty():
                queue.put_nowait(PingEvent())

    producer = asyncio.create_task(produce())
    pinger = asyncio.create_task(keep_alive())
    try:
        while (item := await queue.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
            last_sent = loop.time()
            if item.type == "message_start":
                yield PingEvent()
    finally:
        pinger.cancel()
        producer.cancel()


async def frames(events: AsyncIterator[StreamEvent], request_id: str | None) -> AsyncIterator[bytes]:
    try:
        async for event in events:
            yield encode(event)
    except ApiError as error:
        yield encode_error(error, request_id)
    except Exception:
        logger.exception("stream failed after the response started")
        yield encode_error(InternalServerError("Internal server error"), request_id)
