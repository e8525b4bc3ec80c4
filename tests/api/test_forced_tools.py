"""Tool calls that `max_tokens` cuts short never leak markup (issue 10), streaming or not.

The API answers a budget too small for a call with what fitted and `stop_reason: max_tokens`, never
raw tags: nothing until the call is named, then an incomplete `tool_use` block whose input is the
partial JSON parsed as far as it goes (`{}` before any whole value). Text before a call stays text.
The fake engine replays the markup the grammar would force, one piece per token.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from pydantic import TypeAdapter

from sijo.engines.fake import FakeEngine
from sijo.output.accumulate import Accumulator
from sijo.prompt import markup
from sijo.protocol.events import PingEvent, StreamEvent

WEATHER = {
    "name": "get_weather",
    "input_schema": {"type": "object", "properties": {"location": {"type": "string"}}},
}
CALCULATE = {
    "name": "calculate",
    "input_schema": {"type": "object", "properties": {"expression": {"type": "string"}}},
}
BODY: dict[str, Any] = {
    "model": "claude-sonnet-4-6",
    "messages": [{"role": "user", "content": "What's the weather like in Seoul?"}],
    "tools": [WEATHER, CALCULATE],
    "tool_choice": {"type": "any"},
}
# A forced call as a tokenizer might split it: the name is whole after 12 tokens.
WEATHER_CALL = [
    *("<", "tool", "_", "call", ">\n", '{"', "name", '":', ' "', "get", "_weather", '",', ' "'),
    *("arguments", '":', ' {"', "location", '":', ' "', "Se", "oul", '"}}', "\n", "</", "tool", "_call", ">"),
]
NAMED = 12
CALCULATE_CALL = [
    *("<", "tool_call", ">\n", '{"name": "', "calculate", '"', ', "arguments": ', '{"expression": '),
    *('"2', "+2", '"}', "}\n", "</", "tool_call>"),
]
LEAD = ["Let", " me", " check", ".", "\n"]
EVENTS: TypeAdapter[StreamEvent] = TypeAdapter(StreamEvent)


async def _reply(
    client: httpx.AsyncClient, engine: FakeEngine, pieces: list[str], body: dict[str, Any]
) -> dict[str, Any]:
    """The same reply asked for twice, streamed and not: they agree, and the stream is well formed."""
    engine.enqueue(pieces)
    engine.enqueue(pieces)
    response = await client.post("/v1/messages", json=body)
    streamed = await client.post("/v1/messages", json={**body, "stream": True})
    assert response.status_code == streamed.status_code == 200, response.text
    created = response.json()
    accumulator = Accumulator()
    for frame in streamed.text.strip().split("\n\n"):
        data = json.loads(frame.split("\n")[1].removeprefix("data: "))
        event = EVENTS.validate_python(data)
        if not isinstance(event, PingEvent):
            accumulator.apply(event)
        if data["type"] == "content_block_start" and data["content_block"]["type"] == "tool_use":
            assert data["content_block"]["input"] == {}  # the API's shape: input arrives as deltas
        if data["type"] == "content_block_delta" and data["delta"]["type"] == "input_json_delta":
            assert not set(data["delta"]["partial_json"]) & set("<\n")  # compact JSON, no tags
    assert accumulator.message is not None
    folded = accumulator.message.model_dump(mode="json")
    assert _without_ids(folded) == _without_ids(created)
    for block in created["content"]:
        if block["type"] == "text":
            assert "<" not in block["text"]
        else:
            assert block["type"] == "tool_use" and block["name"] in {"get_weather", "calculate"}
            assert isinstance(block["input"], dict)
    return created


def _without_ids(message: dict[str, Any]) -> dict[str, Any]:
    content = [
        {**block, "id": None} if block["type"] == "tool_use" else block for block in message["content"]
    ]
    return {**message, "id": None, "content": content}


def test_the_replayed_calls_are_the_markup_the_grammar_forces() -> None:
    assert "".join(WEATHER_CALL) == markup.call_text("get_weather", {"location": "Seoul"})
    assert "".join(CALCULATE_CALL) == markup.call_text("calculate", {"expression": "2+2"})


@pytest.mark.parametrize("choice", [{"type": "any"}, {"type": "tool", "name": "get_weather"}])
@pytest.mark.parametrize("max_tokens", range(1, 7))
async def test_a_budget_too_small_to_name_the_call_gives_an_empty_reply(
    client: httpx.AsyncClient, engine: FakeEngine, max_tokens: int, choice: dict[str, Any]
) -> None:
    body = {**BODY, "max_tokens": max_tokens, "tool_choice": choice}
    message = await _reply(client, engine, WEATHER_CALL, body)
    assert message["content"] == [] and message["stop_reason"] == "max_tokens"
    assert message["usage"]["output_tokens"] == max_tokens


async def test_a_forced_call_cut_anywhere_is_an_incomplete_tool_use_block_or_nothing(
    client: httpx.AsyncClient, engine: FakeEngine
) -> None:
    for max_tokens in range(1, len(WEATHER_CALL)):
        message = await _reply(client, engine, WEATHER_CALL, {**BODY, "max_tokens": max_tokens})
        assert message["stop_reason"] == "max_tokens", max_tokens
        if max_tokens < NAMED:
            assert message["content"] == [], max_tokens
            continue
        (call,) = message["content"]
        assert call["name"] == "get_weather", max_tokens
        assert call["input"] == ({"location": "Seoul"} if max_tokens >= WEATHER_CALL.index("oul") + 2 else {})


async def test_text_before_a_call_cut_short_stays_text(client: httpx.AsyncClient, engine: FakeEngine) -> None:
    pieces = LEAD + WEATHER_CALL
    body = {**BODY, "tool_choice": {"type": "auto"}}
    for max_tokens in range(len(LEAD) - 1, len(pieces)):
        message = await _reply(client, engine, pieces, {**body, "max_tokens": max_tokens})
        assert message["stop_reason"] == "max_tokens"
        text, *calls = message["content"]
        assert text["type"] == "text" and text["text"].strip() == "Let me check.", max_tokens
        assert [call["name"] for call in calls] == (
            ["get_weather"] if max_tokens >= len(LEAD) + NAMED else []
        )


async def test_parallel_calls_cut_in_the_second_keep_the_first_whole(
    client: httpx.AsyncClient, engine: FakeEngine
) -> None:
    pieces = [*WEATHER_CALL, markup.CALL_SEPARATOR, *CALCULATE_CALL]
    for max_tokens in range(len(WEATHER_CALL), len(pieces)):
        message = await _reply(client, engine, pieces, {**BODY, "max_tokens": max_tokens})
        assert message["stop_reason"] == "max_tokens"
        first, *second = message["content"]
        assert (first["name"], first["input"]) == ("get_weather", {"location": "Seoul"}), max_tokens
        named = max_tokens >= len(WEATHER_CALL) + 1 + CALCULATE_CALL.index("calculate") + 2  # and `"`
        assert [call["name"] for call in second] == (["calculate"] if named else []), max_tokens
