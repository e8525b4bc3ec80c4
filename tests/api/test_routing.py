"""Model routes: a model id served by an ordered list of engines (`ModelConfig.engine` as a list).

The first healthy engine serves; one that fails (`UpstreamUnavailableError`) before any output hands
the request to the next, and nothing of the failed attempt reaches the client or the usage ledger;
one that fails after its output started ends the stream with an `error` event.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from sijo.app import create_app
from sijo.config import ModelConfig, Settings
from sijo.engines.base import GenerationChunk, GenerationRequest
from sijo.engines.fake import FakeEngine
from sijo.errors import UpstreamUnavailableError
from sijo.usage import UsageRecord
from tests.api.test_messages import parse_sse
from tests.conftest import HEADERS

ROUTED = "claude-sonnet-4-6"  # engines a, then b
SOLO = "solo"  # engine a only
B_REPLY = ("Answer", " from", " b.")


def body(model: str = ROUTED, *, stream: bool = False) -> dict[str, Any]:
    return {
        "model": model,
        "max_tokens": 50,
        "messages": [{"role": "user", "content": "Which engine are you?"}],
        "stream": stream,
    }


class DownEngine(FakeEngine):
    """Reports itself healthy, but every generation fails before its first token."""

    async def generate(self, request: GenerationRequest) -> AsyncGenerator[GenerationChunk, None]:
        self.requests.append(request)
        raise UpstreamUnavailableError("engine a: connection refused")
        yield GenerationChunk("", 0)  # pragma: no cover (makes this a generator)


class FailingMidway(FakeEngine):
    """Writes one piece, then goes away."""

    async def generate(self, request: GenerationRequest) -> AsyncGenerator[GenerationChunk, None]:
        self.requests.append(request)
        yield GenerationChunk("Partial", 1)
        raise UpstreamUnavailableError("engine a went away mid-reply")


@asynccontextmanager
async def serving(
    a: FakeEngine, b: FakeEngine, tmp_path: Path
) -> AsyncIterator[tuple[httpx.AsyncClient, FastAPI]]:
    settings = Settings(
        data_dir=tmp_path,  # a database (usage ledger) of this test's own
        models=[ModelConfig(id=ROUTED, engine=["a", "b"]), ModelConfig(id=SOLO, engine="a")],
    )
    app = create_app(settings, engines={"a": a, "b": b})
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://sijo.localhost", headers=HEADERS
        ) as c:
            yield c, app


async def ledger(app: FastAPI) -> list[UsageRecord]:
    await app.state.ledger.flush()
    now = datetime.now(UTC)
    records: list[UsageRecord] = app.state.ledger.records(
        now - timedelta(minutes=5), now + timedelta(minutes=1)
    )
    return records


def b_engine() -> FakeEngine:
    b = FakeEngine()
    b.enqueue(B_REPLY)
    return b


def names(events: list[tuple[str, dict[str, Any]]]) -> list[str]:
    return [name for name, _ in events]


def streamed_text(events: list[tuple[str, dict[str, Any]]]) -> str:
    return "".join(
        data["delta"]["text"]
        for name, data in events
        if name == "content_block_delta" and data["delta"]["type"] == "text_delta"
    )


def assert_complete_stream(events: list[tuple[str, dict[str, Any]]]) -> None:
    kinds = names(events)
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop", kinds
    assert kinds.count("message_start") == 1 and kinds.count("message_stop") == 1, kinds
    assert "error" not in kinds


# The first healthy engine serves.


async def test_an_unhealthy_first_engine_is_skipped(tmp_path: Path) -> None:
    a, b = FakeEngine(), b_engine()
    a.healthy = False
    async with serving(a, b, tmp_path) as (client, _app):
        response = await client.post("/v1/messages", json=body())
    assert response.status_code == 200, response.text
    message = response.json()
    assert message["model"] == ROUTED
    assert message["content"] == [{"type": "text", "text": "".join(B_REPLY)}]
    assert message["stop_reason"] == "end_turn"
    assert a.requests == [] and len(b.requests) == 1
    assert message["usage"]["input_tokens"] == len(b.requests[0].tokens)


async def test_an_unhealthy_first_engine_is_skipped_when_streaming(tmp_path: Path) -> None:
    a, b = FakeEngine(), b_engine()
    a.healthy = False
    async with serving(a, b, tmp_path) as (client, _app):
        response = await client.post("/v1/messages", json=body(stream=True))
    assert response.status_code == 200, response.text
    events = parse_sse(response.text)
    assert_complete_stream(events)
    assert streamed_text(events) == "".join(B_REPLY)
    assert events[0][1]["message"]["model"] == ROUTED
    assert a.requests == [] and len(b.requests) == 1


async def test_a_healthy_first_engine_serves(tmp_path: Path) -> None:
    a, b = FakeEngine(), b_engine()
    a.enqueue(["From a."])
    async with serving(a, b, tmp_path) as (client, _app):
        response = await client.post("/v1/messages", json=body())
    assert response.status_code == 200, response.text
    assert response.json()["content"][0]["text"] == "From a."
    assert len(a.requests) == 1 and b.requests == []


async def test_when_no_engine_is_healthy_the_first_is_tried(tmp_path: Path) -> None:
    a, b = FakeEngine(), b_engine()
    a.healthy = b.healthy = False
    a.enqueue(["From a."])
    async with serving(a, b, tmp_path) as (client, _app):
        response = await client.post("/v1/messages", json=body())
    assert response.status_code == 200, response.text
    assert response.json()["content"][0]["text"] == "From a."
    assert len(a.requests) == 1 and b.requests == []


# A failure before any output: the next engine takes the request over.


async def test_a_failure_before_output_falls_back(tmp_path: Path) -> None:
    a, b = DownEngine(), b_engine()
    async with serving(a, b, tmp_path) as (client, app):
        response = await client.post("/v1/messages", json=body())
        records = await ledger(app)
    assert response.status_code == 200, response.text
    message = response.json()
    assert message["content"] == [{"type": "text", "text": "".join(B_REPLY)}]
    assert len(a.requests) == 1 and len(b.requests) == 1
    # Billed once, for b's attempt only: its prompt and its output (3 pieces and the end token).
    assert message["usage"]["input_tokens"] == len(b.requests[-1].tokens)
    assert message["usage"]["output_tokens"] == len(B_REPLY) + 1
    (record,) = records
    assert record.model == ROUTED
    assert record.uncached_input_tokens == len(b.requests[-1].tokens)
    assert record.output_tokens == message["usage"]["output_tokens"]


async def test_a_failure_before_output_falls_back_when_streaming(tmp_path: Path) -> None:
    a, b = DownEngine(), b_engine()
    async with serving(a, b, tmp_path) as (client, app):
        response = await client.post("/v1/messages", json=body(stream=True))
        records = await ledger(app)
    assert response.status_code == 200, response.text
    events = parse_sse(response.text)
    assert_complete_stream(events)  # one message_start: the failed attempt sent nothing
    assert streamed_text(events) == "".join(B_REPLY)
    assert len(a.requests) == 1 and len(b.requests) == 1
    start = events[0][1]["message"]
    assert start["usage"]["input_tokens"] == len(b.requests[-1].tokens)
    (final,) = [data for name, data in events if name == "message_delta"]
    assert final["usage"]["output_tokens"] == len(B_REPLY) + 1
    assert len(records) == 1 and records[0].uncached_input_tokens == len(b.requests[-1].tokens)


async def test_a_model_whose_only_engine_fails_is_overloaded(tmp_path: Path) -> None:
    a, b = DownEngine(), b_engine()
    async with serving(a, b, tmp_path) as (client, app):
        response = await client.post("/v1/messages", json=body(SOLO))
        records = await ledger(app)
    assert response.status_code == 529, response.text
    error = response.json()
    assert error["type"] == "error"
    assert error["error"]["type"] == "overloaded_error"
    assert "engine a" in error["error"]["message"]
    assert error["request_id"] == response.headers["request-id"]
    assert len(a.requests) == 1 and b.requests == []
    assert records == []  # nothing was generated, nothing is billed


async def test_a_model_whose_only_engine_fails_is_overloaded_when_streaming(tmp_path: Path) -> None:
    """A lone local engine's stream is not held back, so its failure is an `error` event."""
    a, b = DownEngine(), b_engine()
    async with serving(a, b, tmp_path) as (client, app):
        response = await client.post("/v1/messages", json=body(SOLO, stream=True))
        records = await ledger(app)
    assert response.status_code == 200, response.text
    events = parse_sse(response.text)
    kinds = names(events)
    assert kinds[-1] == "error" and "message_stop" not in kinds, kinds
    error = events[-1][1]
    assert error["error"]["type"] == "overloaded_error" and "engine a" in error["error"]["message"]
    assert b.requests == []
    assert records == []


# A failure after the output started: too late to hand over.


async def test_a_failure_after_output_is_an_error_event(tmp_path: Path) -> None:
    a, b = FailingMidway(), b_engine()
    async with serving(a, b, tmp_path) as (client, _app):
        response = await client.post("/v1/messages", json=body(stream=True))
    assert response.status_code == 200, response.text
    events = parse_sse(response.text)
    kinds = names(events)
    assert kinds[0] == "message_start" and kinds.count("message_start") == 1, kinds
    assert streamed_text(events) == "Partial"  # what a wrote reached the client
    assert kinds[-1] == "error" and "message_stop" not in kinds, kinds
    error = events[-1][1]
    assert error["error"]["type"] == "overloaded_error"
    assert "went away" in error["error"]["message"]
    assert len(a.requests) == 1 and b.requests == []


async def test_a_failure_after_output_fails_a_non_streaming_request(tmp_path: Path) -> None:
    a, b = FailingMidway(), b_engine()
    async with serving(a, b, tmp_path) as (client, _app):
        response = await client.post("/v1/messages", json=body())
    assert response.status_code == 529, response.text
    error = response.json()
    assert error["type"] == "error" and error["error"]["type"] == "overloaded_error"
    assert len(a.requests) == 1 and b.requests == []


# The catalogue.


async def test_a_routed_model_is_listed_once(tmp_path: Path) -> None:
    async with serving(FakeEngine(), FakeEngine(), tmp_path) as (client, _app):
        response = await client.get("/v1/models")
        single = await client.get(f"/v1/models/{ROUTED}")
    assert response.status_code == 200, response.text
    ids = [model["id"] for model in response.json()["data"]]
    assert ids.count(ROUTED) == 1 and ids.count(SOLO) == 1
    assert sorted(ids) == sorted({ROUTED, SOLO})
    assert single.status_code == 200 and single.json()["id"] == ROUTED
