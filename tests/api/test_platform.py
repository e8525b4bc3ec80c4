"""Batches, keys, the Admin API and rate limits in-process, over the fake engine, with injectable
clocks: expiry after 24 hours, cancel, workspace isolation, admin-only endpoints, 429s."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from sijo.app import create_app
from sijo.config import BatchConfig, Settings
from sijo.engines.fake import FakeEngine
from sijo.ratelimit import LocalRateLimiter
from sijo.store.db import connect, migrate
from sijo.store.keys import KeyLimits, KeyStore

VERSION = {"anthropic-version": "2023-06-01"}


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def seconds(self) -> float:
        return self.now.timestamp()


@dataclass
class Platform:
    app: FastAPI
    clock: Clock
    engine: FakeEngine
    keys: dict[str, str]  # name → secret

    def client(self, key: str) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=self.app)
        headers = {**VERSION, "x-api-key": self.keys[key]}
        return httpx.AsyncClient(transport=transport, base_url="http://sijo.localhost", headers=headers)


@pytest.fixture
async def platform(tmp_path: Path) -> AsyncIterator[Platform]:
    settings = Settings(data_dir=tmp_path, batches=BatchConfig(concurrency=1))
    database = connect(settings.database)
    migrate(database)
    store = KeyStore(database)
    keys = {
        "a": store.create("a", workspace="alpha")[1],
        "b": store.create("b", workspace="beta")[1],
        "slow": store.create("slow", workspace="alpha", limits=KeyLimits(requests_per_minute=2))[1],
        "tokens": store.create("tokens", workspace="gamma", limits=KeyLimits(input_tokens_per_minute=10_000))[1],
        "admin": store.create("ops", kind="admin")[1],
    }
    database.dispose()
    clock = Clock()
    engine = FakeEngine(delay=0.01)
    app = create_app(settings, engines={"default": engine}, clock=clock, limiter=LocalRateLimiter(clock.seconds))
    async with app.router.lifespan_context(app):
        yield Platform(app, clock, engine, keys)


def request(custom_id: str, model: str = "claude-sonnet-4-6") -> dict[str, Any]:
    params = {"model": model, "max_tokens": 50, "messages": [{"role": "user", "content": "Hi"}]}
    return {"custom_id": custom_id, "params": params}


async def running(engine: FakeEngine) -> None:
    for _ in range(500):
        if engine.active:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the batch worker started nothing")


async def ended(client: httpx.AsyncClient, batch_id: str) -> dict[str, Any]:
    for _ in range(500):
        batch: dict[str, Any] = (await client.get(f"/v1/messages/batches/{batch_id}")).json()
        if batch["processing_status"] == "ended":
            return batch
        await asyncio.sleep(0.02)
    raise AssertionError(f"batch {batch_id} did not end: {batch}")


async def results(client: httpx.AsyncClient, batch: dict[str, Any]) -> dict[str, dict[str, Any]]:
    response = await client.get(batch["results_url"])
    assert response.status_code == 200
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert len({line["custom_id"] for line in lines}) == len(lines)
    return {line["custom_id"]: line["result"] for line in lines}


async def test_unfinished_requests_expire_after_24_hours(platform: Platform) -> None:
    platform.engine.enqueue(["x"] * 200)  # the first request runs ~2 s, the others wait behind it
    async with platform.client("a") as client:
        created = (await client.post("/v1/messages/batches", json={"requests": [request(f"r{i}") for i in range(3)]})).json()
        assert created["expires_at"] == "2026-11-25T12:00:00Z" and created["request_counts"]["processing"] == 3
        await running(platform.engine)
        platform.clock.now += timedelta(hours=24, seconds=1)
        platform.app.state.batch_worker.wake()
        batch = await ended(client, created["id"])
        answers = await results(client, batch)
    assert answers["r0"]["type"] == "succeeded"  # it was running: it finishes
    assert [answers[c]["type"] for c in ("r1", "r2")] == ["expired", "expired"]
    assert batch["request_counts"] == {"processing": 0, "succeeded": 1, "errored": 0, "canceled": 0, "expired": 2}


async def test_cancel_settles_unstarted_requests(platform: Platform) -> None:
    platform.engine.enqueue(["x"] * 200)
    async with platform.client("a") as client:
        created = (await client.post("/v1/messages/batches", json={"requests": [request(f"r{i}") for i in range(4)]})).json()
        await running(platform.engine)
        canceling = (await client.post(f"/v1/messages/batches/{created['id']}/cancel")).json()
        assert canceling["processing_status"] == "canceling" and canceling["cancel_initiated_at"] is not None
        deleting = await client.delete(f"/v1/messages/batches/{created['id']}")
        assert deleting.status_code == 400 and "in progress" in deleting.json()["error"]["message"]
        batch = await ended(client, created["id"])
        answers = await results(client, batch)
        assert sorted(a["type"] for a in answers.values()) == ["canceled"] * 3 + ["succeeded"]
        deleted = (await client.delete(f"/v1/messages/batches/{created['id']}")).json()
        assert deleted == {"id": created["id"], "type": "message_batch_deleted"}


async def test_invalid_requests_error_and_the_rest_succeed(platform: Platform) -> None:
    bad_params = {"custom_id": "bad", "params": {"model": "claude-sonnet-4-6", "messages": []}}
    streaming = request("streaming") | {"params": request("s")["params"] | {"stream": True}}
    body = {"requests": [request("ok"), request("unknown", model="no-such-model"), bad_params, streaming]}
    async with platform.client("a") as client:
        created = (await client.post("/v1/messages/batches", json=body)).json()
        answers = await results(client, await ended(client, created["id"]))
    assert answers["ok"]["message"]["usage"]["service_tier"] == "batch"
    assert answers["unknown"]["error"]["error"]["type"] == "not_found_error"
    assert answers["bad"]["error"]["error"]["message"].startswith("max_tokens:")
    assert answers["streaming"]["error"]["error"]["message"].startswith("stream:")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"requests": []}, "requests"),
        ({"requests": [request("same"), request("same")]}, "requests.1.custom_id"),
        ({"requests": [request("no spaces allowed")]}, "requests.0.custom_id"),
    ],
)
async def test_a_bad_batch_is_a_400_naming_the_field(platform: Platform, body: Any, field: str) -> None:
    async with platform.client("a") as client:
        response = await client.post("/v1/messages/batches", json=body)
    assert response.status_code == 400 and response.json()["error"]["message"].startswith(f"{field}:")


async def test_batches_are_invisible_to_other_workspaces(platform: Platform) -> None:
    async with platform.client("a") as a, platform.client("b") as b, platform.client("slow") as same:
        created = (await a.post("/v1/messages/batches", json={"requests": [request("r")]})).json()
        path = f"/v1/messages/batches/{created['id']}"
        for response in [await b.get(path), await b.get(f"{path}/results"), await b.post(f"{path}/cancel"), await b.delete(path)]:
            assert response.status_code == 404 and response.json()["error"]["type"] == "not_found_error"
        assert (await b.get("/v1/messages/batches")).json()["data"] == []
        assert (await same.get(path)).status_code == 200  # another key of the same workspace sees it


async def test_rate_limit_refuses_with_retry_after_then_refills(platform: Platform) -> None:
    body = {"model": "claude-sonnet-4-6", "max_tokens": 5, "messages": [{"role": "user", "content": "Hi"}]}
    async with platform.client("slow") as client:
        first = await client.post("/v1/messages", json=body)
        assert first.headers["anthropic-ratelimit-requests-limit"] == "2"
        assert first.headers["anthropic-ratelimit-requests-remaining"] == "1"
        assert (await client.post("/v1/messages", json=body)).status_code == 200
        refused = await client.post("/v1/messages", json=body)
        assert refused.status_code == 429 and refused.json()["error"]["type"] == "rate_limit_error"
        assert refused.headers["retry-after"] == "30" and refused.headers["x-should-retry"] == "true"
        assert "2 requests per minute" in refused.json()["error"]["message"]
        platform.clock.now += timedelta(seconds=30)
        assert (await client.post("/v1/messages", json=body)).status_code == 200


async def test_input_token_limits_do_not_count_cache_reads(platform: Platform) -> None:
    system = [{"type": "text", "text": "x" * 2000, "cache_control": {"type": "ephemeral"}}]
    body = {"model": "claude-sonnet-4-6", "max_tokens": 5, "system": system, "messages": [{"role": "user", "content": "Hi"}]}
    async with platform.client("tokens") as client:
        first = await client.post("/v1/messages", json=body)
        second = await client.post("/v1/messages", json=body)
    usage = second.json()["usage"]
    assert usage["cache_read_input_tokens"] == first.json()["usage"]["cache_creation_input_tokens"] > 2000
    left = [int(r.headers["anthropic-ratelimit-input-tokens-remaining"]) for r in (first, second)]
    assert left[0] == 10_000 - sum(first.json()["usage"][k] for k in ("input_tokens", "cache_creation_input_tokens"))
    assert left[1] == left[0] - usage["input_tokens"]  # the cached 2000+ tokens were given back


async def test_every_response_to_a_known_caller_carries_its_rate_limits(platform: Platform) -> None:
    async with platform.client("slow") as client:
        for response in [
            await client.get("/v1/models"),
            await client.get("/v1/messages/batches"),
            await client.get("/v1/messages/batches/msgbatch_nope"),  # errors too
        ]:
            assert response.headers["anthropic-ratelimit-requests-limit"] == "2"
            assert response.headers["anthropic-ratelimit-requests-remaining"] == "2"  # reading takes nothing
        body = {"model": "claude-sonnet-4-6", "max_tokens": 5, "stream": True, "messages": [{"role": "user", "content": "Hi"}]}
        async with client.stream("POST", "/v1/messages", json=body) as streamed:
            assert streamed.headers["anthropic-ratelimit-requests-remaining"] == "1"  # a message takes one
            assert streamed.headers["content-type"].startswith("text/event-stream")


async def test_batches_count_against_the_keys_limits(platform: Platform) -> None:
    platform.engine.enqueue(["x"] * 200)  # the first request runs ~2 s: the rest stay queued
    platform.app.state.settings.rate_limits.batch_queue_requests = 5
    async with platform.client("slow") as client:  # 2 requests per minute
        first = await client.post("/v1/messages/batches", json={"requests": [request(f"r{i}") for i in range(4)]})
        assert first.status_code == 200 and first.headers["anthropic-ratelimit-requests-remaining"] == "1"
        queue = await client.post("/v1/messages/batches", json={"requests": [request(f"q{i}") for i in range(2)]})
        assert queue.status_code == 429 and queue.json()["error"]["message"].startswith(
            "This batch of 2 requests would exceed the limit of 5 batch requests"
        )
        assert queue.headers["retry-after"] == "60"
        rpm = await client.post("/v1/messages/batches", json={"requests": [request("r")]})
        assert rpm.status_code == 429 and "2 requests per minute" in rpm.json()["error"]["message"]
        await client.post(f"/v1/messages/batches/{first.json()['id']}/cancel")


async def test_batch_limits_and_the_public_url(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path, public_url="https://sijo.example.com/", batches=BatchConfig(max_requests=2, max_bytes=4096)
    )
    app = create_app(settings, engines={"default": FakeEngine()})
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://sijo.localhost", headers=VERSION) as client:
            many = await client.post("/v1/messages/batches", json={"requests": [request(f"r{i}") for i in range(3)]})
            assert many.status_code == 400 and many.json()["error"]["message"].startswith("requests: a batch holds at most 2")
            big = [request("r0") | {"params": request("r0")["params"] | {"system": "x" * 5000}}]
            large = await client.post("/v1/messages/batches", json={"requests": big})
            assert large.status_code == 413 and large.json()["error"]["type"] == "request_too_large"
            created = (await client.post("/v1/messages/batches", json={"requests": [request("r0")]})).json()
            batch = await ended(client, created["id"])
    assert batch["results_url"] == f"https://sijo.example.com/v1/messages/batches/{created['id']}/results"


async def test_admin_api_lists_and_deactivates_keys(platform: Platform) -> None:
    async with platform.client("admin") as admin, platform.client("a") as a:
        listed = (await admin.get("/v1/organizations/api_keys", params={"limit": 2})).json()
        assert [k["name"] for k in listed["data"]] == ["tokens", "slow"] and listed["has_more"]
        everything = (await admin.get("/v1/organizations/api_keys")).json()["data"]
        key = next(k for k in everything if k["name"] == "a")
        assert key["type"] == "api_key" and key["status"] == "active" and key["workspace_id"].startswith("wrkspc_")
        assert platform.keys["a"] not in str(everything) and key["partial_key_hint"].endswith(platform.keys["a"][-4:])
        assert (await a.get("/v1/models")).status_code == 200
        updated = (await admin.post(f"/v1/organizations/api_keys/{key['id']}", json={"status": "inactive"})).json()
        assert updated["status"] == "inactive"
        revoked = await a.get("/v1/models")
        assert revoked.status_code == 401 and revoked.json()["error"]["message"] == "invalid x-api-key"
        forbidden = await a.get("/v1/organizations/api_keys")
        assert forbidden.status_code == 401  # a revoked key is no key at all
        assert (await admin.get("/v1/organizations/api_keys/apikey_nope")).status_code == 404


async def test_api_keys_cannot_use_the_admin_api_nor_admin_keys_the_messages_api(platform: Platform) -> None:
    async with platform.client("b") as b, platform.client("admin") as admin:
        refused = await b.get("/v1/organizations/api_keys")
        assert refused.status_code == 403 and refused.json()["error"]["type"] == "permission_error"
        assert (await admin.get("/v1/models")).status_code == 401
    transport = httpx.ASGITransport(app=platform.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://sijo.localhost", headers=VERSION) as anonymous:
        assert (await anonymous.get("/v1/organizations/api_keys")).status_code == 401
        assert (await anonymous.get("/v1/models")).status_code == 401  # keys exist: every request needs one
