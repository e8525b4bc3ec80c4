"""A client's identifiers are echoed in error messages cut short: a 1 MB model name is answered with a
small 404 that still begins with the name, not with a 1 MB message."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sijo.app import create_app
from sijo.config import Settings
from sijo.engines.fake import FakeEngine
from tests.conftest import HEADERS

API_KEY = "sk-test-long-ids"
ADMIN_KEY = "sk-admin-long-ids"
LONG = "x" * 1_000_000
IN_PATH = "x" * 60_000  # about the longest a URL carries (httpx stops at 64 KiB)
SMALL = 1024  # bytes: an error body for a 1 MB identifier stays under this


@pytest.fixture
async def clients(tmp_path: Path) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    settings = Settings(data_dir=tmp_path, api_keys=[API_KEY], admin_keys=[ADMIN_KEY])
    app = create_app(settings, engines={"default": FakeEngine()})
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with (
            httpx.AsyncClient(
                transport=transport, base_url="http://localhost", headers={**HEADERS, "x-api-key": API_KEY}
            ) as api,
            httpx.AsyncClient(
                transport=transport, base_url="http://localhost", headers={**HEADERS, "x-api-key": ADMIN_KEY}
            ) as admin,
        ):
            yield {"api": api, "admin": admin}


def body(path: str, **change: Any) -> dict[str, Any]:
    sent: dict[str, Any] = {"model": "claude-sonnet-4-6", "messages": [{"role": "user", "content": "Hi"}]}
    if path == "/v1/messages":
        sent["max_tokens"] = 20
    return sent | change


def assert_short(response: httpx.Response, status: int, start: str) -> None:
    assert response.status_code == status, response.text[:300]
    assert len(response.content) < SMALL
    message = response.json()["error"]["message"]
    assert message.startswith(start) and re.search(r"x… \(\d{5,} characters\)", message)


@pytest.mark.parametrize("path", ["/v1/messages", "/v1/messages/count_tokens"])
async def test_an_unknown_long_model_name_gets_a_short_404(
    clients: dict[str, httpx.AsyncClient], path: str
) -> None:
    response = await clients["api"].post(path, json=body(path, model=LONG))
    assert_short(response, 404, "model: " + "x" * 100)


@pytest.mark.parametrize(
    ("client", "method", "path", "start"),
    [
        ("api", "GET", "/v1/models/{}", "model: xxx"),
        ("api", "GET", "/v1/messages/batches/{}", "message_batch_id: no batch xxx"),
        ("api", "POST", "/v1/messages/batches/{}/cancel", "message_batch_id: no batch xxx"),
        ("api", "DELETE", "/v1/messages/batches/{}", "message_batch_id: no batch xxx"),
        ("api", "GET", "/v1/messages/batches/{}/results", "message_batch_id: no batch xxx"),
        ("admin", "GET", "/v1/organizations/api_keys/{}", "api_key_id: no API key xxx"),
    ],
)
async def test_an_unknown_long_id_in_the_path_gets_a_short_404(
    clients: dict[str, httpx.AsyncClient], client: str, method: str, path: str, start: str
) -> None:
    response = await clients[client].request(method, path.format(IN_PATH))
    assert_short(response, 404, start)


@pytest.mark.parametrize(
    ("change", "start"),
    [
        (
            {"messages": [{"role": "user", "content": [{"type": LONG, "text": "Hi"}]}]},
            "messages.0.content.0: Input tag 'xxx",
        ),
        ({"tools": [{"type": LONG, "name": "t"}]}, "tools.0.type: Value error, unknown tool type 'xxx"),
        ({LONG: 1}, "xxx"),
        (
            {"messages": [{"role": "user", "content": [{"type": "text", "text": "Hi", LONG: 1}]}]},
            "messages.0.content.0.xxx",
        ),
    ],
)
async def test_long_values_in_validation_errors_are_cut_short(
    clients: dict[str, httpx.AsyncClient], change: dict[str, Any], start: str
) -> None:
    for path in ("/v1/messages", "/v1/messages/count_tokens"):
        response = await clients["api"].post(path, json=body(path, **change))
        assert_short(response, 400, start)


async def test_the_expected_tags_stay_whole(clients: dict[str, httpx.AsyncClient]) -> None:
    """Only the client's value is cut: the list of what the API accepts is its own, and kept."""
    change = {"messages": [{"role": "user", "content": [{"type": LONG, "text": "Hi"}]}]}
    response = await clients["api"].post("/v1/messages", json=body("/v1/messages", **change))
    message = response.json()["error"]["message"]
    assert "expected tags: 'text', 'image'" in message and "'redacted_thinking'" in message
