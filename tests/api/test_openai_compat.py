"""The OpenAI SDK compatibility layer, in process over the fake engine.

Each translation is checked against the pipeline itself: an OpenAI request must reach the engine
exactly as its Anthropic equivalent does (same prompt, same grammar, same sampling), and come back
in OpenAI's shapes, streamed or not. Errors are OpenAI-shaped and name the client's own field.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sijo.app import create_app
from sijo.config import Settings
from sijo.engines.base import GenerationChunk, GenerationRequest
from sijo.engines.fake import FakeEngine
from sijo.errors import OverloadedError
from sijo.protocol.openai import ChatCompletion, ChatCompletionChunk, OpenAIErrorResponse, OpenAIModelList
from tests.conftest import HEADERS

MODEL = "claude-sonnet-4-6"
WEATHER_FUNCTION = {
    "name": "get_weather",
    "description": "Current weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {"location": {"type": "string"}},
        "required": ["location"],
    },
}
CALCULATE_FUNCTION = {
    "name": "calculate",
    "parameters": {"type": "object", "properties": {"expression": {"type": "string"}}},
}
TOOLS = [
    {"type": "function", "function": WEATHER_FUNCTION},
    {"type": "function", "function": CALCULATE_FUNCTION},
]
ANTHROPIC_TOOLS = [
    {
        "name": "get_weather",
        "description": "Current weather in a city.",
        "input_schema": WEATHER_FUNCTION["parameters"],
    },
    {"name": "calculate", "input_schema": CALCULATE_FUNCTION["parameters"]},
]
# A forced call as the grammar makes the model write it, one piece per token.
WEATHER_CALL = [
    "<tool_call>\n",
    '{"name": "get_weather", ',
    '"arguments": ',
    '{"location": ',
    '"Seoul"}}',
    "\n</tool_call>",
]
PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
    "additionalProperties": False,
}


@pytest.fixture
async def openai(engine: FakeEngine, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """A client as the OpenAI SDK is one: a Bearer key and no `anthropic-version`."""
    async with _client(engine, settings, {"authorization": "Bearer sk-anything"}) as client:
        yield client


class _client:
    def __init__(self, engine: FakeEngine, settings: Settings, headers: dict[str, str]) -> None:
        self.app = create_app(settings, engines={"default": engine})
        self.headers = headers

    async def __aenter__(self) -> httpx.AsyncClient:
        self.lifespan = self.app.router.lifespan_context(self.app)
        await self.lifespan.__aenter__()
        transport = httpx.ASGITransport(app=self.app)
        self.client = httpx.AsyncClient(
            transport=transport, base_url="http://sijo.localhost", headers=self.headers
        )
        return self.client

    async def __aexit__(self, *exc: object) -> None:
        await self.client.aclose()
        await self.lifespan.__aexit__(None, None, None)


def _prompt(engine: FakeEngine, index: int = -1) -> str:
    """What the engine was asked to continue (the fake's tokens are characters)."""
    return "".join(chr(token) for token in engine.requests[index].tokens)


async def _anthropic_twin(openai: httpx.AsyncClient, engine: FakeEngine, body: dict[str, Any]) -> str:
    """The prompt the engine gets for `body` sent to /v1/messages (same app, Anthropic headers)."""
    engine.enqueue(["ok"])
    response = await openai.post(
        "/v1/messages", json={"model": MODEL, "max_tokens": 50, **body}, headers=HEADERS
    )
    assert response.status_code == 200, response.text
    return _prompt(engine)


async def _complete(openai: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    response = await openai.post("/v1/chat/completions", json={"model": MODEL, **body})
    assert response.status_code == 200, response.text
    assert response.headers["request-id"].startswith("req_")
    assert response.headers["x-request-id"] == response.headers["request-id"]  # the OpenAI SDK's name
    data: dict[str, Any] = response.json()
    ChatCompletion.model_validate(data)  # the documented shape, every key
    return data


async def _chunks(openai: httpx.AsyncClient, body: dict[str, Any]) -> list[dict[str, Any]]:
    response = await openai.post("/v1/chat/completions", json={"model": MODEL, "stream": True, **body})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    frames = [frame for frame in response.text.split("\n\n") if frame.strip()]
    assert frames[-1] == "data: [DONE]"
    chunks = []
    for frame in frames[:-1]:
        if frame.startswith(":"):
            continue  # a keep-alive comment
        assert frame.startswith("data: ") and "\n" not in frame
        chunk = json.loads(frame.removeprefix("data: "))
        ChatCompletionChunk.model_validate(chunk)
        chunks.append(chunk)
    return chunks


def _error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}, body  # OpenAI's shape, not the Anthropic envelope
    OpenAIErrorResponse.model_validate(body)
    error: dict[str, Any] = body["error"]
    return error


# --- requests reach the engine as their Anthropic equivalents do --------------------------------


async def test_a_completion_has_openai_shape_and_usage(openai: httpx.AsyncClient) -> None:
    data = await _complete(openai, {"messages": [{"role": "user", "content": "hi"}]})
    assert data["object"] == "chat.completion" and data["model"] == MODEL and data["id"].startswith("msg_")
    assert isinstance(data["created"], int)
    [choice] = data["choices"]
    assert choice["index"] == 0 and choice["finish_reason"] == "stop" and choice["logprobs"] is None
    assert choice["message"] == {
        "role": "assistant",
        "content": "Hello from the fake engine.",
        "refusal": None,
        "tool_calls": None,
        "function_call": None,
    }
    usage = data["usage"]
    assert usage["completion_tokens"] == 7  # six pieces and the end-of-turn token
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    counted = await openai.post(
        "/v1/messages/count_tokens",
        json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}]},
        headers=HEADERS,
    )
    assert usage["prompt_tokens"] == counted.json()["input_tokens"]
    assert usage["prompt_tokens_details"] == {"cached_tokens": 0, "cache_write_tokens": 0}
    assert usage["completion_tokens_details"] == {"reasoning_tokens": 0}


async def test_system_and_developer_messages_are_hoisted_and_joined(
    openai: httpx.AsyncClient, engine: FakeEngine
) -> None:
    await _complete(
        openai,
        {
            "messages": [
                {"role": "system", "content": "You are terse."},
                {"role": "user", "content": "hi", "name": "ignored"},
                {"role": "developer", "content": [{"type": "text", "text": "Answer in Korean."}]},
                {"role": "user", "content": [{"type": "text", "text": "again"}]},
            ]
        },
    )
    translated = _prompt(engine)
    twin = await _anthropic_twin(
        openai,
        engine,
        {
            "system": "You are terse.\nAnswer in Korean.",
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "hi"}, {"type": "text", "text": "again"}],
                }
            ],
        },
    )
    assert translated == twin and "You are terse.\nAnswer in Korean." in translated


async def test_sampling_stop_and_max_tokens_map_as_documented(
    openai: httpx.AsyncClient, engine: FakeEngine
) -> None:
    body = {"messages": [{"role": "user", "content": "hi"}], "temperature": 1.7, "top_p": 0.5}
    await _complete(openai, body)
    sampling = engine.requests[-1].sampling
    assert sampling.temperature == 1.0 and sampling.top_p == 0.5  # capped at 1, as the layer does
    engine.enqueue(["one", " two", " STOP", " three"])
    stopped = await _complete(openai, {**body, "stop": ["STOP", "   "]})
    assert stopped["choices"][0]["message"]["content"] == "one two "
    assert stopped["choices"][0]["finish_reason"] == "stop"
    for field in ("max_completion_tokens", "max_tokens"):
        cut = await _complete(openai, {**body, field: 3})
        assert cut["choices"][0]["finish_reason"] == "length" and cut["usage"]["completion_tokens"] == 3
        assert engine.requests[-1].max_tokens == 3
    both = await _complete(openai, {**body, "max_tokens": 5, "max_completion_tokens": 2})
    assert both["usage"]["completion_tokens"] == 2


async def test_fields_the_layer_ignores_are_accepted(
    openai: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="sijo.api")
    ignored = {
        "logprobs": True,
        "top_logprobs": 3,
        "seed": 7,
        "presence_penalty": 0.5,
        "frequency_penalty": 0.5,
        "logit_bias": {"50256": -100},
        "user": "someone",
        "store": True,
        "metadata": {"k": "v"},
        "service_tier": "flex",
        "n": 1,
        "response_format": {"type": "json_object"},
        "verbosity": "low",
        "messages": [
            {
                "role": "user",
                "content": [{"type": "text", "text": "hi"}, {"type": "input_audio", "input_audio": {}}],
            }
        ],
    }
    data = await _complete(openai, ignored)
    assert data["choices"][0]["message"]["content"] == "Hello from the fake engine."
    logged = " ".join(record.getMessage() for record in caplog.records)
    for name in ("seed", "logprobs", "verbosity", "json_object", "input_audio"):
        assert name in logged


# --- streaming ----------------------------------------------------------------------------------


async def test_streamed_chunks_add_up_to_the_completion(openai: httpx.AsyncClient) -> None:
    body = {"messages": [{"role": "user", "content": "hi"}]}
    created = await _complete(openai, body)
    chunks = await _chunks(openai, body)
    assert {chunk["id"] for chunk in chunks} == {chunks[0]["id"]} and chunks[0]["id"].startswith("msg_")
    assert all(chunk["object"] == "chat.completion.chunk" and chunk["model"] == MODEL for chunk in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    text = "".join(chunk["choices"][0]["delta"].get("content", "") for chunk in chunks)
    assert text == created["choices"][0]["message"]["content"]
    assert [c["choices"][0].get("finish_reason") for c in chunks].count("stop") == 1
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop" and chunks[-1]["choices"][0]["delta"] == {}
    assert all("usage" not in chunk for chunk in chunks)


async def test_include_usage_adds_a_last_chunk_with_the_usage(openai: httpx.AsyncClient) -> None:
    body = {"messages": [{"role": "user", "content": "hi"}]}
    created = await _complete(openai, body)
    chunks = await _chunks(openai, {**body, "stream_options": {"include_usage": True}})
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == created["usage"]
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"


async def test_a_failure_mid_stream_is_one_error_frame(
    openai: httpx.AsyncClient, engine: FakeEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After the 200 went out, an error is a `data: {"error": …}` frame (the SDK raises it), never
    a `[DONE]` that would pass a cut reply off as complete."""
    generate = engine.generate

    async def failing(request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        async for chunk in generate(request):
            yield chunk
            raise OverloadedError("Overloaded")

    monkeypatch.setattr(engine, "generate", failing)
    response = await openai.post(
        "/v1/chat/completions",
        json={"model": MODEL, "stream": True, "messages": [{"role": "user", "content": "hi"}]},
    )
    assert response.status_code == 200
    frames = [frame for frame in response.text.split("\n\n") if frame.startswith("data: ")]
    assert "[DONE]" not in response.text
    assert json.loads(frames[1].removeprefix("data: "))["choices"][0]["delta"] == {"content": "Hello"}
    error = OpenAIErrorResponse.model_validate_json(frames[-1].removeprefix("data: ")).error
    assert error.type == "overloaded_error" and error.message == "Overloaded"


# --- tools --------------------------------------------------------------------------------------

TOOL_CHOICES = [
    ("required", {"type": "any"}),
    ({"type": "function", "function": {"name": "get_weather"}}, {"type": "tool", "name": "get_weather"}),
    ("auto", {"type": "auto"}),
    ("none", {"type": "none"}),
]


@pytest.mark.parametrize(("choice", "anthropic"), TOOL_CHOICES)
@pytest.mark.parametrize("parallel", [None, False])
async def test_tool_choice_constrains_as_its_anthropic_equivalent(
    openai: httpx.AsyncClient,
    engine: FakeEngine,
    choice: Any,
    anthropic: dict[str, Any],
    parallel: bool | None,
) -> None:
    messages = [{"role": "user", "content": "Weather in Seoul?"}]
    body: dict[str, Any] = {"messages": messages, "tools": TOOLS, "tool_choice": choice}
    if parallel is not None:
        body["parallel_tool_calls"] = parallel
    await _complete(openai, body)
    grammars, prompt = list(engine.grammars), _prompt(engine)
    engine.grammars.clear()
    if parallel is False and anthropic["type"] != "none":
        anthropic = {**anthropic, "disable_parallel_tool_use": True}
    assert prompt == await _anthropic_twin(
        openai, engine, {"messages": messages, "tools": ANTHROPIC_TOOLS, "tool_choice": anthropic}
    )
    assert grammars == engine.grammars  # the same constraint (none: no grammar at all)
    assert bool(grammars) == (anthropic["type"] != "none")


async def test_a_forced_call_comes_back_as_tool_calls(openai: httpx.AsyncClient, engine: FakeEngine) -> None:
    body = {
        "messages": [{"role": "user", "content": "Weather in Seoul?"}],
        "tools": TOOLS,
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
    }
    engine.enqueue(WEATHER_CALL)
    data = await _complete(openai, body)
    [choice] = data["choices"]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
    [call] = choice["message"]["tool_calls"]
    assert call["type"] == "function" and call["id"].startswith("toolu_")
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"location": "Seoul"}
    engine.enqueue(WEATHER_CALL)
    chunks = await _chunks(openai, body)
    deltas = [d for c in chunks for d in c["choices"][0]["delta"].get("tool_calls", [])]
    assert (
        deltas[0]["index"] == 0 and deltas[0]["id"].startswith("toolu_") and deltas[0]["type"] == "function"
    )
    assert deltas[0]["function"] == {"name": "get_weather", "arguments": ""}
    assert all(set(d) == {"index", "function"} and d["index"] == 0 for d in deltas[1:])
    arguments = "".join(d["function"]["arguments"] for d in deltas)
    assert json.loads(arguments) == {"location": "Seoul"}
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


async def test_a_tool_round_trip_renders_as_tool_use_and_tool_result(
    openai: httpx.AsyncClient, engine: FakeEngine
) -> None:
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"location": "Seoul"}'},
    }
    await _complete(
        openai,
        {
            "tools": TOOLS,
            "messages": [
                {"role": "user", "content": "Weather in Seoul and Busan?"},
                {"role": "assistant", "content": None, "tool_calls": [call, {**call, "id": "call_2"}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "Sunny"},
                {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "Rainy"}]},
            ],
        },
    )
    translated = _prompt(engine)
    use = {"type": "tool_use", "name": "get_weather", "input": {"location": "Seoul"}}
    twin = await _anthropic_twin(
        openai,
        engine,
        {
            "tools": ANTHROPIC_TOOLS,
            "messages": [
                {"role": "user", "content": "Weather in Seoul and Busan?"},
                {"role": "assistant", "content": [{**use, "id": "call_1"}, {**use, "id": "call_2"}]},
                {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": "call_1", "content": "Sunny"},
                        {"type": "tool_result", "tool_use_id": "call_2", "content": "Rainy"},
                    ],
                },
            ],
        },
    )
    assert translated == twin and "Sunny" in translated and "Rainy" in translated


async def test_deprecated_functions_answer_with_function_call(
    openai: httpx.AsyncClient, engine: FakeEngine
) -> None:
    engine.enqueue(WEATHER_CALL)
    body = {
        "messages": [{"role": "user", "content": "Weather in Seoul?"}],
        "functions": [WEATHER_FUNCTION],
        "function_call": {"name": "get_weather"},
    }
    data = await _complete(openai, body)
    [choice] = data["choices"]
    assert choice["finish_reason"] == "function_call" and choice["message"]["tool_calls"] is None
    assert choice["message"]["function_call"]["name"] == "get_weather"
    assert json.loads(choice["message"]["function_call"]["arguments"]) == {"location": "Seoul"}
    followup = {
        "functions": [WEATHER_FUNCTION],
        "messages": [
            *body["messages"],
            {"role": "assistant", "content": None, "function_call": choice["message"]["function_call"]},
            {"role": "function", "name": "get_weather", "content": "Sunny"},
        ],
    }
    await _complete(openai, followup)
    assert "Sunny" in _prompt(engine)


# --- structured outputs and thinking -------------------------------------------------------------


async def test_response_format_json_schema_is_a_constrained_answer(
    openai: httpx.AsyncClient, engine: FakeEngine
) -> None:
    messages = [{"role": "user", "content": "Invent a person."}]
    engine.enqueue(['{"name": "Kim", ', '"age": 30}'])
    fmt = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON, "strict": True}}
    data = await _complete(openai, {"messages": messages, "response_format": fmt})
    assert json.loads(data["choices"][0]["message"]["content"]) == {"name": "Kim", "age": 30}
    grammars = list(engine.grammars)
    engine.grammars.clear()
    await _anthropic_twin(
        openai,
        engine,
        {"messages": messages, "output_config": {"format": {"type": "json_schema", "schema": PERSON}}},
    )
    assert grammars and grammars == engine.grammars


@pytest.mark.parametrize(
    "extra",
    [
        {"reasoning_effort": "high"},
        {"thinking": {"type": "enabled", "budget_tokens": 1024}, "max_completion_tokens": 2048},
    ],
)
async def test_thinking_runs_and_is_counted_but_not_returned(
    openai: httpx.AsyncClient, engine: FakeEngine, extra: dict[str, Any]
) -> None:
    engine.enqueue(["Let me think.", "</think>"])
    engine.enqueue(["Done."])
    data = await _complete(
        openai, {"messages": [{"role": "user", "content": "Why is the sky blue?"}], **extra}
    )
    assert len(engine.requests) == 2  # thinking, then the answer
    assert data["choices"][0]["message"]["content"] == "Done."
    # The fake spends a token per piece and one to end each phase: 3 thinking, then 2 answering.
    assert data["usage"]["completion_tokens_details"]["reasoning_tokens"] == 3
    assert data["usage"]["completion_tokens"] == 5


async def test_reasoning_effort_none_thinks_not(openai: httpx.AsyncClient, engine: FakeEngine) -> None:
    await _complete(
        openai,
        {"messages": [{"role": "user", "content": "Why is the sky blue?"}], "reasoning_effort": "none"},
    )
    assert len(engine.requests) == 1


# --- prompt caching -----------------------------------------------------------------------------


async def test_prompts_are_cached_automatically_and_reported(openai: httpx.AsyncClient) -> None:
    body = {"messages": [{"role": "system", "content": "Be kind. " * 200}, {"role": "user", "content": "hi"}]}
    first = (await _complete(openai, body))["usage"]
    second = (await _complete(openai, body))["usage"]
    assert first["prompt_tokens"] == second["prompt_tokens"] > 1024
    assert first["prompt_tokens_details"]["cached_tokens"] == 0
    assert first["prompt_tokens_details"]["cache_write_tokens"] > 1024
    assert (
        second["prompt_tokens_details"]["cached_tokens"]
        == first["prompt_tokens_details"]["cache_write_tokens"]
    )


# --- errors -------------------------------------------------------------------------------------

HI = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    ("body", "param", "words"),
    [
        ({"messages": HI, "n": 2}, "n", "must be 1"),
        ({"model": MODEL}, "messages", "Field required"),
        ({"messages": []}, "messages", "at least 1 item"),
        ({"messages": [{"role": "robot", "content": "hi"}]}, "messages.0", "robot"),
        ({"messages": HI, "temperature": 3}, "temperature", "less than or equal to 2"),
        ({"messages": HI, "max_completion_tokens": "10"}, "max_completion_tokens", "valid integer"),
        ({"messages": HI, "max_completion_tokens": 10**7}, "max_completion_tokens", "maximum allowed"),
        ({"messages": HI, "max_tokens": 10**7}, "max_tokens", "maximum allowed"),
        (
            {
                "messages": HI,
                "tools": TOOLS,
                "tool_choice": {"type": "function", "function": {"name": "nope"}},
            },
            "tool_choice.function.name",
            "nope",
        ),
        (
            {"messages": HI, "tools": [{"type": "function", "function": {"name": "bad name!"}}]},
            "tools.0.function.name",
            "pattern",
        ),
        (
            {
                "messages": HI,
                "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "array"}}}],
            },
            "tools.0.function.parameters.type",
            "object",
        ),
        (
            {"messages": HI, "tools": [{"type": "custom", "custom": {"name": "f"}}]},
            "tools.0.type",
            "not supported",
        ),
        (
            {
                "messages": HI,
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "p", "schema": {**PERSON, "additionalProperties": True}},
                },
            },
            "response_format.json_schema.schema.additionalProperties",
            "additionalProperties must be false",
        ),
        (
            {
                "messages": [
                    *HI,
                    {
                        "role": "assistant",
                        "tool_calls": [
                            {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{oops"}}
                        ],
                    },
                ]
            },
            "messages.1.tool_calls.0.function.arguments",
            "JSON object",
        ),
        (
            {
                "messages": [
                    *HI,
                    {"role": "assistant", "content": "ok"},
                    {"role": "tool", "tool_call_id": "c9", "content": "x"},
                ]
            },
            "messages.2",
            "c9",
        ),
        ({"messages": HI, "reasoning_effort": "high", "temperature": 0.5}, "temperature", "thinking"),
        ({"messages": HI, "reasoning_effort": "extreme"}, "reasoning_effort", "'high'"),
    ],
)
async def test_invalid_requests_get_openai_errors_naming_the_field(
    openai: httpx.AsyncClient, body: dict[str, Any], param: str, words: str
) -> None:
    response = await openai.post("/v1/chat/completions", json={"model": MODEL, **body})
    error = _error(response, 400)
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param and error["message"].startswith(f"{param}: "), error
    assert words in error["message"]
    assert response.headers["x-should-retry"] == "false" and response.headers["request-id"].startswith("req_")


async def test_an_unknown_model_and_a_long_prompt_have_openai_codes(openai: httpx.AsyncClient) -> None:
    error = _error(await openai.post("/v1/chat/completions", json={"model": "gpt-9", "messages": HI}), 404)
    assert error == {
        "message": "model: gpt-9",
        "type": "not_found_error",
        "param": "model",
        "code": "model_not_found",
    }
    # Over the fake's window of 4,096 tokens, and large enough to be validated on a worker thread.
    long = [{"role": "user", "content": "x" * 70_000}]
    error = _error(await openai.post("/v1/chat/completions", json={"model": MODEL, "messages": long}), 400)
    assert error["code"] == "context_length_exceeded" and error["message"].startswith("prompt is too long")


async def test_malformed_json_is_an_openai_400(openai: httpx.AsyncClient) -> None:
    response = await openai.post(
        "/v1/chat/completions", content=b'{"model": ', headers={"content-type": "application/json"}
    )
    assert "Invalid JSON" in _error(response, 400)["message"]


async def test_keys_are_checked_as_bearer_tokens(engine: FakeEngine, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, api_keys=["sk-right"])
    body = {"model": MODEL, "messages": HI}
    async with _client(engine, settings, {}) as client:
        missing_response = await client.post("/v1/chat/completions", json=body)
        missing = _error(missing_response, 401)
        assert missing["type"] == "authentication_error"
        wrong = await client.post(
            "/v1/chat/completions", json=body, headers={"authorization": "Bearer sk-wrong"}
        )
        assert _error(wrong, 401)["type"] == "authentication_error"
        right = await client.post(
            "/v1/chat/completions", json=body, headers={"authorization": "Bearer sk-right"}
        )
        assert right.status_code == 200 and "anthropic-ratelimit-requests-limit" in right.headers
        # OpenAI's names for the same buckets, resets as durations
        for name in ("requests", "tokens"):
            assert (
                right.headers[f"x-ratelimit-limit-{name}"]
                == right.headers[f"anthropic-ratelimit-{name}-limit"]
            )
            remaining = right.headers[f"anthropic-ratelimit-{name}-remaining"]
            assert right.headers[f"x-ratelimit-remaining-{name}"] == remaining
            assert re.fullmatch(r"\d+s", right.headers[f"x-ratelimit-reset-{name}"])
        refused = await client.post(
            "/v1/chat/completions", json={**body, "n": 2}, headers={"authorization": "Bearer sk-right"}
        )
        assert (
            _error(refused, 400) and "x-ratelimit-limit-requests" in refused.headers
        )  # errors to a known caller too
        assert (
            "x-ratelimit-limit-requests" not in missing_response.headers
        )  # nobody's limits to an unknown one
        models = await client.get("/v1/models", headers={"authorization": "Bearer sk-right"})
        assert models.status_code == 200 and models.json()["object"] == "list"
        assert _error(await client.get("/v1/models"), 401)["type"] == "authentication_error"


# --- models -------------------------------------------------------------------------------------


async def test_models_take_openai_shape_without_anthropic_version(openai: httpx.AsyncClient) -> None:
    listed = (await openai.get("/v1/models")).json()
    OpenAIModelList.model_validate(listed)
    assert set(listed) == {"object", "data"} and listed["object"] == "list"
    ids = [model["id"] for model in listed["data"]]
    assert MODEL in ids and "fake" in ids and len(ids) == len(set(ids))
    for model in listed["data"]:
        assert set(model) == {"id", "object", "created", "owned_by"} and model["object"] == "model"
        assert isinstance(model["created"], int)
    anthropic = (await openai.get("/v1/models", headers=HEADERS)).json()
    assert {"data", "has_more", "first_id", "last_id"} == set(anthropic)
    assert {m["id"] for m in anthropic["data"]} <= set(ids) and anthropic["data"][0]["type"] == "model"
    one = (await openai.get(f"/v1/models/{MODEL}")).json()
    assert one["id"] == MODEL and one["object"] == "model"
    assert (await openai.get(f"/v1/models/{MODEL}", headers=HEADERS)).json()["type"] == "model"
    missing = await openai.get("/v1/models/gpt-9")
    assert _error(missing, 404)["code"] == "model_not_found"
    assert missing.headers["x-request-id"] == missing.headers["request-id"]


async def test_anthropic_clients_still_need_anthropic_version_elsewhere(openai: httpx.AsyncClient) -> None:
    response = await openai.post("/v1/messages", json={"model": MODEL, "max_tokens": 5, "messages": HI})
    assert response.status_code == 400 and response.json()["type"] == "error"


async def test_the_route_is_in_the_openapi_document(openai: httpx.AsyncClient) -> None:
    document = (await openai.get("/openapi.json")).json()
    operation = document["paths"]["/v1/chat/completions"]["post"]
    body = operation["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/ChatCompletionCreateParams"}
    answers = operation["responses"]
    assert answers["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ChatCompletion"
    }
    assert "text/event-stream" in answers["200"]["content"]
    errors = answers["4XX"]["content"]["application/json"]["schema"]
    assert errors == {"$ref": "#/components/schemas/OpenAIErrorResponse"}
    schemas = document["components"]["schemas"]
    assert {"messages", "model", "tools", "response_format", "stream_options"} <= set(
        schemas["ChatCompletionCreateParams"]["properties"]
    )
