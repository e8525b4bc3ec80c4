"""GET /openapi.json: the routes with their request and response schemas, faithful to the wire types."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest

from sijo.app import create_app
from sijo.config import Settings
from sijo.engines.fake import FakeEngine
from tests.conftest import HEADERS

REF = "#/components/schemas/"


async def fetch(settings: Settings, path: str = "/openapi.json", **headers: str) -> httpx.Response:
    app = create_app(settings, engines={"default": FakeEngine()})
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost:8000") as client:
            return await client.get(path, headers={**HEADERS, **headers})


@pytest.fixture
async def document(tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    response = await fetch(Settings(data_dir=tmp_path))
    assert response.status_code == 200
    yield response.json()


def body_schema(document: dict[str, Any], path: str) -> dict[str, Any]:
    body = document["paths"][path]["post"]["requestBody"]
    schema: dict[str, Any] = body["content"]["application/json"]["schema"]
    return schema


def answer(document: dict[str, Any], path: str, method: str = "get") -> str:
    """The name of the schema of a route's 200 answer."""
    success = document["paths"][path][method]["responses"]["200"]
    return str(success["content"]["application/json"]["schema"]["$ref"]).removeprefix(REF)


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from refs(item)


def test_request_bodies_are_documented(document: dict[str, Any]) -> None:
    assert body_schema(document, "/v1/messages") == {"$ref": REF + "MessageCreateParams"}
    assert body_schema(document, "/v1/messages/count_tokens") == {"$ref": REF + "CountTokensParams"}
    assert body_schema(document, "/v1/messages/batches") == {"$ref": REF + "BatchCreateParams"}
    create = document["components"]["schemas"]["MessageCreateParams"]
    assert {"max_tokens", "messages", "model"} <= set(create["required"])
    assert {"max_tokens", "messages", "stream", "tools", "thinking"} <= set(create["properties"])
    assert create["additionalProperties"] is False


def test_answers_are_documented(document: dict[str, Any]) -> None:
    assert answer(document, "/v1/messages", "post") == "Message"
    assert "text/event-stream" in document["paths"]["/v1/messages"]["post"]["responses"]["200"]["content"]
    assert answer(document, "/v1/messages/count_tokens", "post") == "MessageTokensCount"
    assert answer(document, "/v1/messages/batches", "post") == "MessageBatch"
    assert answer(document, "/v1/messages/batches") == "MessageBatchPage"
    assert answer(document, "/v1/models") == "ModelPage"
    assert answer(document, "/v1/models/{model_id}") == "ModelInfo"
    errors = document["paths"]["/v1/messages"]["post"]["responses"]["4XX"]["content"]["application/json"]
    assert errors["schema"] == {"$ref": REF + "ErrorResponse"}
    detail = document["components"]["schemas"]["ErrorDetail"]["properties"]["type"]
    assert {"invalid_request_error", "overloaded_error", "timeout_error"} <= set(detail["enum"])
    schemas = document["components"]["schemas"]
    assert {"Message", "MessageTokensCount", "ModelInfo", "MessageBatch", "ErrorResponse"} <= set(schemas)


def test_no_422_is_promised_and_every_reference_resolves(document: dict[str, Any]) -> None:
    # A bad parameter is a 400 invalid_request_error, as every other refusal (api/errors.py).
    for operations in document["paths"].values():
        for operation in operations.values():
            assert "422" not in operation["responses"]
    schemas = document["components"]["schemas"]
    assert "HTTPValidationError" not in schemas
    missing = {ref for ref in refs(document) if ref.removeprefix(REF) not in schemas}
    assert missing == set()


def test_the_documented_body_schema_judges_as_the_api_does(document: dict[str, Any]) -> None:
    validator = jsonschema.Draft202012Validator(
        {"$ref": REF + "MessageCreateParams", "components": document["components"]}
    )
    good = {
        "model": "claude-sonnet-4-6",
        "max_tokens": 64,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
        "tools": [{"name": "get_weather", "input_schema": {"type": "object"}}],
    }
    assert list(validator.iter_errors(good)) == []
    assert not validator.is_valid({k: v for k, v in good.items() if k != "max_tokens"})
    assert not validator.is_valid({**good, "unknown": 1})
    assert not validator.is_valid({**good, "messages": [{"role": "user", "content": [{"type": "nope"}]}]})


async def test_the_document_is_public_and_there_are_no_docs_pages(tmp_path: Path) -> None:
    keyed = Settings(data_dir=tmp_path, api_keys=["sk-one"])
    assert (await fetch(keyed)).status_code == 200
    assert (await fetch(keyed, "/v1/models")).status_code == 401
    for page in ("/docs", "/redoc"):
        assert (await fetch(keyed, page)).status_code == 404
