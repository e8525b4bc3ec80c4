"""In-process API tests over the fake engine: wire shape, streaming, errors."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from sijo.config import Settings
from sijo.engines.fake import FakeEngine
from sijo.output.accumulate import Accumulator
from sijo.protocol.events import (
    ContentBlockDeltaEvent,
    ContentBlockStartEvent,
    ContentBlockStopEvent,
    MessageDeltaEvent,
    MessageStartEvent,
    MessageStopEvent,
    StreamEvent,
)

GOLDEN = Path(__file__).parent / "golden"
BODY: dict[str, Any] = {
    "model": "claude-sonnet-4-6",
    "max_tokens": 50,
    "messages": [{"role": "user", "content": "hi"}],
}
EVENT_TYPES: dict[str, type[StreamEvent]] = {
    "message_start": MessageStartEvent,
    "content_block_start": ContentBlockStartEvent,
    "content_block_delta": ContentBlockDeltaEvent,
    "content_block_stop": ContentBlockStopEvent,
    "message_delta": MessageDeltaEvent,
    "message_stop": MessageStopEvent,
}


def parse_sse(text: str) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for frame in text.strip().split("\n\n"):
        name_line, data_line = frame.split("\n")
        name, data = name_line.removeprefix("event: "), json.loads(data_line.removeprefix("data: "))
        assert data["type"] == name
        events.append((name, data))
    return events


def normalise(text: str) -> str:
    return re.sub(r"msg_[0-9A-Za-z]{24}", "msg_ID", text)


async def test_stream_matches_the_golden_file(client: httpx.AsyncClient, engine: FakeEngine) -> None:
    engine.enqueue(["안녕", "하세요", " 🙂"])
    response = await client.post("/v1/messages", json={**BODY, "stream": True})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["request-id"].startswith("req_")
    assert normalise(response.text) == (GOLDEN / "korean_stream.sse").read_text(encoding="utf-8")


async def test_non_streaming_message_is_the_fold_of_the_stream(
    client: httpx.AsyncClient, engine: FakeEngine
) -> None:
    engine.enqueue(["Hello", " there"])
    engine.enqueue(["Hello", " there"])
    streamed = await client.post("/v1/messages", json={**BODY, "stream": True})
    accumulator = Accumulator()
    for name, data in parse_sse(streamed.text):
        if name in EVENT_TYPES:
            accumulator.apply(EVENT_TYPES[name].model_validate(data))
    message = accumulator.message
    created = (await client.post("/v1/messages", json=BODY)).json()
    assert message is not None
    folded = message.model_dump(mode="json")
    assert {**folded, "id": None} == {**created, "id": None}
    assert created["content"] == [{"type": "text", "text": "Hello there"}]  # no `citations` key
    assert created["usage"]["output_tokens"] == 3  # two pieces and the end-of-turn token


async def test_every_usage_key_is_present(client: httpx.AsyncClient) -> None:
    usage = (await client.post("/v1/messages", json=BODY)).json()["usage"]
    assert set(usage) == {
        "input_tokens",
        "cache_creation_input_tokens",
        "cache_read_input_tokens",
        "cache_creation",
        "output_tokens",
        "output_tokens_details",
        "server_tool_use",
        "service_tier",
        "inference_geo",
    }
    assert usage["cache_creation"] == {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0}


async def test_sampling_parameters_reach_the_engine(client: httpx.AsyncClient, engine: FakeEngine) -> None:
    body = {**BODY, "temperature": 0.2, "top_p": 0.9, "top_k": 40, "metadata": {"user_id": "u1"}}
    assert (await client.post("/v1/messages?beta=true", json=body)).status_code == 200
    sampling = engine.requests[-1].sampling
    assert (sampling.temperature, sampling.top_p, sampling.top_k) == (0.2, 0.9, 40)


async def test_max_tokens_and_stop_sequence_stop_reasons(
    client: httpx.AsyncClient, engine: FakeEngine
) -> None:
    engine.enqueue(["a", "b", "c"])
    capped = (await client.post("/v1/messages", json={**BODY, "max_tokens": 2})).json()
    assert capped["stop_reason"] == "max_tokens" and capped["usage"]["output_tokens"] == 2
    engine.enqueue(["one ", "two ", "STOP", " three"])
    stopped = (await client.post("/v1/messages", json={**BODY, "stop_sequences": ["STOP"]})).json()
    assert stopped["stop_reason"] == "stop_sequence" and stopped["stop_sequence"] == "STOP"
    assert stopped["content"][0]["text"] == "one two "


async def test_context_window_exceeded_when_input_fits_but_output_does_not(settings: Settings) -> None:
    from sijo.app import create_app
    from tests.conftest import HEADERS

    small = FakeEngine(context_window=60)
    small.enqueue(["x"] * 100)
    app = create_app(settings, engines={"default": small})
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost", headers=HEADERS) as c:
            body = {**BODY, "max_tokens": 60, "system": None}
            message = (await c.post("/v1/messages", json=body)).json()
    assert message["stop_reason"] == "model_context_window_exceeded"
    assert message["usage"]["input_tokens"] + message["usage"]["output_tokens"] == 60


@pytest.mark.parametrize(
    ("content", "status", "error_type", "message"),
    [
        (b"{not json", 400, "invalid_request_error", "request body: Invalid JSON"),
        (b"[]", 400, "invalid_request_error", "request body: Input should be an object"),
        (
            b'{"model": "claude-sonnet-4-6", "messages": []}',
            400,
            "invalid_request_error",
            "max_tokens: Field required",
        ),
    ],
)
async def test_malformed_bodies(
    client: httpx.AsyncClient, content: bytes, status: int, error_type: str, message: str
) -> None:
    response = await client.post(
        "/v1/messages", content=content, headers={"content-type": "application/json"}
    )
    assert response.status_code == status
    body = response.json()
    assert body["type"] == "error" and body["error"]["type"] == error_type
    assert body["error"]["message"].startswith(message)
    assert body["request_id"] == response.headers["request-id"]


WEATHER = {
    "name": "get_weather",
    "description": "Current weather",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
AGE_SCHEMA = {"type": "object", "properties": {"age": {"type": "integer", "minimum": 0}}}
RECURSIVE = {
    "type": "object",
    "$defs": {"node": {"type": "object", "properties": {"child": {"$ref": "#/$defs/node"}}}},
    "properties": {"child": {"$ref": "#/$defs/node"}},
}
CALL = {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}]}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages.0.role: Input should be"),
        ({"messages": [{"role": "user", "content": [{"type": "nope"}]}]}, "messages.0.content.0: Input tag"),
        ({"max_tokens": "ten"}, "max_tokens: Input should be a valid integer"),
        ({"max_tokens": "10"}, "max_tokens: Input should be a valid integer"),
        ({"stream": "yes"}, "stream: Input should be a valid boolean"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages.0.content: Input should be a valid"),
        ({"system": [{"type": "text", "text": ""}]}, "system.0.text: text content blocks must be non-empty"),
        ({"stream": True, "max_tokens": 0}, "max_tokens: 0 is not allowed when stream is true"),
        (
            {"thinking": {"type": "enabled", "budget_tokens": 2000}},
            "max_tokens: `max_tokens` must be greater than `thinking.budget_tokens`",
        ),
        (
            {"max_tokens": 5000, "thinking": {"type": "enabled", "budget_tokens": 1000}},
            "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024",
        ),
        (
            {"thinking": {"type": "adaptive"}, "tools": [WEATHER], "tool_choice": {"type": "any"}},
            "tool_choice: Thinking may not be enabled when tool_choice forces tool use.",
        ),
        (
            {"thinking": {"type": "adaptive"}, "temperature": 0.5},
            "temperature: `temperature` may only be set to 1",
        ),
        (
            {"thinking": {"type": "adaptive"}, "messages": [*BODY["messages"], {"role": "assistant", "content": "Hi"}]},
            "messages: a final assistant message (prefill) cannot be used when thinking is enabled",
        ),
        ({"thinking": {"type": "sometimes"}}, "thinking: Input tag 'sometimes'"),
        ({"tools": [{**WEATHER, "name": "get weather"}]}, "tools.0.name: String should match pattern"),
        (
            {"tools": [{**WEATHER, "input_schema": {"type": "string"}}]},
            "tools.0.input_schema.type: Input should be 'object'",
        ),
        (
            {"tools": [{"type": "memory_20250818", "name": "memory"}]},
            "tools.0.type: 'memory_20250818' tools are not supported by Sijo yet",
        ),
        ({"tools": [WEATHER, WEATHER]}, "tools: Tool names must be unique."),
        (
            {"tools": [WEATHER], "tool_choice": {"type": "tool", "name": "nope"}},
            "tool_choice.name: no tool named 'nope' in tools",
        ),
        ({"tool_choice": {"type": "any"}}, "tool_choice: tool_choice may only be specified while providing tools"),
        ({"tool_choice": {"type": "sometimes"}}, "tool_choice: Input tag 'sometimes'"),
        (
            {"output_config": {"format": {"type": "json_schema", "schema": AGE_SCHEMA}}},
            "output_config.format.schema.properties.age: 'minimum' is not supported",
        ),
        (
            {"output_format": {"type": "json_schema", "schema": AGE_SCHEMA}},
            "output_format.schema.properties.age: 'minimum' is not supported",
        ),
        (
            {"output_config": {"format": {"type": "json_schema", "schema": RECURSIVE}}},
            "output_config.format.schema.$defs.node.properties.child.$ref: recursive schemas are not supported",
        ),
        (
            {"tools": [{**WEATHER, "strict": True, "input_schema": {"type": "object", "properties": {
                "x": {"$ref": "https://example.com/s.json"}}}}]},
            "tools.0.input_schema.properties.x.$ref: only local references",
        ),
        (
            {"tools": [{**WEATHER, "strict": True, "input_schema": {"type": "object", "properties": {
                "x": {"type": "string", "maxLength": 5}}}}]},
            "tools.0.input_schema.properties.x: 'maxLength' is not supported",
        ),
        (
            {"output_config": {"format": {"type": "json_schema", "schema": {"type": "object", "additionalProperties": True}}}},
            "output_config.format.schema.additionalProperties: additionalProperties must be false",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_x"}]}]},
            "messages.0.content.0: unexpected `tool_use_id` found in `tool_result` blocks: toolu_x.",
        ),
        (
            {"messages": [*BODY["messages"], CALL, {"role": "user", "content": "and?"}]},
            "messages.1: `tool_use` ids were found without `tool_result` blocks immediately after: toolu_1.",
        ),
        (
            {"messages": [*BODY["messages"], CALL, {"role": "user", "content": [
                {"type": "text", "text": "here"}, {"type": "tool_result", "tool_use_id": "toolu_1"}]}]},
            "messages.2.content.1: `tool_result` blocks must come first",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "tool_use", "id": "t", "name": "x", "input": {}}]}]},
            "messages.0.content.0: `tool_use` blocks can only be in `assistant` messages",
        ),
        ({"speed": "fast"}, "speed: fast mode is not supported"),
        ({"cache_control": {"type": "persistent"}}, "cache_control.type: Input should be 'ephemeral'"),
        ({"cache_control": {"type": "ephemeral", "ttl": "2h"}}, "cache_control.ttl: Input should be"),
        ({"unknown_field": 1}, "unknown_field: Extra inputs are not permitted"),
    ],
)
async def test_invalid_requests_name_the_field(
    client: httpx.AsyncClient, change: dict[str, Any], message: str
) -> None:
    response = await client.post("/v1/messages", json={**BODY, **change})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["message"].startswith(message)


async def test_neutral_values_of_unsupported_fields_are_accepted(client: httpx.AsyncClient) -> None:
    body = {
        **BODY,
        "tools": [],
        "tool_choice": {"type": "auto"},
        "thinking": {"type": "disabled"},
        "service_tier": "auto",
    }
    assert (await client.post("/v1/messages", json=body)).status_code == 200


async def test_oversized_body_is_413(engine: FakeEngine) -> None:
    from sijo.app import create_app
    from tests.conftest import HEADERS

    app = create_app(Settings(max_request_bytes=1000), engines={"default": engine})
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost", headers=HEADERS) as c:
            huge = {**BODY, "messages": [{"role": "user", "content": "x" * 2000}]}
            response = await c.post("/v1/messages", json=huge)
    assert response.status_code == 413
    assert response.json()["error"]["type"] == "request_too_large"


async def test_unknown_route_and_method(client: httpx.AsyncClient) -> None:
    missing = await client.get("/v1/nowhere")
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "not_found_error"
    wrong_method = await client.get("/v1/messages")
    assert wrong_method.status_code == 405 and wrong_method.json()["type"] == "error"


async def test_count_tokens_equals_message_input_tokens(client: httpx.AsyncClient) -> None:
    body = {"model": "claude-opus-4-7", "system": "be kind", "messages": BODY["messages"]}
    counted = (await client.post("/v1/messages/count_tokens", json=body)).json()
    created = (await client.post("/v1/messages", json={**body, "max_tokens": 1})).json()
    assert counted == {"input_tokens": created["usage"]["input_tokens"]}


async def test_count_tokens_counts_a_prompt_longer_than_the_window(client: httpx.AsyncClient) -> None:
    long = {"model": "claude-sonnet-4-6", "messages": [{"role": "user", "content": "x" * 5000}]}
    counted = await client.post("/v1/messages/count_tokens", json=long)
    assert counted.status_code == 200
    assert counted.json()["input_tokens"] > 4096  # the fake engine's window
    refused = await client.post("/v1/messages", json={**long, "max_tokens": 5})
    assert refused.status_code == 400
    assert refused.json()["error"]["message"].startswith("prompt is too long:")


async def test_count_tokens_rejects_max_tokens(client: httpx.AsyncClient) -> None:
    body = {"model": "claude-opus-4-7", "max_tokens": 5, "messages": BODY["messages"]}
    response = await client.post("/v1/messages/count_tokens", json=body)
    assert response.status_code == 400 and "max_tokens" in response.json()["error"]["message"]
