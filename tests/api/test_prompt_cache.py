"""Prompt caching semantics over the fake engine (1 token per character): breakpoints, lookback,
TTLs on an injectable clock, billing invariants, workspace isolation, and the 529 queue limit."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from sijo.app import create_app
from sijo.config import ModelConfig, Settings
from sijo.engines.fake import FakeEngine
from sijo.prompt_cache import PromptCache

MIN = 100  # the test model's minimum cacheable prefix, in tokens (characters here)
DOC = "All work and no play makes Jack a dull boy. " * 6  # 264 characters


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def keys() -> list[str]:
    return ["key-a", "key-b"]


@pytest.fixture
async def app_client(
    engine: FakeEngine, clock: Clock, keys: list[str]
) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(
        api_keys=keys,
        models=[ModelConfig(id="claude-sonnet-4-6", cache_min_tokens=MIN), ModelConfig(id="other")],
    )
    app = create_app(settings, engines={"default": engine}, cache=PromptCache(clock))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        headers = {"anthropic-version": "2023-06-01", "x-api-key": "key-a"}
        async with httpx.AsyncClient(transport=transport, base_url="http://sijo.localhost", headers=headers) as c:
            yield c


def cached(text: str, ttl: str | None = None) -> dict[str, Any]:
    control: dict[str, Any] = {"type": "ephemeral"} | ({"ttl": ttl} if ttl else {})
    return {"type": "text", "text": text, "cache_control": control}


def body(system: list[dict[str, Any]], question: str = "Who is Jack?", **extra: Any) -> dict[str, Any]:
    return {
        "model": "claude-sonnet-4-6",
        "max_tokens": 5,
        "system": system,
        "messages": [{"role": "user", "content": question}],
        **extra,
    }


async def usage_of(client: httpx.AsyncClient, payload: dict[str, Any], **headers: str) -> dict[str, Any]:
    response = await client.post("/v1/messages", json=payload, headers=headers)
    assert response.status_code == 200, response.text
    usage: dict[str, Any] = response.json()["usage"]
    count_body = {k: v for k, v in payload.items() if k not in ("max_tokens", "stream")}
    counted = await client.post("/v1/messages/count_tokens", json=count_body, headers=headers)
    total = usage["input_tokens"] + usage["cache_creation_input_tokens"] + usage["cache_read_input_tokens"]
    assert total == counted.json()["input_tokens"]
    creation = usage["cache_creation"]
    split = creation["ephemeral_5m_input_tokens"] + creation["ephemeral_1h_input_tokens"]
    assert split == usage["cache_creation_input_tokens"]
    return usage


async def test_a_system_prompt_is_written_then_read(app_client: httpx.AsyncClient) -> None:
    first = await usage_of(app_client, body([cached(DOC)]))
    assert first["cache_creation_input_tokens"] > len(DOC)  # the prefix includes the template's scaffolding
    assert first["cache_read_input_tokens"] == 0
    second = await usage_of(app_client, body([cached(DOC)], "And Jill?"))
    assert second["cache_read_input_tokens"] == first["cache_creation_input_tokens"]
    assert second["cache_creation_input_tokens"] == 0
    assert second["cache_creation"]["ephemeral_5m_input_tokens"] == 0


async def test_the_engine_is_asked_to_keep_the_prefix_in_the_workspace(
    app_client: httpx.AsyncClient, engine: FakeEngine
) -> None:
    usage = await usage_of(app_client, body([cached(DOC, "1h")]))
    request = engine.requests[-1]
    assert [(k.length, k.ttl) for k in request.keep] == [(usage["cache_creation_input_tokens"], 3600.0)]
    assert request.namespace.startswith("cfg-apikey_cfg_")
    assert usage["cache_creation"]["ephemeral_1h_input_tokens"] == usage["cache_creation_input_tokens"]


async def test_streaming_reports_the_same_usage_in_message_start_and_at_the_end(
    app_client: httpx.AsyncClient,
) -> None:
    await usage_of(app_client, body([cached(DOC)]))
    async with app_client.stream("POST", "/v1/messages", json=body([cached(DOC)], stream=True)) as response:
        events = [json.loads(line[6:]) for line in [x async for x in response.aiter_lines()] if line.startswith("data: ")]
    start = events[0]["message"]["usage"]
    final = next(e for e in events if e["type"] == "message_delta")["usage"]
    assert start["cache_read_input_tokens"] > 0
    for field in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"):
        assert start[field] == final[field]


async def test_prefixes_below_the_minimum_are_silently_not_cached(app_client: httpx.AsyncClient) -> None:
    for _ in range(2):
        usage = await usage_of(app_client, body([cached("short")]))
        assert usage["cache_creation_input_tokens"] == usage["cache_read_input_tokens"] == 0


async def test_five_breakpoints_are_refused(app_client: httpx.AsyncClient) -> None:
    system = [cached(f"{DOC} part {i}") for i in range(5)]
    response = await app_client.post("/v1/messages", json=body(system))
    assert response.status_code == 400
    assert response.json()["error"]["message"] == (
        "A maximum of 4 blocks with cache_control may be provided. Found 5."
    )
    # the automatic breakpoint counts too
    auto = body(system[:4], cache_control={"type": "ephemeral"})
    response = await app_client.post("/v1/messages/count_tokens", json={k: v for k, v in auto.items() if k != "max_tokens"})
    assert response.status_code == 400


async def test_a_1h_breakpoint_after_a_5m_one_is_refused(app_client: httpx.AsyncClient) -> None:
    response = await app_client.post("/v1/messages", json=body([cached(DOC, "5m"), cached(DOC, "1h")]))
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith("system.1.cache_control.ttl:")
    mixed = await usage_of(app_client, body([cached(DOC, "1h"), cached(DOC + "more", "5m")]))
    creation = mixed["cache_creation"]
    assert creation["ephemeral_1h_input_tokens"] > len(DOC)
    assert creation["ephemeral_5m_input_tokens"] == len("\n\n" + DOC + "more")


async def test_ttl_expires_and_a_hit_refreshes_it(app_client: httpx.AsyncClient, clock: Clock) -> None:
    written = (await usage_of(app_client, body([cached(DOC)])))["cache_creation_input_tokens"]
    clock.now += 299
    assert (await usage_of(app_client, body([cached(DOC)])))["cache_read_input_tokens"] == written
    clock.now += 299  # 598 s after the write, 299 s after the refreshing hit
    assert (await usage_of(app_client, body([cached(DOC)])))["cache_read_input_tokens"] == written
    clock.now += 301
    expired = await usage_of(app_client, body([cached(DOC)]))
    assert expired["cache_read_input_tokens"] == 0
    assert expired["cache_creation_input_tokens"] == written


async def test_a_1h_entry_outlives_five_minutes(app_client: httpx.AsyncClient, clock: Clock) -> None:
    written = (await usage_of(app_client, body([cached(DOC, "1h")])))["cache_creation_input_tokens"]
    clock.now += 3000
    assert (await usage_of(app_client, body([cached(DOC, "1h")])))["cache_read_input_tokens"] == written
    clock.now += 3601
    assert (await usage_of(app_client, body([cached(DOC, "1h")])))["cache_read_input_tokens"] == 0


async def test_workspaces_never_read_each_others_entries(app_client: httpx.AsyncClient) -> None:
    mine = await usage_of(app_client, body([cached(DOC)]))
    theirs = await usage_of(app_client, body([cached(DOC)]), **{"x-api-key": "key-b"})
    assert theirs["cache_read_input_tokens"] == 0
    assert theirs["cache_creation_input_tokens"] == mine["cache_creation_input_tokens"]
    again = await usage_of(app_client, body([cached(DOC)]), **{"x-api-key": "key-b"})
    assert again["cache_read_input_tokens"] == mine["cache_creation_input_tokens"]


async def test_entries_are_per_model(app_client: httpx.AsyncClient) -> None:
    await usage_of(app_client, body([cached(DOC)]))
    other = await usage_of(app_client, {**body([cached(DOC)]), "model": "other"})
    assert other["cache_read_input_tokens"] == 0


def conversation(turns: int) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    for i in range(turns):
        messages.append({"role": "user", "content": [{"type": "text", "text": f"Question {i}: {DOC}"}]})
        messages.append({"role": "assistant", "content": [{"type": "text", "text": f"Answer {i}."}]})
    messages.append({"role": "user", "content": [{"type": "text", "text": "Last question?"}]})
    return messages


async def test_automatic_caching_moves_forward_and_reads_the_previous_turn(
    app_client: httpx.AsyncClient,
) -> None:
    payload = {"model": "claude-sonnet-4-6", "max_tokens": 5, "cache_control": {"type": "ephemeral"}}
    turn = [
        {"role": "user", "content": f"Question: {DOC}"},
        {"role": "assistant", "content": "Answer."},
        {"role": "user", "content": "Another question?"},
    ]
    first = await usage_of(app_client, {**payload, "messages": turn})
    # everything up to the last block is written; only the template's closing scaffolding is input
    assert first["cache_creation_input_tokens"] > len(DOC)
    assert first["input_tokens"] == len("<|im_end|>\n<|im_start|>assistant\n")
    follow_up = [*turn, {"role": "assistant", "content": "Sure."}, {"role": "user", "content": "More?"}]
    second = await usage_of(app_client, {**payload, "messages": follow_up})
    assert second["cache_read_input_tokens"] == first["cache_creation_input_tokens"]
    assert second["cache_creation_input_tokens"] > 0
    assert second["input_tokens"] == first["input_tokens"]


async def test_lookback_reaches_twenty_blocks_back_and_no_further(app_client: httpx.AsyncClient) -> None:
    written = (await usage_of(app_client, body([cached(DOC)])))["cache_creation_input_tokens"]
    notes = [{"type": "text", "text": f"note {i}"} for i in range(21)]

    def later_breakpoint(count: int) -> dict[str, Any]:
        # the same system prompt, unmarked; the breakpoint sits `count` blocks after it
        content = [*notes[: count - 1], cached("end")]
        return {**body([{"type": "text", "text": DOC}]), "messages": [{"role": "user", "content": content}]}

    assert (await usage_of(app_client, later_breakpoint(20)))["cache_read_input_tokens"] == written
    assert (await usage_of(app_client, later_breakpoint(21)))["cache_read_input_tokens"] == 0


async def test_a_claude_code_billing_nonce_does_not_defeat_caching(app_client: httpx.AsyncClient) -> None:
    def system(nonce: str) -> list[dict[str, Any]]:
        header = f"x-anthropic-billing-header: cc_version=2.1.38.713; cc_entrypoint=cli; cch={nonce};"
        return [{"type": "text", "text": header}, cached(DOC)]

    written = (await usage_of(app_client, body(system("90d92"))))["cache_creation_input_tokens"]
    assert (await usage_of(app_client, body(system("77f01"))))["cache_read_input_tokens"] == written


async def test_a_full_engine_answers_529_with_retry_after(client: httpx.AsyncClient, engine: FakeEngine) -> None:
    engine.capacity = 0
    payload = {"model": "claude-sonnet-4-6", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    for stream in (False, True):
        response = await client.post("/v1/messages", json={**payload, "stream": stream})
        assert response.status_code == 529
        assert response.headers["retry-after"] == "1"
        assert response.json()["error"]["type"] == "overloaded_error"


async def test_a_breakpoint_on_the_tools_caches_them_ahead_of_the_system_prompt(
    app_client: httpx.AsyncClient,
) -> None:
    """Tools render first: a cache_control on the last tool caches the tools alone, so a request with
    another system prompt still reads them."""
    tool = {
        "name": "lookup",
        "description": DOC,
        "input_schema": {"type": "object"},
        "cache_control": {"type": "ephemeral"},
    }
    first = await usage_of(app_client, body([{"type": "text", "text": "Be brief."}], tools=[tool]))
    assert first["cache_creation_input_tokens"] > len(DOC) and first["cache_read_input_tokens"] == 0
    other = await usage_of(app_client, body([{"type": "text", "text": "Be long."}], tools=[tool]))
    assert other["cache_read_input_tokens"] == first["cache_creation_input_tokens"]
    assert other["cache_creation_input_tokens"] == 0
