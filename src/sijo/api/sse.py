"""Server-sent events framing: `event: <type>` + `data: <json>`, keep-alive pings, and a final
`error` event when something fails after the headers went out (reference §3).

A reply's stream is mostly deltas, one per token or so: those of text, thinking and tool input are
written straight to their frames (`orjson` for the string, the rest fixed bytes), byte for byte
what serialising the event would give, and the events ready at once go out as one chunk (`batches`),
one write to the connection rather than one per event.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator

import orjson

from sijo.errors import ApiError, InternalServerError
from sijo.protocol.events import (
    ContentBlockDeltaEvent,
    InputJsonDelta,
    PingEvent,
    StreamEvent,
    TextDelta,
    ThinkingDelta,
)

logger = logging.getLogger("sijo.api")

_DELTA_FRAME = (
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":%d,'
    b'"delta":{"type":"%s","%s":%s}}\n\n'
)


def encode(event: StreamEvent) -> bytes:
    if isinstance(event, ContentBlockDeltaEvent):
        delta = event.delta
        if isinstance(delta, TextDelta):
            return _DELTA_FRAME % (event.index, b"text_delta", b"text", orjson.dumps(delta.text))
        if isinstance(delta, InputJsonDelta):
            partial = orjson.dumps(delta.partial_json)
            return _DELTA_FRAME % (event.index, b"input_json_delta", b"partial_json", partial)
        if isinstance(delta, ThinkingDelta):
            return _DELTA_FRAME % (event.index, b"thinking_delta", b"thinking", orjson.dumps(delta.thinking))
    return f"event: {event.type}\ndata: {event.model_dump_json()}\n\n".encode()


def encode_error(error: ApiError, request_id: str | None) -> bytes:
    body = json.dumps(error.body(request_id), ensure_ascii=False)
    return f"event: error\ndata: {body}\n\n".encode()


async def batches(events: AsyncIterator[StreamEvent], interval: float) -> AsyncIterator[list[StreamEvent]]:
    """The events, with a `ping` after `message_start` and after `interval` of silence, in batches:
    each batch is what was ready when the last one had gone (at least one event), so a client that
    keeps up gets the events one by one, and one that falls behind gets them a batch at a time.

    One producer task pulls the events into a small queue (so a slow client slows generation down
    rather than piling events up); the hot path costs a queue hand-off, not a task per event. A
    failure is raised after the events that came before it.
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
        ended = False
        while not ended:
            batch: list[StreamEvent] = []
            item = await queue.get()
            while True:
                if item is None or isinstance(item, BaseException):
                    ended = True
                    break
                batch.append(item)
                if item.type == "message_start":
                    batch.append(PingEvent())
                if queue.empty():
                    break
                item = queue.get_nowait()
            if batch:
                yield batch
                last_sent = loop.time()
            if isinstance(item, BaseException):
                raise item
    finally:
        pinger.cancel()
        producer.cancel()


async def frames(batched: AsyncIterator[list[StreamEvent]], request_id: str | None) -> AsyncIterator[bytes]:
    """A batch's frames as one chunk; after a failure, the frames before it and an `error` event."""
    done: list[bytes] = []
    try:
        async for batch in batched:
            for event in batch:
                done.append(encode(event))
            yield b"".join(done)
            done.clear()
    except ApiError as error:
        yield b"".join([*done, encode_error(error, request_id)])
    except Exception:
        logger.exception("stream failed after the response started")
        yield b"".join([*done, encode_error(InternalServerError("Internal server error"), request_id)])
