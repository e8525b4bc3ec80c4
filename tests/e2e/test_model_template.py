"""A model whose chat template renders tools and knows `<think>` (the Hermes/Qwen family), through a
real server, the embedded model and the official SDK. The embedded model is ChatML like that family,
so it is served here with such a template (`chat_template` in the engine config, as llama-server's
`--chat-template-file`): tools, calls and results are rendered by the template, not Sijo's generic
markup, and thinking uses the template's own `enable_thinking` switch instead of an instruction.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import jsonschema
import pytest

from tests.conftest import Server, start_server, stop_server

TEMPLATE = Path(__file__).parents[1] / "templates" / "chatml_tools_think.jinja"
WEATHER = {
    "name": "get_weather",
    "description": "Get the current weather for a city.",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
        "required": ["city", "unit"],
    },
}
ASK = [{"role": "user", "content": "What's the weather like in Seoul right now, in celsius please?"}]


@pytest.fixture(scope="module")
def native(tmp_path_factory: pytest.TempPathFactory) -> Iterator[anthropic.Anthropic]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIJO_")}
    engines = {"default": {"chat_template": str(TEMPLATE), "context_window": 2048}}
    server: Server = start_server(tmp_path_factory.mktemp("native"), {**env, "SIJO_ENGINES": json.dumps(engines)})
    yield anthropic.Anthropic(base_url=server.base_url, api_key=server.api_key, max_retries=0)
    stop_server(server)


def _count(sdk: anthropic.Anthropic, **request: Any) -> int:
    return sdk.messages.count_tokens(model="claude-sonnet-4-6", **request).input_tokens


def test_a_tool_loop_runs_through_the_models_own_template(native: anthropic.Anthropic) -> None:
    first = native.messages.create(
        model="claude-sonnet-4-6", max_tokens=120, tools=[WEATHER], tool_choice={"type": "any"}, messages=ASK
    )
    calls = [block for block in first.content if block.type == "tool_use"]
    assert calls and first.stop_reason in {"tool_use", "max_tokens"}
    for call in calls:
        jsonschema.validate(call.input, WEATHER["input_schema"])
    loop: list[Any] = [
        *ASK,
        {"role": "assistant", "content": first.content},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": c.id, "content": "Sunny, 21 degrees"} for c in calls],
        },
    ]
    second = native.messages.create(model="claude-sonnet-4-6", max_tokens=40, tools=[WEATHER], messages=loop)
    assert second.stop_reason in {"end_turn", "max_tokens", "tool_use"}
    # count_tokens renders through the same template: it is exactly what generation read
    assert _count(native, tools=[WEATHER], messages=loop) == second.usage.input_tokens


def test_native_thinking_needs_no_instruction(native: anthropic.Anthropic, sdk: anthropic.Anthropic) -> None:
    """With the template's own reasoning switch, thinking adds no prompt of Sijo's: the prompt is no
    longer than without thinking (where the template writes an empty think block). A model without
    it is prompted to reason, which costs tokens."""
    thinking = {"thinking": {"type": "adaptive"}, "output_config": {"effort": "low"}}
    assert _count(native, messages=ASK, **thinking) <= _count(native, messages=ASK)
    assert _count(sdk, messages=ASK, **thinking) > _count(sdk, messages=ASK) + 10
    message = native.messages.create(model="claude-sonnet-4-6", max_tokens=300, messages=ASK, **thinking)
    assert message.content[0].type == "thinking" and message.content[0].signature
    details = message.usage.output_tokens_details
    assert details is not None and 0 < details.thinking_tokens <= 256
