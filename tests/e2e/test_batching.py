"""Continuous batching through a real server and the official SDK: concurrent streams, a bounded
queue that answers 529 with retry-after, and no KV cells left behind by clients that leave."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from typing import Any

import anthropic
import httpx
import pytest

from tests.conftest import HEADERS, Server, start_server, stop_server

# Two slots and a queue of one; finished requests keep no cells, so an idle engine holds none.
ENGINE = {"default": {"slots": 2, "max_queue": 1, "leftover_ttl": 0}}
COUNTING: Any = [
    {"role": "user", "content": "Count from 1 to 1000, separated by commas."},
    {"role": "assistant", "content": "1, 2, 3, 4, 5, 6, 7, 8, 9, 10,"},
]


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SIJO_", "ANTHROPIC_"))}
    running = start_server(tmp_path_factory.mktemp("batching"), {**env, "SIJO_ENGINES": json.dumps(ENGINE)})
    yield running
    stop_server(running)


def client_for(server: Server) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.base_url, api_key=server.api_key, max_retries=0)


def engine(server: Server) -> dict[str, Any]:
    status = httpx.get(f"{server.base_url}/sijo/status", headers=HEADERS).json()
    return dict(status["engines"]["default"])


def wait_for(server: Server, **expected: int) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        state = engine(server)
        if all(state[k] == v for k, v in expected.items()):
            return state
        time.sleep(0.05)
    raise AssertionError(f"engine never reached {expected}: {engine(server)}")


def test_concurrent_streams_share_the_slots_and_all_finish(small: Server) -> None:
    client = client_for(small)
    questions = ["Name a fruit.", "Name a colour.", "Name an animal."]  # two run, one waits

    def ask(question: str) -> anthropic.types.Message:
        with client.messages.stream(
            model="claude-haiku-4-5", max_tokens=24, messages=[{"role": "user", "content": question}]
        ) as stream:
            return stream.get_final_message()

    with ThreadPoolExecutor(3) as pool:
        messages = list(pool.map(ask, questions))
    for message in messages:
        assert message.stop_reason in {"end_turn", "max_tokens"}
        assert 1 <= message.usage.output_tokens <= 24
    wait_for(small, running=0, waiting=0, kv_cells_used=0)


def test_a_full_queue_is_a_529_with_retry_after_and_leavers_free_their_cells(small: Server) -> None:
    client = client_for(small)
    with ExitStack() as streams:
        for _ in range(3):  # fills both slots and the queue
            streams.enter_context(
                client.messages.stream(
                    model="claude-haiku-4-5", max_tokens=2000, messages=COUNTING, extra_body={"temperature": 0}
                )
            )
        wait_for(small, running=2, waiting=1)
        with pytest.raises(anthropic.OverloadedError) as refused:
            client.messages.create(model="claude-haiku-4-5", max_tokens=4, messages=COUNTING)
        assert refused.value.status_code == 529
        assert refused.value.response.headers["retry-after"] == "1"
        assert refused.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]
        assert engine(small)["kv_cells_used"] > 0
    # the three clients left mid-generation: their slots, queue place and cells are free again
    wait_for(small, running=0, waiting=0, kv_cells_used=0)
    message = client.messages.create(model="claude-haiku-4-5", max_tokens=4, messages=COUNTING)
    assert message.usage.output_tokens >= 1
