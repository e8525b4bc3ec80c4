"""Context editing and message threads through a real server, the embedded model and the official
SDK's beta surface: what is asserted is the structure (the edits reported agree with the counts and
with each other; the tool runner falls back from threads by itself), never what the model says."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, Literal

import anthropic
import httpx2
import pytest
from anthropic import beta_tool

from tests.conftest import Server, start_configured, stop_server

MODEL = "claude-sonnet-4-6"
BETA = "context-management-2025-06-27"
CAPPED = """
[[models]]
id = "claude-sonnet-4-6"
max_output_tokens = 64000
max_thinking_tokens = 8
"""
RUN = {
    "name": "run",
    "description": "Run a shell command and return its output.",
    "input_schema": {
        "type": "object",
        "properties": {"command": {"type": "string"}},
        "required": ["command"],
    },
}


def history(uses: int) -> list[dict[str, Any]]:
    """A user request and `uses` shell calls, each answered with a long listing."""
    messages: list[dict[str, Any]] = [{"role": "user", "content": "What is in this directory?"}]
    for i in range(uses):
        call = {"type": "tool_use", "id": f"toolu_{i:02d}", "name": "run", "input": {"command": f"ls dir{i}"}}
        listing = "\n".join(f"file_{i}_{n}.txt" for n in range(40))
        messages.append({"role": "assistant", "content": [call]})
        messages.append(
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": call["id"], "content": listing}],
            }
        )
    return messages


def clear_tool_uses(trigger: int) -> Any:
    return {
        "edits": [
            {
                "type": "clear_tool_uses_20250919",
                "trigger": {"type": "input_tokens", "value": trigger},
                "keep": {"type": "tool_uses", "value": 2},
            }
        ]
    }


def test_old_tool_results_are_cleared_and_reported_consistently(sdk: anthropic.Anthropic) -> None:
    request: Any = {"model": MODEL, "tools": [RUN], "messages": history(5), "betas": [BETA]}
    untouched = sdk.beta.messages.count_tokens(**request, context_management=clear_tool_uses(10**6))
    assert untouched.context_management is not None
    original = untouched.context_management.original_input_tokens
    assert untouched.input_tokens == original  # under the trigger: nothing cleared

    edits = clear_tool_uses(original - 1)
    counted = sdk.beta.messages.count_tokens(**request, context_management=edits)
    assert counted.context_management is not None
    assert counted.context_management.original_input_tokens == original
    assert counted.input_tokens < original

    message = sdk.beta.messages.create(**request, max_tokens=5, context_management=edits)
    assert message.context_management is not None
    [applied] = message.context_management.applied_edits
    assert applied.type == "clear_tool_uses_20250919"
    assert applied.cleared_tool_uses == 3  # five uses, two kept
    assert applied.cleared_input_tokens == original - counted.input_tokens
    assert message.usage.input_tokens == counted.input_tokens

    with sdk.beta.messages.stream(**request, max_tokens=5, context_management=edits) as stream:
        streamed = stream.get_final_message()
    assert streamed.context_management == message.context_management


@pytest.fixture(scope="module")
def capped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server whose model cuts manual thinking budgets to 8 tokens."""
    running = start_configured(tmp_path_factory.mktemp("capped"), CAPPED)
    yield running
    stop_server(running)


def test_claude_codes_thinking_request_is_answered_within_the_cap(capped: Server) -> None:
    """Claude Code's shape: a 31,999-token manual budget, `keep: all`, the context-management beta.
    The server's `max_thinking_tokens` cuts the budget; usage counts the thinking that ran."""
    client = anthropic.Anthropic(base_url=capped.base_url, api_key=capped.api_key, max_retries=0)
    with client.beta.messages.stream(  # streamed, as Claude Code does (and the SDK requires)
        model=MODEL,
        max_tokens=32000,
        thinking={"type": "enabled", "budget_tokens": 31999},
        context_management={"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        betas=[BETA, "interleaved-thinking-2025-05-14"],
        stop_sequences=[" ", "\n", "."],  # the answer's first word is enough
        messages=[{"role": "user", "content": "Say hi."}],
    ) as stream:
        message = stream.get_final_message()
    assert message.content[0].type == "thinking"
    assert message.context_management is not None and message.context_management.applied_edits == []
    details = message.usage.output_tokens_details
    assert details is not None and 0 < details.thinking_tokens <= 8


def test_the_tool_runner_falls_back_from_threads_by_itself(server: Server) -> None:
    sent: list[dict[str, Any]] = []

    def record(request: httpx2.Request) -> None:
        if request.url.path == "/v1/messages":
            sent.append(json.loads(request.content))

    ran: list[str] = []

    @beta_tool
    def set_unit(unit: Literal["celsius", "fahrenheit"]) -> str:
        """Set the temperature unit.

        Args:
            unit: The unit.
        """
        ran.append(unit)
        return f"Unit set to {unit}."

    http_client = anthropic.DefaultHttpxClient(event_hooks={"request": [record]})
    client = anthropic.Anthropic(
        base_url=server.base_url, api_key=server.api_key, max_retries=0, http_client=http_client
    )
    runner = client.beta.messages.tool_runner(
        model=MODEL,
        max_tokens=60,
        tools=[set_unit],  # an enum argument: one call always fits the budget whole
        # every turn calls the tool once, so the loop runs until max_iterations
        tool_choice={"type": "any", "disable_parallel_tool_use": True},
        max_iterations=2,
        messages=[{"role": "user", "content": "Use celsius."}],
    )
    replies = list(runner)
    assert len(replies) == 2 and all(reply.stop_reason == "tool_use" for reply in replies)
    assert len(ran) == 2  # each reply's call ran, and its result went back
    assert sent[0]["thread"] == {"type": "create"}  # refused with thread_unsupported_request ...
    assert all("thread" not in body for body in sent[1:])  # ... so the runner went on without a thread
    assert len(sent) == 3
    assert sent[2]["messages"][-1]["content"][0]["type"] == "tool_result"
