"""Sijo in front of a real upstream engine process (llama.cpp's `llama-server`, on loopback; and vLLM
where one is running: SIJO_TEST_VLLM_URL), driven by the official SDK: every part of the API that
Sijo keeps (templating, grammars, thinking, caching, batches, billing) working over token ids sent
upstream."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import jsonschema
import pytest

from tests.conftest import Server, start_configured, stop_server, wait_until_ended
from tests.databases import POSTGRES, empty_database
from tests.upstreams import LlamaServer, VllmServer, need_vllm, start_llama_server

WEATHER = {
    "type": "object",
    "properties": {"city": {"type": "string", "enum": ["Seoul", "Busan"]}, "unit": {"enum": ["c", "f"]}},
    "required": ["city", "unit"],
}
USER = [{"role": "user", "content": "What is the weather in Seoul?"}]
Upstream = LlamaServer | VllmServer


def fronting(urls: list[str], extra: str = "", dialect: str = "llama-server") -> str:
    listed = json.dumps(urls)
    return f'[engines.default]\nkind = "completions"\nurl = {listed}\ndialect = "{dialect}"\n{extra}'


@pytest.fixture(scope="module", params=["llama-server", "vllm"])
def upstream(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Upstream]:
    if request.param == "vllm":
        yield need_vllm(tmp_path_factory.mktemp("vllm"))
        return
    server = start_llama_server(tmp_path_factory.mktemp("llama-server"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def front(upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    config = fronting([upstream.url], upstream.config, upstream.dialect)
    server = start_configured(tmp_path_factory.mktemp("front"), config)
    yield server
    stop_server(server)


@pytest.fixture
def client(front: Server) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=front.base_url, api_key=front.api_key, max_retries=0)


def test_create_and_stream_agree_and_count_what_the_upstream_was_sent(
    client: anthropic.Anthropic, upstream: Upstream
) -> None:
    greedy: dict[str, Any] = {"extra_body": {"temperature": 0}}
    message = client.messages.create(model="claude-sonnet-4-6", max_tokens=12, messages=USER, **greedy)  # type: ignore[arg-type]
    assert message.id.startswith("msg_") and message.model == "claude-sonnet-4-6"
    assert message.stop_reason in ("end_turn", "max_tokens")
    assert [block.type for block in message.content] == ["text"] and message.content[0].text  # type: ignore[union-attr]
    assert 1 <= message.usage.output_tokens <= 12
    counted = client.messages.count_tokens(model="claude-sonnet-4-6", messages=USER)  # type: ignore[arg-type]
    assert message.usage.input_tokens == counted.input_tokens > 0
    with client.messages.stream(model="claude-sonnet-4-6", max_tokens=12, messages=USER, **greedy) as stream:  # type: ignore[arg-type]
        kinds = [event.type for event in stream]
        streamed = stream.get_final_message()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert [b.text for b in streamed.content] == [b.text for b in message.content]  # type: ignore[union-attr]
    assert streamed.usage.output_tokens == message.usage.output_tokens
    assert upstream.busy_slots() == 0


def test_a_forced_tool_call_is_valid_against_its_schema(client: anthropic.Anthropic) -> None:
    tool = {"name": "get_weather", "description": "Weather for a city", "input_schema": WEATHER}
    message = client.messages.create(
        model="claude-sonnet-4-6",
        max_tokens=60,
        messages=USER,  # type: ignore[arg-type]
        tools=[tool],  # type: ignore[list-item]
        # One call: an upstream cannot end a reply in budget, and this small model calls on and on
        tool_choice={"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True},
    )
    assert message.stop_reason == "tool_use"
    [call] = [block for block in message.content if block.type == "tool_use"]
    assert call.name == "get_weather" and call.id.startswith("toolu_")
    jsonschema.validate(call.input, WEATHER)


def test_structured_output_is_json_valid_against_the_schema(client: anthropic.Anthropic) -> None:
    message = client.messages.create(
        model="claude-sonnet-4-6",
        max_tokens=60,
        messages=USER,  # type: ignore[arg-type]
        extra_body={"output_config": {"format": {"type": "json_schema", "schema": WEATHER}}},
    )
    assert message.stop_reason == "end_turn"
    jsonschema.validate(json.loads(message.content[0].text), WEATHER)  # type: ignore[union-attr]


def test_thinking_comes_first_and_is_signed(client: anthropic.Anthropic) -> None:
    message = client.messages.create(
        model="claude-sonnet-4-6",
        max_tokens=1100,
        messages=USER,  # type: ignore[arg-type]
        thinking={"type": "enabled", "budget_tokens": 1024},
        extra_body={"output_config": {"effort": "low"}},
    )
    kinds = [block.type for block in message.content]
    assert kinds[0] == "thinking" and message.content[0].signature  # type: ignore[union-attr]
    assert message.usage.output_tokens >= 1


def test_prompt_caching_bills_a_write_then_a_read(client: anthropic.Anthropic) -> None:
    document = " ".join(f"Fact {i}: the number {i} is {'even' if i % 2 == 0 else 'odd'}." for i in range(160))
    system = [{"type": "text", "text": document, "cache_control": {"type": "ephemeral"}}]
    ask: dict[str, Any] = {"model": "claude-sonnet-4-6", "max_tokens": 3, "system": system}
    first = client.messages.create(messages=[{"role": "user", "content": "Is 7 odd?"}], **ask)
    second = client.messages.create(messages=[{"role": "user", "content": "Is 8 odd?"}], **ask)
    assert first.usage.cache_creation_input_tokens >= 1024 and first.usage.cache_read_input_tokens == 0
    assert second.usage.cache_read_input_tokens == first.usage.cache_creation_input_tokens
    assert second.usage.cache_creation_input_tokens == 0


def test_a_batch_runs_through_the_upstream(client: anthropic.Anthropic) -> None:
    requests = [
        {"custom_id": f"r{i}", "params": {"model": "claude-sonnet-4-6", "max_tokens": 5, "messages": USER}}
        for i in range(2)
    ]
    batch = client.messages.batches.create(requests=requests)  # type: ignore[arg-type]
    wait_until_ended(client, batch.id)
    results = {line.custom_id: line.result for line in client.messages.batches.results(batch.id)}
    assert set(results) == {"r0", "r1"}
    for result in results.values():
        assert result.type == "succeeded" and result.message.usage.service_tier == "batch"  # type: ignore[union-attr]


def test_a_client_that_leaves_frees_the_upstream(client: anthropic.Anthropic, upstream: Upstream) -> None:
    with client.messages.stream(model="claude-sonnet-4-6", max_tokens=2000, messages=USER) as stream:
        for event in stream:
            if event.type == "content_block_delta":
                assert upstream.busy_slots() == 1
                break
    deadline = time.monotonic() + 10
    while upstream.busy_slots():
        assert time.monotonic() < deadline, "the upstream went on generating for nobody"
        time.sleep(0.1)


def test_models_report_the_upstreams_window(front: Server) -> None:
    response = httpx.get(
        f"{front.base_url}/v1/models/claude-sonnet-4-6",
        headers={"anthropic-version": "2023-06-01"},
        timeout=10,
    )
    assert response.status_code == 200
    assert (
        response.json()["max_input_tokens"] == 8192
    )  # llama-server: its slot context (/props); vLLM: max_model_len


def test_a_killed_replica_fails_over_and_a_kill_mid_reply_is_an_error_event(tmp_path: Path) -> None:
    replicas = [start_llama_server(tmp_path, parallel=1) for _ in range(2)]
    server = start_configured(tmp_path, fronting([r.url for r in replicas], "health_interval = 60\n"))
    try:
        client = anthropic.Anthropic(base_url=server.base_url, api_key=server.api_key, max_retries=0)
        replicas[0].kill()
        for _ in range(2):  # whichever replica is tried first, the living one answers
            message = client.messages.create(model="claude-sonnet-4-6", max_tokens=4, messages=USER)  # type: ignore[arg-type]
            assert message.content and message.usage.output_tokens >= 1
        events = []
        with pytest.raises(anthropic.APIStatusError) as error:
            with client.messages.stream(model="claude-sonnet-4-6", max_tokens=2000, messages=USER) as stream:
                for event in stream:
                    events.append(event.type)
                    if event.type == "content_block_delta" and replicas[1].process.poll() is None:
                        replicas[1].kill()
        assert "content_block_delta" in events and "message_stop" not in events
        assert "overloaded_error" in str(error.value)
    finally:
        stop_server(server)
        for replica in replicas:
            replica.stop()


@pytest.mark.skipif(POSTGRES is None, reason="a fleet shares PostgreSQL: set SIJO_TEST_DATABASE_URL")
def test_a_fleet_on_postgresql_and_redis_bills_and_serves_as_one(upstream: Upstream, tmp_path: Path) -> None:
    """Two Sijo processes in front of one upstream, sharing the database, Redis and the data directory
    (files, the signing secret): a prefix written through one bills as a read through the other, and
    a batch created on one is served and read on the other."""
    with empty_database("postgresql", tmp_path) as url:
        shared = f'database_url = "{url}"\nredis_url = "redis://127.0.0.1:6379/0"\n'
        config = shared + fronting([upstream.url], upstream.config, upstream.dialect)
        env = {"SIJO_DATA_DIR": str(tmp_path / "data")}
        fleet: list[Server] = []
        try:
            for name in ("a", "b"):
                (tmp_path / name).mkdir()
                fleet.append(start_configured(tmp_path / name, config, env))
            a, b = (anthropic.Anthropic(base_url=s.base_url, api_key=s.api_key, max_retries=0) for s in fleet)
            nonce = secrets.token_hex(8)  # Redis outlives test runs: a prefix never seen before
            document = f"Run {nonce}. " + " ".join(f"Fact {i}: {i} squared is {i * i}." for i in range(170))
            system = [{"type": "text", "text": document, "cache_control": {"type": "ephemeral"}}]
            ask: dict[str, Any] = {
                "model": "claude-sonnet-4-6",
                "max_tokens": 2,
                "system": system,
                "messages": USER,
            }
            wrote = a.messages.create(**ask).usage
            read = b.messages.create(**ask).usage
            assert wrote.cache_creation_input_tokens >= 1024 and wrote.cache_read_input_tokens == 0
            assert read.cache_read_input_tokens == wrote.cache_creation_input_tokens
            assert read.cache_creation_input_tokens == 0
            requests = [
                {
                    "custom_id": f"r{i}",
                    "params": {"model": "claude-sonnet-4-6", "max_tokens": 3, "messages": USER},
                }
                for i in range(4)
            ]
            batch = a.messages.batches.create(requests=requests)  # type: ignore[arg-type]
            wait_until_ended(b, batch.id)  # served by either, read on the other
            results = list(b.messages.batches.results(batch.id))
            assert sorted(line.custom_id for line in results) == ["r0", "r1", "r2", "r3"]
            assert all(line.result.type == "succeeded" for line in results)
        finally:
            for server in fleet:
                stop_server(server)
