"""The official `openai` Python SDK against a real `sijo serve`, as the Claude API's OpenAI SDK
compatibility layer is used: `OpenAI(base_url=".../v1/", api_key=...)`.

Assertions are about structure and invariants, never about what a 135M model says.
"""

from __future__ import annotations

import json
from typing import Literal

import jsonschema
import openai
import pytest
from pydantic import BaseModel

from tests.conftest import Server

MODEL = "claude-sonnet-4-6"
HELLO = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Who are you?"},
]
FORECAST = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "enum": ["Seoul", "Busan", "Jeju"]},
        "celsius": {"type": "boolean"},
    },
    "required": ["city", "celsius"],
    "additionalProperties": False,
}
WEATHER_TOOL = {
    "type": "function",
    "function": {"name": "get_weather", "description": "Current weather in a city.", "parameters": FORECAST},
}


class Verdict(BaseModel):
    city: Literal["Seoul", "Busan", "Jeju"]
    sunny: bool


@pytest.fixture
def client(server: Server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.base_url}/v1/", api_key=server.api_key, max_retries=0)


def test_a_chat_completion(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(model=MODEL, max_tokens=8, messages=HELLO)  # type: ignore[arg-type]
    assert raw.headers["request-id"].startswith("req_")
    completion = raw.parse()
    assert completion.object == "chat.completion" and completion.model == MODEL
    [choice] = completion.choices
    assert choice.finish_reason in {"stop", "length"} and choice.message.role == "assistant"
    assert isinstance(choice.message.content, str) and not choice.message.tool_calls
    usage = completion.usage
    assert usage is not None and 1 <= usage.completion_tokens <= 8 and usage.prompt_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_streaming_with_include_usage(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model=MODEL,
            max_completion_tokens=16,
            messages=[{"role": "user", "content": "Write a long story about a dragon."}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    finishes = [chunk.choices[0].finish_reason for chunk in chunks if chunk.choices]
    assert text and finishes[-1] in {"stop", "length"} and finishes.count(None) == len(finishes) - 1
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert 1 <= last.usage.completion_tokens <= 16 and last.usage.prompt_tokens > 0


def test_the_stream_helper_accumulates_the_final_completion(client: openai.OpenAI) -> None:
    with client.chat.completions.stream(model=MODEL, max_tokens=12, messages=HELLO) as stream:  # type: ignore[arg-type]
        pieces = [event.delta for event in stream if event.type == "content.delta"]
        # get_final_completion() raises on "length" (it expects to parse); the snapshot does not.
        final = stream.current_completion_snapshot
    assert pieces and "".join(pieces) == final.choices[0].message.content
    assert final.choices[0].finish_reason in {"stop", "length"}


@pytest.mark.parametrize("stream", [False, True])
def test_a_forced_tool_call_has_arguments_valid_against_the_schema(
    client: openai.OpenAI, stream: bool
) -> None:
    params = {
        "model": MODEL,
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "What is the weather like in Seoul?"}],
        "tools": [WEATHER_TOOL],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "parallel_tool_calls": False,  # one call: `disable_parallel_tool_use`
    }
    if stream:
        with client.chat.completions.stream(**params) as events:  # type: ignore[arg-type]
            completion = events.get_final_completion()
    else:
        completion = client.chat.completions.create(**params)  # type: ignore[call-overload]
    [choice] = completion.choices
    assert choice.finish_reason == "tool_calls"
    [call] = choice.message.tool_calls or []
    assert call.type == "function" and call.id and call.function.name == "get_weather"
    jsonschema.validate(json.loads(call.function.arguments), FORECAST)


def test_response_format_json_schema(client: openai.OpenAI) -> None:
    messages = [{"role": "user", "content": "Is it sunny in Seoul?"}]
    fmt = {"type": "json_schema", "json_schema": {"name": "forecast", "schema": FORECAST, "strict": True}}
    completion = client.chat.completions.create(
        model=MODEL,
        max_tokens=100,
        messages=messages,  # type: ignore[arg-type]
        response_format=fmt,  # type: ignore[arg-type]
    )
    assert completion.choices[0].finish_reason == "stop"
    jsonschema.validate(json.loads(completion.choices[0].message.content or ""), FORECAST)
    parsed = client.chat.completions.parse(
        model=MODEL,
        max_tokens=100,
        messages=messages,  # type: ignore[arg-type]
        response_format=Verdict,
    )
    assert isinstance(parsed.choices[0].message.parsed, Verdict)


def test_models_list_and_retrieve(client: openai.OpenAI) -> None:
    models = list(client.models.list())
    ids = [model.id for model in models]
    assert MODEL in ids and len(ids) == len(set(ids))
    assert all(
        model.object == "model" and model.owned_by and isinstance(model.created, int) for model in models
    )
    assert client.models.retrieve(MODEL).id == MODEL


def test_errors_raise_the_sdk_exceptions_naming_the_field(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="gpt-nope", max_tokens=4, messages=HELLO)  # type: ignore[arg-type]
    assert missing.value.param == "model" and missing.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model=MODEL, max_tokens=4, messages=HELLO, n=2)  # type: ignore[arg-type]
    assert bad.value.param == "n" and "n:" in bad.value.message
