"""Auth, models paging, keep-alive pings and cancellation, in process over the fake engine."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from sijo.app import create_app
from sijo.config import Settings
from sijo.engines.fake import FakeEngine
from sijo.protocol.params import MessageCreateParams
from sijo.service import MessagesService

BODY: dict[str, Any] = {
    "model": "claude-sonnet-4-6",
    "max_tokens": 50,
    "messages": [{"role": "user", "content": "hi"}],
}


@pytest.fixture
async def keyed(engine: FakeEngine) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(Settings(api_keys=["sk-one", "sk-two"]), engines={"default": engine})
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://localhost"
        ) as c:
            yield c


@pytest.mark.parametrize(
    ("headers", "status", "message"),
    [
        ({"anthropic-version": "2023-06-01"}, 401, "x-api-key header is required"),
        ({"anthropic-version": "2023-06-01", "x-api-key": "sk-three"}, 401, "invalid x-api-key"),
        ({"anthropic-version": "2023-06-01", "authorization": "Bearer sk-nope"}, 401, "invalid x-api-key"),
        ({"x-api-key": "sk-one"}, 400, "anthropic-version: header is required"),
    ],
)
async def test_auth_failures(
    keyed: httpx.AsyncClient, headers: dict[str, str], status: int, message: str
) -> None:
    response = await keyed.post("/v1/messages", json=BODY, headers=headers)
    assert response.status_code == status
    assert response.json()["error"]["message"] == message
    assert response.headers["x-should-retry"] == "false"


@pytest.mark.parametrize("auth", [{"x-api-key": "sk-two"}, {"authorization": "Bearer sk-one"}])
async def test_auth_accepts_either_header(keyed: httpx.AsyncClient, auth: dict[str, str]) -> None:
    response = await keyed.get("/v1/models", headers={"anthropic-version": "2023-06-01", **auth})
    assert response.status_code == 200


async def test_models_paging(client: httpx.AsyncClient) -> None:
    everything = (await client.get("/v1/models")).json()
    ids = [m["id"] for m in everything["data"]]
    assert ids == ["fake", "claude-opus-4-7", "claude-sonnet-4-6", "claude-haiku-4-5-20251001"]
    assert everything["has_more"] is False and everything["first_id"] == "fake"
    first = (await client.get("/v1/models", params={"limit": 2})).json()
    assert [m["id"] for m in first["data"]] == ids[:2] and first["has_more"] is True
    second = (await client.get("/v1/models", params={"limit": 2, "after_id": first["last_id"]})).json()
    assert [m["id"] for m in second["data"]] == ids[2:] and second["has_more"] is False
    back = (await client.get("/v1/models", params={"limit": 1, "before_id": second["first_id"]})).json()
    assert [m["id"] for m in back["data"]] == [ids[1]] and back["has_more"] is True
    bad = await client.get("/v1/models", params={"limit": 0})
    assert bad.status_code == 400 and bad.json()["error"]["message"].startswith("limit:")


async def test_model_retrieve_by_alias_and_unknown(client: httpx.AsyncClient) -> None:
    info = (await client.get("/v1/models/claude-haiku-4-5")).json()
    assert info["id"] == "claude-haiku-4-5-20251001" and info["type"] == "model"
    assert info["capabilities"]["thinking"]["supported"] is True
    assert info["capabilities"]["image_input"]["supported"] is False
    missing = await client.get("/v1/models/claude-nope")
    assert missing.status_code == 404 and missing.json()["error"]["message"] == "model: claude-nope"


async def test_quiet_streams_get_pings() -> None:
    slow = FakeEngine(delay=0.12)
    slow.enqueue(["a", "b"])
    app = create_app(Settings(ping_interval=0.05), engines={"default": slow})
    async with app.router.lifespan_context(app):
        headers = {"anthropic-version": "2023-06-01"}
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://localhost"
        ) as c:
            text = (await c.post("/v1/messages", json={**BODY, "stream": True}, headers=headers)).text
    assert text.count("event: ping") >= 3  # one after message_start, more while the engine is quiet


async def test_closing_the_stream_cancels_the_generation() -> None:
    slow = FakeEngine(delay=0.05)
    slow.enqueue(["x"] * 1000)
    app = create_app(Settings(), engines={"default": slow})
    async with app.router.lifespan_context(app):
        service: MessagesService = app.state.service
        params = MessageCreateParams.model_validate({**BODY, "max_tokens": 1000})
        events = service.stream(await service.prepare(params))
        seen = [(await anext(events)).type for _ in range(4)]
        assert seen[-1] == "content_block_delta" and slow.active == 1
        await events.aclose()
    assert slow.active == 0 and slow.cancelled == 1


class BrokenEngine(FakeEngine):
    async def generate(self, _request: Any) -> Any:  # type: ignore[override]
        raise RuntimeError("engine fault")
        yield  # pragma: no cover - makes this an async generator


async def test_an_engine_fault_is_a_500_with_its_request_id() -> None:
    app = create_app(Settings(), engines={"default": BrokenEngine()})
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        headers = {"anthropic-version": "2023-06-01"}
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost", headers=headers) as c:
            plain = await c.post("/v1/messages", json=BODY)
            streamed = await c.post("/v1/messages", json={**BODY, "stream": True})
    assert plain.status_code == 500
    assert plain.json()["error"] == {"type": "api_error", "message": "Internal server error"}
    assert plain.json()["request_id"] == plain.headers["request-id"]
    last_name, last_data = streamed.text.strip().split("\n\n")[-1].split("\n")
    assert streamed.status_code == 200 and last_name == "event: error"
    error = json.loads(last_data.removeprefix("data: "))
    assert error["error"]["type"] == "api_error" and error["request_id"] == streamed.headers["request-id"]


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/v1/nope", "Not found: POST /v1/nope"),
        (
            "/v1/v1/messages",
            "Not found: POST /v1/v1/messages (the base URL already ends in /v1: drop it, clients add /v1 themselves)",
        ),
    ],
)
async def test_an_unknown_path_is_a_404_that_names_it(
    client: httpx.AsyncClient, path: str, message: str
) -> None:
    response = await client.post(path, json=BODY)
    assert response.status_code == 404
    assert response.json()["error"] == {"type": "not_found_error", "message": message}
