"""Context editing, message threads and the thinking cap in-process, over the fake engine (whose
tokens are characters, so what the model read is the prompt's text)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from sijo.app import create_app
from sijo.config import ModelConfig, Settings
from sijo.engines.fake import FakeEngine
from sijo.prompt.context_edits import CLEARED_TOOL_RESULT
from tests.api.test_messages import parse_sse

BODY: dict[str, Any] = {"model": "claude-sonnet-4-6", "max_tokens": 50}
CLAUDE_CODE_THINKING = {"type": "enabled", "budget_tokens": 31999}
KEEP_ALL_THINKING = {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]}
BASH = {"name": "bash", "description": "Run a command.", "input_schema": {"type": "object"}}


def tool_loop(count: int, output: str) -> list[dict[str, Any]]:
    """A user request, then `count` bash calls each answered with `output` and its number."""
    messages: list[dict[str, Any]] = [{"role": "user", "content": "List the files."}]
    for i in range(count):
        call = {"type": "tool_use", "id": f"toolu_{i}", "name": "bash", "input": {"command": f"ls {i}"}}
        messages.append({"role": "assistant", "content": [call]})
        result = {"type": "tool_result", "tool_use_id": f"toolu_{i}", "content": f"{output} #{i}"}
        messages.append({"role": "user", "content": [result]})
    return messages


def counted(body: dict[str, Any]) -> dict[str, Any]:
    """`body` as count_tokens takes it (no `max_tokens`)."""
    return {key: value for key, value in body.items() if key != "max_tokens"}


def prompt_text(engine: FakeEngine, index: int = 0) -> str:
    return "".join(map(chr, engine.requests[index].tokens))  # the fake's tokens are characters


def clearing(trigger: int, **options: Any) -> dict[str, Any]:
    edit = {"type": "clear_tool_uses_20250919", "trigger": {"type": "input_tokens", "value": trigger}}
    return {"edits": [{**edit, **options}]}


async def test_claude_codes_first_request_is_answered(client: httpx.AsyncClient, engine: FakeEngine) -> None:
    """Claude Code sends thinking with a 31,999-token budget and `keep: all` on every request."""
    engine.enqueue(["Thinking it over.", "</think>"])
    engine.enqueue(["Hello."])
    body = {
        **BODY,
        "max_tokens": 32000,
        "thinking": CLAUDE_CODE_THINKING,
        "context_management": KEEP_ALL_THINKING,
        "messages": [{"role": "user", "content": "hi"}],
    }
    response = await client.post("/v1/messages?beta=true", json=body)
    assert response.status_code == 200, response.text
    message = response.json()
    assert message["context_management"] == {"applied_edits": []}
    assert [block["type"] for block in message["content"]] == ["thinking", "text"]
    assert engine.requests[0].max_tokens == 1024  # the thinking phase, cut to max_thinking_tokens
    assert message["usage"]["output_tokens_details"]["thinking_tokens"] == 3  # two pieces and the end


async def test_the_thinking_cap_is_per_model_and_can_be_lifted(engine: FakeEngine) -> None:
    models = [
        ModelConfig(id="small", max_thinking_tokens=1500),
        ModelConfig(id="free", max_thinking_tokens=None),
    ]
    app = create_app(Settings(models=models), engines={"default": engine})
    body = {"max_tokens": 4000, "thinking": {"type": "enabled", "budget_tokens": 3000}}
    body["messages"] = [{"role": "user", "content": "hi"}]
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://sijo.localhost") as c:
            headers = {"anthropic-version": "2023-06-01"}
            for model in ("small", "free"):
                engine.enqueue(["hm", "</think>"])
                response = await c.post("/v1/messages", json={**body, "model": model}, headers=headers)
                assert response.status_code == 200, response.text
    assert [request.max_tokens for request in engine.requests[::2]] == [1500, 3000]


async def test_a_request_without_context_management_gets_no_such_key(client: httpx.AsyncClient) -> None:
    body = {**BODY, "messages": [{"role": "user", "content": "hi"}]}
    assert "context_management" not in (await client.post("/v1/messages", json=body)).json()
    streamed = parse_sse((await client.post("/v1/messages", json={**body, "stream": True})).text)
    assert all("context_management" not in data for _, data in streamed)
    count = await client.post("/v1/messages/count_tokens", json=counted(body))
    assert "context_management" not in count.json()


async def test_old_tool_results_are_cleared_once_the_prompt_passes_the_trigger(
    client: httpx.AsyncClient, engine: FakeEngine
) -> None:
    messages = tool_loop(5, "x" * 200)
    body = {**BODY, "tools": [BASH], "messages": messages}
    plain = (await client.post("/v1/messages/count_tokens", json=counted(body))).json()["input_tokens"]
    response = await client.post("/v1/messages", json={**body, "context_management": clearing(plain - 1)})
    assert response.status_code == 200, response.text
    applied = response.json()["context_management"]["applied_edits"]
    assert applied == [
        {
            "type": "clear_tool_uses_20250919",
            "cleared_tool_uses": 2,
            "cleared_input_tokens": applied[0]["cleared_input_tokens"],
        }
    ]
    seen = prompt_text(engine)
    assert seen.count(CLEARED_TOOL_RESULT) == 2 and "x #0" not in seen and "x #1" not in seen
    assert all(f"x #{i}" in seen for i in (2, 3, 4)) and "ls 0" in seen  # calls keep their inputs
    assert len(engine.requests[0].tokens) == plain - applied[0]["cleared_input_tokens"]
    assert response.json()["usage"]["input_tokens"] == len(engine.requests[0].tokens)

    engine.requests.clear()
    untouched = await client.post("/v1/messages", json={**body, "context_management": clearing(plain)})
    assert untouched.json()["context_management"] == {"applied_edits": []}
    assert CLEARED_TOOL_RESULT not in prompt_text(engine)


async def test_count_tokens_reports_the_count_before_and_after_the_edits(client: httpx.AsyncClient) -> None:
    body = {**BODY, "tools": [BASH], "messages": tool_loop(4, "y" * 100)}
    plain = (await client.post("/v1/messages/count_tokens", json=counted(body))).json()["input_tokens"]
    options = {"keep": {"type": "tool_uses", "value": 1}, "clear_tool_inputs": True}
    edited_body = {**body, "context_management": clearing(1, **options)}
    count = (await client.post("/v1/messages/count_tokens", json=counted(edited_body))).json()
    assert count["context_management"] == {"original_input_tokens": plain}
    assert count["input_tokens"] < plain
    message = (await client.post("/v1/messages", json=edited_body)).json()
    applied = message["context_management"]["applied_edits"]
    assert applied[0]["cleared_tool_uses"] == 3
    assert applied[0]["cleared_input_tokens"] == plain - count["input_tokens"]


async def test_stream_and_message_report_the_same_edits(
    client: httpx.AsyncClient, engine: FakeEngine
) -> None:
    body = {**BODY, "tools": [BASH], "messages": tool_loop(4, "z" * 50), "context_management": clearing(1)}
    engine.enqueue(["Done."])
    engine.enqueue(["Done."])
    created = (await client.post("/v1/messages", json=body)).json()
    events = parse_sse((await client.post("/v1/messages", json={**body, "stream": True})).text)
    start = next(data for name, data in events if name == "message_start")
    delta = next(data for name, data in events if name == "message_delta")
    assert "context_management" not in start["message"]
    assert delta["context_management"] == created["context_management"]
    assert created["context_management"]["applied_edits"][0]["cleared_tool_uses"] == 1


async def signed_thinking(client: httpx.AsyncClient, engine: FakeEngine, thought: str) -> dict[str, Any]:
    engine.enqueue([thought, "</think>"])
    engine.enqueue(["ok"])
    body = {**BODY, "max_tokens": 1100, "thinking": {"type": "enabled", "budget_tokens": 1024}}
    reply = (
        await client.post("/v1/messages", json={**body, "messages": [{"role": "user", "content": "?"}]})
    ).json()
    block: dict[str, Any] = reply["content"][0]
    assert block["type"] == "thinking"
    return block


async def test_old_thinking_is_cleared_and_the_last_turns_kept(
    client: httpx.AsyncClient, engine: FakeEngine
) -> None:
    first = await signed_thinking(client, engine, "FIRST-THOUGHT")
    second = await signed_thinking(client, engine, "SECOND-THOUGHT")
    messages = [
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": [first, {"type": "text", "text": "1"}]},
        {"role": "user", "content": "two"},
        {"role": "assistant", "content": [second, {"type": "text", "text": "2"}]},
        {"role": "user", "content": "three"},
    ]
    body = {
        **BODY,
        "max_tokens": 1100,
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "messages": messages,
    }
    count = await client.post(
        "/v1/messages/count_tokens", json=counted({**body, "context_management": KEEP_ALL_THINKING})
    )
    kept = count.json()
    assert kept["input_tokens"] == kept["context_management"]["original_input_tokens"]

    engine.requests.clear()
    edits = {"edits": [{"type": "clear_thinking_20251015"}]}
    response = await client.post("/v1/messages", json={**body, "context_management": edits})
    assert response.status_code == 200, response.text
    [applied] = response.json()["context_management"]["applied_edits"]
    assert applied["type"] == "clear_thinking_20251015" and applied["cleared_thinking_turns"] == 1
    seen = prompt_text(engine)
    assert "SECOND-THOUGHT" in seen and "FIRST-THOUGHT" not in seen
    assert applied["cleared_input_tokens"] == kept["input_tokens"] - len(engine.requests[0].tokens)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            {
                "thinking": {"type": "enabled", "budget_tokens": 1024},
                "context_management": {
                    "edits": [{"type": "clear_tool_uses_20250919"}, {"type": "clear_thinking_20251015"}]
                },
            },
            "context_management: `clear_thinking_20251015` must be the first strategy in "
            "`context_management.edits` when provided",
        ),
        (
            {"context_management": KEEP_ALL_THINKING},
            "`clear_thinking_20251015` strategy requires `thinking` to be enabled or adaptive",
        ),
        (
            {"context_management": {"edits": [{"type": "compact_20260112"}]}},
            "context_management.edits.0.type: the `compact_20260112` strategy (server-side compaction) is not "
            "supported by Sijo yet",
        ),
        (
            {
                "context_management": {
                    "edits": [
                        {"type": "clear_thinking_20251015", "keep": {"type": "thinking_turns", "value": 0}}
                    ]
                }
            },
            "context_management.edits.0.keep",
        ),
    ],
)
async def test_context_management_errors_are_the_apis(
    client: httpx.AsyncClient, extra: dict[str, Any], message: str
) -> None:
    body = {**BODY, "max_tokens": 2000, "messages": [{"role": "user", "content": "hi"}], **extra}
    for path in ("/v1/messages", "/v1/messages/count_tokens"):
        payload = body if path == "/v1/messages" else counted(body)
        response = await client.post(path, json=payload)
        assert response.status_code == 400
        error = response.json()["error"]
        assert error["type"] == "invalid_request_error" and error["message"].startswith(message), error


async def test_a_threaded_request_gets_the_apis_thread_unsupported_request(client: httpx.AsyncClient) -> None:
    """The error the SDKs' thread helpers (`tool_runner`) fall back on; it comes before any other check."""
    body = {"model": "claude-nope", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
    response = await client.post("/v1/messages", json={**body, "thread": {"type": "create"}})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["details"] == {"error_code": "thread_unsupported_request"}
    assert error["message"].startswith("thread: ")
    assert "details" not in (await client.post("/v1/messages", json=body)).json()["error"]


async def test_models_say_context_editing_is_supported(client: httpx.AsyncClient) -> None:
    capability = (await client.get("/v1/models/claude-sonnet-4-6")).json()["capabilities"][
        "context_management"
    ]
    assert capability == {
        "supported": True,
        "clear_thinking_20251015": {"supported": True},
        "clear_tool_uses_20250919": {"supported": True},
        "compact_20260112": {"supported": False},
    }


async def test_a_batch_request_is_edited_and_reports_its_edits(client: httpx.AsyncClient) -> None:
    params = {**BODY, "tools": [BASH], "messages": tool_loop(4, "w" * 50), "context_management": clearing(1)}
    created = await client.post(
        "/v1/messages/batches", json={"requests": [{"custom_id": "a", "params": params}]}
    )
    assert created.status_code == 200, created.text
    batch = created.json()
    for _ in range(500):
        batch = (await client.get(f"/v1/messages/batches/{batch['id']}")).json()
        if batch["processing_status"] == "ended":
            break
        await asyncio.sleep(0.02)
    lines = (await client.get(batch["results_url"])).text.splitlines()
    result = json.loads(lines[0])["result"]
    assert result["type"] == "succeeded", result
    assert result["message"]["context_management"]["applied_edits"][0]["cleared_tool_uses"] == 1
