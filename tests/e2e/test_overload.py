"""Under overload a streaming request is refused with a 529 before its response starts, or served to
the end: never a 200 followed by an SSE `overloaded_error` (the SDK could not retry that)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import anthropic
import httpx
import pytest

from tests.conftest import HEADERS, Server, start_configured, stop_server


@pytest.fixture(scope="module")
def tight(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    config = "[engines.default]\ncontext_window = 256\nslots = 1\nmax_queue = 1\n"
    running = start_configured(tmp_path_factory.mktemp("overload"), config)
    yield running
    stop_server(running)


def _one(server: Server) -> str:
    client = anthropic.Anthropic(base_url=server.base_url, api_key="unused", max_retries=0)
    try:
        with client.messages.stream(
            model="claude-sonnet-4-6",
            max_tokens=8,
            messages=[{"role": "user", "content": "Count from one to fifty."}],
            extra_body={"temperature": 0},
        ) as stream:
            for _ in stream:
                pass
            final = stream.get_final_message()
    except anthropic.APIStatusError as exc:
        assert exc.status_code == 529, exc
        assert exc.response.headers["retry-after"] == "1"
        return "refused"
    assert final.stop_reason in ("max_tokens", "end_turn")
    return "served"


def test_every_stream_is_refused_up_front_or_served(tight: Server) -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(lambda _: _one(tight), range(12)))
    assert "served" in outcomes and "refused" in outcomes, outcomes
    deadline = time.monotonic() + 10  # a stream releases its admission just after its last event
    while time.monotonic() < deadline:
        engine = httpx.get(f"{tight.base_url}/sijo/status", headers=HEADERS).json()["engines"]["default"]
        if engine["admitted"] == engine["running"] == engine["waiting"] == 0:
            break
        time.sleep(0.05)
    assert engine["admitted"] == engine["running"] == engine["waiting"] == 0, engine
