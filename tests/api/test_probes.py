"""/healthz, /readyz and /metrics (issue 14, part 4): what a load balancer and Prometheus read.

/metrics is parsed with the Prometheus client's own parser, as a scraper would read it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from sijo.app import create_app
from sijo.config import Settings
from sijo.engines.fake import FakeEngine
from tests.conftest import HEADERS

BODY = {"model": "claude-sonnet-4-6", "max_tokens": 16, "messages": [{"role": "user", "content": "Hi"}]}


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return found[(name, frozenset(labels.items()))]


async def test_healthz_and_readyz(client: httpx.AsyncClient) -> None:
    health = await client.get("/healthz")
    ready = await client.get("/readyz")
    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    assert (ready.status_code, ready.json()) == (200, {"status": "ok"})


async def test_readyz_is_503_when_no_model_has_a_healthy_engine(
    client: httpx.AsyncClient, engine: FakeEngine
) -> None:
    engine.healthy = False  # an upstream engine whose servers all fail
    ready = await client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["problems"] == ["engines: no model has a healthy engine"]
    engine.healthy = True
    assert (await client.get("/readyz")).status_code == 200


async def test_metrics_count_requests_tokens_and_timings(
    client: httpx.AsyncClient, engine: FakeEngine
) -> None:
    engine.enqueue(["Hello", " there", "."])
    reply = await client.post("/v1/messages", json=BODY)
    assert reply.status_code == 200
    usage = reply.json()["usage"]
    missing = await client.get("/v1/files/file_nope")
    assert missing.status_code == 404
    scraped = await client.get("/metrics")
    assert scraped.status_code == 200 and scraped.headers["content-type"].startswith("text/plain")
    found = samples(scraped.text)
    route = {"method": "POST", "route": "/v1/messages", "status": "200"}
    assert value(found, "sijo_http_requests_total", **route) == 1
    # By template, never the raw path: one series for every file id.
    assert (
        value(found, "sijo_http_requests_total", method="GET", route="/v1/files/{file_id}", status="404") == 1
    )
    model = {"model": "claude-sonnet-4-6"}
    assert value(found, "sijo_tokens_total", kind="input", **model) == usage["input_tokens"]
    assert value(found, "sijo_tokens_total", kind="output", **model) == usage["output_tokens"] == 4
    assert value(found, "sijo_time_to_first_token_seconds_count", **model) == 1
    assert value(found, "sijo_decode_seconds_per_token_count", **model) == 1
    assert value(found, "sijo_engine_running", engine="default") == 0
    assert value(found, "sijo_engine_requests", engine="default") == 1


@pytest.fixture
async def keyed(engine: FakeEngine) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(Settings(api_keys=["sk-metrics"]), engines={"default": engine})
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://sijo.localhost", headers=HEADERS
        ) as c:
            yield c


async def test_metrics_need_a_key_where_keys_are_set_and_probes_do_not(keyed: httpx.AsyncClient) -> None:
    assert (await keyed.get("/metrics")).status_code == 401
    assert (await keyed.get("/metrics", headers={"authorization": "Bearer sk-metrics"})).status_code == 200
    assert (await keyed.get("/healthz")).status_code == 200
    assert (await keyed.get("/readyz")).status_code == 200
