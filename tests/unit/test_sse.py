"""SSE framing: the hot deltas written straight to bytes are byte for byte what serialising their
events gives (Messages and OpenAI chunks), and events ready at once go out as one batch."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from hypothesis import given
from hypothesis import strategies as st

from sijo.api import sse
from sijo.errors import OverloadedError
from sijo.openai_compat.reply import ChunkWriter
from sijo.protocol.events import (
    ContentBlockDeltaEvent,
    ContentBlockStartEvent,
    ContentBlockStopEvent,
    InputJsonDelta,
    MessageDeltaEvent,
    MessageStartEvent,
    StreamEvent,
    TextDelta,
    ThinkingDelta,
)
from sijo.protocol.message import TextBlock, ThinkingBlock, ToolUseBlock, Usage

# Every kind of character JSON treats apart: controls, quotes, backslashes, non-ASCII, astral.
TEXT = st.text(
    alphabet=st.one_of(
        st.characters(codec="utf-8"), st.sampled_from('"\\/\x00\x1f\x7f\u2028\u2029\n\r\t\b\f')
    )
)


def serialised(event: StreamEvent) -> bytes:
    return f"event: {event.type}\ndata: {event.model_dump_json()}\n\n".encode()


@given(text=TEXT, index=st.integers(min_value=0, max_value=10**6))
def test_hot_deltas_are_framed_as_their_events_serialise(text: str, index: int) -> None:
    for delta in (TextDelta(text=text), InputJsonDelta(partial_json=text), ThinkingDelta(thinking=text)):
        event = ContentBlockDeltaEvent(index=index, delta=delta)
        assert sse.encode(event) == serialised(event)


def start(message_id: str = "msg_1", model: str = "fake") -> MessageStartEvent:
    usage = Usage(input_tokens=3, output_tokens=1)
    return MessageStartEvent.model_validate(
        {
            "message": {
                "id": message_id,
                "model": model,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": usage.model_dump(),
            }
        }
    )


def reply(pieces: list[str]) -> list[StreamEvent]:
    """Text, thinking and two tool calls, each in `pieces`."""
    events: list[StreamEvent] = [start(), ContentBlockStartEvent(index=0, content_block=TextBlock(text=""))]
    events += [ContentBlockDeltaEvent(index=0, delta=TextDelta(text=p)) for p in pieces]
    events.append(ContentBlockStopEvent(index=0))
    block = ThinkingBlock(thinking="", signature="")
    events.append(ContentBlockStartEvent(index=1, content_block=block))
    events += [ContentBlockDeltaEvent(index=1, delta=ThinkingDelta(thinking=p)) for p in pieces]
    events.append(ContentBlockStopEvent(index=1))
    for index in (2, 3):
        tool = ToolUseBlock(id=f"toolu_{index}", name="get_weather", input={})
        events.append(ContentBlockStartEvent(index=index, content_block=tool))
        events += [ContentBlockDeltaEvent(index=index, delta=InputJsonDelta(partial_json=p)) for p in pieces]
        events.append(ContentBlockStopEvent(index=index))
    delta = MessageDeltaEvent.model_validate(
        {
            "delta": {"stop_reason": "tool_use", "stop_sequence": None},
            "usage": {
                "input_tokens": 3,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
                "output_tokens": 9,
            },
        }
    )
    return [*events, delta]


@given(pieces=st.lists(TEXT, max_size=4), message_id=TEXT, model=TEXT, legacy=st.booleans())
def test_openai_frames_are_the_chunks_serialised(
    pieces: list[str], message_id: str, model: str, legacy: bool
) -> None:
    events = reply(pieces)
    events[0] = start(message_id, model)
    framed, fed = (ChunkWriter(1_700_000_000, include_usage=True, legacy_functions=legacy) for _ in "ab")
    for event in events:
        chunks = fed.feed(event)
        expected = b"".join(f"data: {c.model_dump_json(exclude_none=True)}\n\n".encode() for c in chunks)
        assert framed.frames(event) == expected


async def queued(events: list[StreamEvent | Exception]) -> AsyncIterator[StreamEvent]:
    for event in events:
        if isinstance(event, Exception):
            raise event
        yield event
        if isinstance(event, ContentBlockStopEvent):
            await asyncio.sleep(0.01)  # the consumer catches up here


async def collect(batches: AsyncIterator[list[StreamEvent]]) -> list[list[str]]:
    return [[event.type for event in batch] async for batch in batches]


async def test_events_ready_at_once_go_as_one_batch() -> None:
    events = reply(["a", "b"])
    got = await collect(sse.batches(queued(events[:5]), interval=60))
    assert got[0][:2] == ["message_start", "ping"]  # a ping right after message_start, as before
    assert [t for batch in got for t in batch] == ["message_start", "ping"] + [e.type for e in events[1:5]]
    assert len(got) < 5  # not one per event: the producer ran ahead of the consumer


async def test_a_failure_comes_after_the_events_before_it() -> None:
    events: list[StreamEvent | Exception] = [*reply(["a", "b"])[:4], OverloadedError("Overloaded")]
    body = b"".join([chunk async for chunk in sse.frames(sse.batches(queued(events), 60), "req_1")])
    frames = body.decode().split("\n\n")[:-1]
    assert [f.split("\n")[0] for f in frames] == [
        "event: message_start",
        "event: ping",
        "event: content_block_start",
        "event: content_block_delta",
        "event: content_block_delta",
        "event: error",
    ]
    assert '"type":"overloaded_error"' in frames[-1].replace(" ", "")
