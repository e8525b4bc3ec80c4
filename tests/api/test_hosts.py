"""The Host check (DNS rebinding) and browser access (CORS with the API's opt-in header), in-process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anthropic
import httpx
import httpx2
import pytest

from sijo.api.browser import OPT_IN, is_cross_origin
from sijo.api.hosts import host_name
from sijo.app import create_app
from sijo.config import Settings
from sijo.engines.fake import FakeEngine
from tests.conftest import HEADERS

LOOPBACK_PEER = ("127.0.0.1", 50000)
BODY = {"model": "claude-sonnet-4-6", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}


@asynccontextmanager
async def serving(
    settings: Settings, host: str = "localhost:8000", peer: tuple[str, int] = LOOPBACK_PEER
) -> AsyncIterator[tuple[httpx.AsyncClient, FakeEngine, Any]]:
    engine = FakeEngine()
    app = create_app(settings, engines={"default": engine})
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=peer)
        async with httpx.AsyncClient(transport=transport, base_url=f"http://{host}", headers=HEADERS) as c:
            yield c, engine, app


def refused_host(response: httpx.Response, host: str) -> None:
    assert response.status_code == 403
    body = response.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == "permission_error"
    assert repr(host) in body["error"]["message"]
    assert body["request_id"] == response.headers["request-id"]
    assert not any(name.startswith("access-control-") for name in response.headers)


# --- The Host check ---


async def test_a_rebound_name_is_refused_without_keys(tmp_path: Path) -> None:
    async with serving(Settings(data_dir=tmp_path), host="evil.example:8000") as (client, engine, _):
        refused_host(await client.get("/v1/models"), "evil.example:8000")
        refused_host(await client.post("/v1/messages", json=BODY), "evil.example:8000")
        refused_host(await client.get("/openapi.json"), "evil.example:8000")
    assert engine.requests == []


@pytest.mark.parametrize(
    "host",
    [
        "localhost",
        "localhost:8000",
        "LocalHost.:8000",
        "sijo.localhost:1",
        "127.0.0.1",
        "127.1.2.3:80",
        "[::1]:8000",
    ],
)
async def test_loopback_names_are_answered_on_any_port(tmp_path: Path, host: str) -> None:
    async with serving(Settings(data_dir=tmp_path), host=host) as (client, _, _):
        assert (await client.get("/v1/models")).status_code == 200


async def test_public_url_and_allowed_hosts_are_answered(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        public_url="https://api.example.com/sijo",
        allowed_hosts=["box.lan", "*.corp.example"],
    )
    for host in ("api.example.com", "box.lan:8000", "gpu.corp.example"):
        async with serving(settings, host=host) as (client, _, _):
            assert (await client.get("/v1/models")).status_code == 200, host
    for host in ("corp.example", "example.com", "box.lan.evil.example", "127.0.0.1.evil.example"):
        async with serving(settings, host=host) as (client, _, _):
            refused_host(await client.get("/v1/models"), host)


async def test_a_star_answers_every_name(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, allowed_hosts=["*"])
    async with serving(settings, host="anything.example") as (client, _, _):
        assert (await client.get("/v1/models")).status_code == 200


@pytest.mark.parametrize("host", ["evil.example@127.0.0.1", "127.0.0.1 evil.example", "::1", "[::1", ""])
async def test_a_malformed_host_is_refused(tmp_path: Path, host: str) -> None:
    async with serving(Settings(data_dir=tmp_path)) as (client, _, _):
        response = await client.get("/v1/models", headers={"host": host})
        refused_host(response, host)


async def test_with_keys_any_name_is_answered_unless_allowed_hosts_is_set(tmp_path: Path) -> None:
    # Bound to a wildcard with keys: names Sijo cannot know reach it, and each request needs a key.
    keyed = Settings(data_dir=tmp_path, host="0.0.0.0", api_keys=["sk-one"])
    async with serving(keyed, host="gpu-box.lan:8000") as (client, _, _):
        assert (await client.get("/v1/models", headers={"x-api-key": "sk-one"})).status_code == 200
        assert (await client.get("/v1/models")).status_code == 401
    strict = Settings(data_dir=tmp_path, host="10.0.0.5", api_keys=["sk-one"], allowed_hosts=["gpu-box.lan"])
    for host in ("gpu-box.lan", "10.0.0.5:8000", "localhost"):
        async with serving(strict, host=host) as (client, _, _):
            assert (await client.get("/v1/models", headers={"x-api-key": "sk-one"})).status_code == 200
    async with serving(strict, host="evil.example") as (client, _, _):
        refused_host(await client.get("/v1/models", headers={"x-api-key": "sk-one"}), "evil.example")


async def test_keys_made_with_the_cli_count_as_keys(tmp_path: Path) -> None:
    async with serving(Settings(data_dir=tmp_path), host="gpu-box.lan") as (client, _, app):
        refused_host(await client.get("/v1/models"), "gpu-box.lan")
        _, secret = app.state.keys.create("laptop")
        assert (await client.get("/v1/models")).status_code == 401
        assert (await client.get("/v1/models", headers={"x-api-key": secret})).status_code == 200


async def test_a_request_without_host_is_answered_only_from_loopback(tmp_path: Path) -> None:
    for peer, status in ((LOOPBACK_PEER, 200), (("192.0.2.7", 40000), 403)):
        async with serving(Settings(data_dir=tmp_path), peer=peer) as (client, _, _):
            request = client.build_request("GET", "/v1/models")
            del request.headers["host"]
            response = await client.send(request)
            assert response.status_code == status
    assert "without a Host header" in response.json()["error"]["message"]


async def test_the_sdk_sees_a_permission_error(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path), engines={"default": FakeEngine()})
    async with app.router.lifespan_context(app):
        # the SDK brings its own HTTP library (httpx2), with the same in-process transport
        async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app)) as http:
            sdk = anthropic.AsyncAnthropic(
                base_url="http://rebound.example", api_key="unused", http_client=http, max_retries=0
            )
            with pytest.raises(anthropic.PermissionDeniedError, match=r"rebound\.example"):
                await sdk.models.list()


async def test_the_lifespan_passes_through_the_middlewares(tmp_path: Path) -> None:
    # What uvicorn does (and `app.router.lifespan_context` in the other tests skips): a lifespan
    # scope has no headers, and must reach the app untouched.
    app = create_app(Settings(data_dir=tmp_path), engines={"default": FakeEngine()})
    incoming = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, receive, send)
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]


def test_allowed_hosts_come_from_the_environment_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIJO_ALLOWED_HOSTS", "box.lan, *.corp.example,")
    assert Settings().allowed_hosts == ["box.lan", "*.corp.example"]


def test_host_names_are_normalized() -> None:
    assert host_name("Example.COM.:8000") == "example.com"
    assert host_name("[0:0::1]:80") == "::1"
    assert host_name("127.0.0.1") == "127.0.0.1"
    assert host_name("a b") is None
    assert host_name("user@host") is None


# --- Browser access ---


async def test_a_cross_origin_request_must_opt_in(tmp_path: Path) -> None:
    async with serving(Settings(data_dir=tmp_path)) as (client, engine, _):
        response = await client.post("/v1/messages", json=BODY, headers={"origin": "https://page.example"})
    assert response.status_code == 401
    assert response.json()["error"] == {
        "type": "authentication_error",
        "message": "CORS requests must set 'anthropic-dangerous-direct-browser-access' header",
    }
    assert not any(name.startswith("access-control-") for name in response.headers)
    assert engine.requests == []


async def test_an_opted_in_request_can_be_read_by_the_page(tmp_path: Path) -> None:
    headers = {"origin": "https://page.example", OPT_IN: "true"}
    async with serving(Settings(data_dir=tmp_path)) as (client, _, _):
        response = await client.post("/v1/messages", json=BODY, headers=headers)
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "*"
    exposed = [name.strip() for name in response.headers["access-control-expose-headers"].split(",")]
    assert {"*", "request-id", "retry-after", "anthropic-ratelimit-requests-remaining"} <= set(exposed)


async def test_a_preflight_announcing_the_opt_in_is_answered(tmp_path: Path) -> None:
    announced = f"{OPT_IN},anthropic-version,content-type,x-api-key"
    preflight = {
        "origin": "https://page.example",
        "access-control-request-method": "POST",
        "access-control-request-headers": announced,
    }
    async with serving(Settings(data_dir=tmp_path)) as (client, _, _):
        response = await client.options("/v1/messages", headers=preflight)
        assert response.status_code == 204
        assert response.headers["access-control-allow-origin"] == "*"
        assert "POST" in response.headers["access-control-allow-methods"]
        assert response.headers["access-control-allow-headers"] == announced
        assert int(response.headers["access-control-max-age"]) > 0
        without = {**preflight, "access-control-request-headers": "anthropic-version,x-api-key"}
        refused = await client.options("/v1/messages", headers=without)
    assert refused.status_code == 401
    assert "access-control-allow-origin" not in refused.headers


async def test_same_origin_and_non_browser_requests_are_left_alone(tmp_path: Path) -> None:
    async with serving(Settings(data_dir=tmp_path), host="localhost:8000") as (client, _, _):
        same = await client.get("/v1/models", headers={"origin": "http://localhost:8000"})
        plain = await client.get("/v1/models")
    for response in (same, plain):
        assert response.status_code == 200
        assert "access-control-allow-origin" not in response.headers


async def test_a_rebinding_page_is_refused_even_when_it_opts_in(tmp_path: Path) -> None:
    headers = {"origin": "http://evil.example:8000", OPT_IN: "true"}
    async with serving(Settings(data_dir=tmp_path), host="evil.example:8000") as (client, _, _):
        refused_host(await client.post("/v1/messages", json=BODY, headers=headers), "evil.example:8000")


def test_cross_origin_is_decided_by_name_and_port() -> None:
    assert not is_cross_origin("http://localhost:8000", "localhost:8000")
    assert not is_cross_origin("https://api.example.com", "api.example.com")
    assert not is_cross_origin("https://api.example.com", "api.example.com:443")
    assert is_cross_origin("http://localhost:3000", "localhost:8000")
    assert is_cross_origin("http://127.0.0.1:8000", "localhost:8000")
    assert is_cross_origin("null", "localhost:8000")
    assert is_cross_origin("http://localhost:8000", None)
