"""Prompt caching through a real server, the real model and the official SDK: truthful usage,
streaming and not, real KV reuse, and isolation between API keys' workspaces."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest

from tests.conftest import HEADERS, Server, start_server, stop_server

KEYS = ("cache-key-a", "cache-key-b")
DOCUMENT = (Path(__file__).parent / "guide" / "long_document.txt").read_text()


@pytest.fixture(scope="module")
def two_keys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SIJO_", "ANTHROPIC_"))}
    running = start_server(tmp_path_factory.mktemp("cache"), {**env, "SIJO_API_KEYS": ",".join(KEYS)})
    yield running
    stop_server(running)


def client_for(server: Server, key: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.base_url, api_key=key, max_retries=0)


def system(document: str) -> list[dict[str, Any]]:
    return [{"type": "text", "text": document, "cache_control": {"type": "ephemeral"}}]


def status(server: Server, key: str) -> dict[str, Any]:
    response = httpx.get(f"{server.base_url}/sijo/status", headers={**HEADERS, "x-api-key": key})
    engine: dict[str, Any] = response.json()["engines"]["default"]
    return engine


def counted(client: anthropic.Anthropic, document: str, question: str) -> int:
    messages: Any = [{"role": "user", "content": question}]
    return client.messages.count_tokens(
        model="claude-haiku-4-5", system=system(document), messages=messages  # type: ignore[arg-type]
    ).input_tokens


def total(usage: Any) -> int:
    return int(usage.input_tokens + usage.cache_creation_input_tokens + usage.cache_read_input_tokens)


def test_write_then_read_with_truthful_usage_and_real_reuse(two_keys: Server) -> None:
    client = client_for(two_keys, KEYS[0])
    document = "Document A.\n" + DOCUMENT
    first = client.messages.create(
        model="claude-haiku-4-5",
        max_tokens=4,
        system=system(document),  # type: ignore[arg-type]
        messages=[{"role": "user", "content": "Who keeps the lighthouse?"}],
    )
    written = first.usage.cache_creation_input_tokens
    assert written and written > 1024
    assert first.usage.cache_read_input_tokens == 0
    assert first.usage.cache_creation is not None
    assert first.usage.cache_creation.ephemeral_5m_input_tokens == written
    assert total(first.usage) == counted(client, document, "Who keeps the lighthouse?")

    before = status(two_keys, KEYS[0])
    question = "Who is the painter?"
    with client.messages.stream(
        model="claude-haiku-4-5",
        max_tokens=4,
        system=system(document),  # type: ignore[arg-type]
        messages=[{"role": "user", "content": question}],
    ) as stream:
        started = next(e for e in stream if e.type == "message_start").message.usage
        final = stream.get_final_message().usage
    after = status(two_keys, KEYS[0])
    for usage in (started, final):
        assert usage.cache_read_input_tokens == written
        assert usage.cache_creation_input_tokens == 0
        assert total(usage) == counted(client, document, question)
    assert started.input_tokens == final.input_tokens
    # the read was real: the engine decoded only the tokens after the cached prefix
    assert after["prompt_tokens"] - before["prompt_tokens"] <= final.input_tokens
    assert after["reused_tokens"] - before["reused_tokens"] >= written


def test_another_workspace_does_not_read_the_entry(two_keys: Server) -> None:
    document = "Document B.\n" + DOCUMENT
    mine = client_for(two_keys, KEYS[0])
    theirs = client_for(two_keys, KEYS[1])
    kwargs: dict[str, Any] = {
        "model": "claude-haiku-4-5",
        "max_tokens": 2,
        "system": system(document),
        "messages": [{"role": "user", "content": "Hello"}],
    }
    written = mine.messages.create(**kwargs).usage.cache_creation_input_tokens
    before = status(two_keys, KEYS[1])
    other = theirs.messages.create(**kwargs).usage
    after = status(two_keys, KEYS[1])
    assert other.cache_read_input_tokens == 0
    assert other.cache_creation_input_tokens == written
    # nor does it share the other workspace's KV cells: its whole prompt was computed
    assert after["prompt_tokens"] - before["prompt_tokens"] == total(other)
    assert mine.messages.create(**kwargs).usage.cache_read_input_tokens == written


def test_five_breakpoints_are_a_400(two_keys: Server) -> None:
    client = client_for(two_keys, KEYS[0])
    blocks: Any = [
        {"type": "text", "text": f"part {i}", "cache_control": {"type": "ephemeral"}} for i in range(5)
    ]
    with pytest.raises(anthropic.BadRequestError) as error:
        client.messages.create(
            model="claude-haiku-4-5", max_tokens=2, system=blocks, messages=[{"role": "user", "content": "x"}]
        )
    assert "A maximum of 4 blocks with cache_control" in str(error.value)
