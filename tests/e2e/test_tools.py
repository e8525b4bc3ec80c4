"""Tool use and structured outputs through a real server, the embedded 135M model and the official SDK.

What is asserted is what constrained decoding guarantees — every forced call names a tool and
its input validates; every structured output parses and validates — never what the model says.
"""

from __future__ import annotations

import json
from typing import Any

import anthropic
import jsonschema
import pytest
from pydantic import BaseModel

WEATHER = {
    "name": "get_weather",
    "description": "Get the current weather in a city.",
    "input_schema": {
        "type": "object",
        "properties": {
            "location": {"type": "string", "description": "City name, e.g. Seoul"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        },
        "required": ["location"],
    },
}
CALCULATE = {
    "name": "calculate",
    "description": "Evaluate an arithmetic expression.",
    "input_schema": {
        "type": "object",
        "properties": {"expression": {"type": "string"}},
        "required": ["expression"],
    },
}
TOOLS: list[Any] = [WEATHER, CALCULATE]
SCHEMAS = {tool["name"]: tool["input_schema"] for tool in TOOLS}
ASK = [{"role": "user", "content": "What's the weather like in Seoul right now?"}]


def _calls(message: anthropic.types.Message) -> list[anthropic.types.ToolUseBlock]:
    return [block for block in message.content if block.type == "tool_use"]


def _assert_valid_calls(message: anthropic.types.Message) -> None:
    calls = _calls(message)
    for call in calls:  # every call, even in a reply max_tokens ended: calls are closed in budget
        assert call.id.startswith("toolu_") and call.caller.type == "direct"  # type: ignore[union-attr]
        jsonschema.validate(call.input, SCHEMAS[call.name])
    assert len({call.id for call in calls}) == len(calls)


@pytest.mark.parametrize("parallel", [True, False])
def test_any_forces_valid_calls(sdk: anthropic.Anthropic, parallel: bool) -> None:
    message = sdk.messages.create(
        model="claude-sonnet-4-6",
        max_tokens=300,
        tools=TOOLS,
        tool_choice={"type": "any", "disable_parallel_tool_use": not parallel},
        messages=ASK,
    )
    calls = _calls(message)
    assert calls and all(block.type == "tool_use" for block in message.content)
    _assert_valid_calls(message)
    # a call the model drags out past the budget is closed early, still valid, as `max_tokens`
    assert message.stop_reason in {"tool_use", "max_tokens"} and message.usage.output_tokens <= 300
    if not parallel:
        assert len(calls) == 1


def test_tool_forces_that_tool(sdk: anthropic.Anthropic) -> None:
    message = sdk.messages.create(
        model="claude-sonnet-4-6",
        max_tokens=200,
        tools=TOOLS,
        tool_choice={"type": "tool", "name": "calculate", "disable_parallel_tool_use": True},
        messages=ASK,
    )
    (call,) = _calls(message)
    assert call.name == "calculate" and message.stop_reason in {"tool_use", "max_tokens"}
    jsonschema.validate(call.input, CALCULATE["input_schema"])


def test_none_never_calls_and_auto_calls_only_validly(sdk: anthropic.Anthropic) -> None:
    none = sdk.messages.create(
        model="claude-sonnet-4-6", max_tokens=40, tools=TOOLS, tool_choice={"type": "none"}, messages=ASK
    )
    assert not _calls(none) and none.stop_reason in {"end_turn", "max_tokens"}
    for _ in range(3):
        auto = sdk.messages.create(model="claude-sonnet-4-6", max_tokens=120, tools=TOOLS, messages=ASK)
        assert {block.type for block in auto.content} <= {"text", "tool_use"}
        assert (auto.stop_reason == "tool_use") == (bool(_calls(auto)) and auto.stop_reason != "max_tokens")
        _assert_valid_calls(auto)


def test_streamed_input_json_reassembles_into_the_final_input(sdk: anthropic.Anthropic) -> None:
    fragments: dict[int, list[str]] = {}
    with sdk.messages.stream(
        model="claude-sonnet-4-6",
        max_tokens=200,
        tools=TOOLS,
        tool_choice={"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True},
        messages=ASK,
    ) as stream:
        for event in stream:
            if event.type == "content_block_start":
                assert event.content_block.type == "tool_use" and event.content_block.input == {}
            if event.type == "content_block_delta" and event.delta.type == "input_json_delta":
                fragments.setdefault(event.index, []).append(event.delta.partial_json)
        final = stream.get_final_message()
    (call,) = _calls(final)
    assert len(fragments[0]) > 1  # streamed as generated, not in one piece
    assert json.loads("".join(fragments[0])) == call.input
    jsonschema.validate(call.input, WEATHER["input_schema"])


def test_a_tool_result_round_trip_and_the_pairing_rules(sdk: anthropic.Anthropic) -> None:
    first = sdk.messages.create(
        model="claude-sonnet-4-6",
        max_tokens=200,
        tools=TOOLS,
        tool_choice={"type": "any", "disable_parallel_tool_use": True},
        messages=ASK,
    )
    (call,) = _calls(first)
    result = {"type": "tool_result", "tool_use_id": call.id, "content": '{"temperature": 22}'}
    history = [*ASK, {"role": "assistant", "content": first.content}]
    second = sdk.messages.create(
        model="claude-sonnet-4-6",
        max_tokens=30,
        tools=TOOLS,
        messages=[*history, {"role": "user", "content": [result]}],
    )
    assert second.stop_reason in {"end_turn", "max_tokens", "tool_use"}
    with pytest.raises(anthropic.BadRequestError, match="without `tool_result` blocks"):
        sdk.messages.create(model="claude-sonnet-4-6", max_tokens=5, tools=TOOLS, messages=[*history, ASK[0]])
    wrong = {**result, "tool_use_id": "toolu_nope"}
    with pytest.raises(anthropic.BadRequestError, match="unexpected `tool_use_id`"):
        sdk.messages.create(
            model="claude-sonnet-4-6",
            max_tokens=5,
            tools=TOOLS,
            messages=[*history, {"role": "user", "content": [wrong]}],
        )


def test_count_tokens_counts_the_tools_as_rendered(sdk: anthropic.Anthropic) -> None:
    bare = sdk.messages.count_tokens(model="claude-sonnet-4-6", messages=ASK).input_tokens
    counted = sdk.messages.count_tokens(model="claude-sonnet-4-6", messages=ASK, tools=TOOLS).input_tokens
    message = sdk.messages.create(
        model="claude-sonnet-4-6", max_tokens=1, tools=TOOLS, tool_choice={"type": "none"}, messages=ASK
    )
    assert counted == message.usage.input_tokens > bare


class Person(BaseModel):
    name: str
    age: int
    email: str | None = None
    tags: list[str]


ENDED = {"end_turn", "max_tokens"}  # by itself, or closed by Sijo as the budget ran out
PERSON = [{"role": "user", "content": "Invent a person, with a few tags."}]


def test_messages_parse_with_a_pydantic_model(sdk: anthropic.Anthropic) -> None:
    message = sdk.messages.parse(
        model="claude-sonnet-4-6", max_tokens=300, output_format=Person, messages=PERSON
    )
    # a reply the model runs to max_tokens is closed in its last tokens, so it parses either way
    assert message.stop_reason in ENDED and len(message.content) == 1
    assert isinstance(message.parsed_output, Person)


def test_messages_parse_streaming(sdk: anthropic.Anthropic) -> None:
    with sdk.messages.stream(
        model="claude-sonnet-4-6", max_tokens=300, output_format=Person, messages=PERSON
    ) as stream:
        deltas = [e for e in stream if e.type == "content_block_delta"]
        final = stream.get_final_message()
    assert len(deltas) > 1 and final.stop_reason in ENDED
    assert isinstance(final.parsed_output, Person)


def test_output_config_format_is_one_valid_json_text_block(sdk: anthropic.Anthropic) -> None:
    schema = {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "conditions": {"type": "string", "enum": ["sunny", "cloudy", "rain"]},
            "forecast": {"type": "array", "items": {"type": "integer"}},
        },
        "required": ["city", "conditions", "forecast"],
        "additionalProperties": False,
    }
    message = sdk.messages.create(
        model="claude-sonnet-4-6",
        max_tokens=300,
        output_config={"format": {"type": "json_schema", "schema": schema}},
        messages=ASK,
    )
    (block,) = message.content
    assert block.type == "text" and message.stop_reason in ENDED
    jsonschema.validate(json.loads(block.text), schema)


@pytest.mark.parametrize("stream", [False, True])
def test_whole_calls_within_the_budget_stop_for_tool_use(sdk: anthropic.Anthropic, stream: bool) -> None:
    """A call that fitted whole is `tool_use` even when the model would have gone on to a second call
    the budget cannot hold (it was `max_tokens`, so agent loops never ran the tool: issue 11)."""
    unit = {
        "name": "set_unit",
        "description": "Set the temperature unit.",
        "input_schema": {
            "type": "object",
            "properties": {"unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
            "required": ["unit"],
        },
    }
    request: dict[str, Any] = {
        "model": "claude-sonnet-4-6",
        "max_tokens": 40,  # one call (~25 tokens) fits, a second does not
        "tools": [unit],
        "tool_choice": {"type": "any"},
        "messages": [{"role": "user", "content": "Set the unit to celsius, then to fahrenheit, then back."}],
    }
    for _ in range(4):
        if stream:
            with sdk.messages.stream(**request) as events:
                message = events.get_final_message()
        else:
            message = sdk.messages.create(**request)
        calls = _calls(message)
        assert calls and message.stop_reason == "tool_use", (message.stop_reason, message.content)
        for call in calls:
            jsonschema.validate(call.input, unit["input_schema"])


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("max_tokens", [1, 3, 6])
def test_a_budget_too_small_for_a_forced_call_leaks_no_markup(
    sdk: anthropic.Anthropic, max_tokens: int, stream: bool
) -> None:
    """The API answers a budget the call cannot fit with what fitted and `max_tokens`, never raw tags:
    no block before the call is named, then an incomplete tool_use block (issue 10)."""
    request: dict[str, Any] = {
        "model": "claude-sonnet-4-6",
        "max_tokens": max_tokens,
        "tools": TOOLS,
        "tool_choice": {"type": "any"},
        "messages": ASK,
    }
    if stream:
        with sdk.messages.stream(**request) as events:
            message = events.get_final_message()
    else:
        message = sdk.messages.create(**request)
    assert message.stop_reason == "max_tokens" and message.usage.output_tokens <= max_tokens
    for block in message.content:
        assert block.type != "text" or "<" not in block.text
        assert block.type == "tool_use" and block.name in SCHEMAS and isinstance(block.input, dict)
