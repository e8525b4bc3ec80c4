"""Malformed JSON Schemas in tools and output formats are 400s naming the place, on both endpoints
that read them; never a 500 (which the SDKs retry) and never a stall."""

from __future__ import annotations

import re
import time
from typing import Any

import httpx
import pytest

BODY: dict[str, Any] = {
    "model": "claude-sonnet-4-6",
    "max_tokens": 16,
    "messages": [{"role": "user", "content": "hi"}],
}
ENDPOINTS = ("/v1/messages", "/v1/messages/count_tokens")
PLACES = ("strict tool", "tool", "output_config.format", "output_format")

# The probe's reproducers: each was a 500 `api_error` with `x-should-retry: true`.
REPRODUCERS: list[dict[str, Any]] = [
    {"enum": 5},
    {"anyOf": 5},
    {"$defs": [1, 2]},
    {"type": {}},
    {"type": [[]]},
    {"format": []},
    {"required": 5},
    {"required": [["a"]]},
]


def with_schema(where: str, schema: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """A request carrying `schema` in `where`, and the field path its errors start with."""
    tool = {"name": "t", "description": "a tool", "input_schema": schema}
    if where == "strict tool":
        return {**BODY, "tools": [{**tool, "strict": True}]}, "tools.0.input_schema"
    if where == "tool":
        return {**BODY, "tools": [tool]}, "tools.0.input_schema"
    if where == "output_format":
        return {**BODY, "output_format": {"type": "json_schema", "schema": schema}}, "output_format.schema"
    config = {"format": {"type": "json_schema", "schema": schema}}
    return {**BODY, "output_config": config}, "output_config.format.schema"


def for_endpoint(endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
    if endpoint.endswith("count_tokens"):
        return {key: value for key, value in body.items() if key != "max_tokens"}
    return body


async def assert_400(client: httpx.AsyncClient, body: dict[str, Any], path: str) -> None:
    for endpoint in ENDPOINTS:
        response = await client.post(endpoint, json=for_endpoint(endpoint, body))
        assert response.status_code == 400, (endpoint, response.text)
        assert response.headers.get("x-should-retry") != "true"
        error = response.json()["error"]
        assert error["type"] == "invalid_request_error"
        assert re.match(rf"{re.escape(path)}[:.]", error["message"]), (endpoint, error["message"])


@pytest.mark.parametrize("where", PLACES)
@pytest.mark.parametrize("fragment", REPRODUCERS, ids=lambda f: str(f))
async def test_a_bad_keyword_value_is_a_400_naming_its_path(
    client: httpx.AsyncClient, where: str, fragment: dict[str, Any]
) -> None:
    (keyword,) = fragment
    nested = {"type": "object", "properties": {"a": fragment}}
    body, field = with_schema(where, nested)
    await assert_400(client, body, f"{field}.properties.a.{keyword}")
    # At the root, a tool's schema is checked by the request model, which names the same path.
    body, field = with_schema(where, {"type": "object", **fragment})
    await assert_400(client, body, f"{field}.{keyword}")


@pytest.mark.parametrize("where", PLACES)
async def test_deep_nesting_is_a_400(client: httpx.AsyncClient, where: str) -> None:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(150):  # deeper than the schema limit, within the JSON reader's
        schema = {"type": "array", "items": schema}
    body, field = with_schema(where, {"type": "object", "properties": {"a": schema}})
    await assert_400(client, body, field)


@pytest.mark.parametrize("where", PLACES)
async def test_a_long_chain_of_references_is_a_400(client: httpx.AsyncClient, where: str) -> None:
    """The grammar compiler recurses into each referenced schema: 3,000 in a row crashed the server."""
    defs: dict[str, Any] = {f"d{i}": {"$ref": f"#/$defs/d{i + 1}"} for i in range(3000)}
    defs["d3000"] = {"type": "string"}
    schema = {"type": "object", "$defs": defs, "properties": {"x": {"$ref": "#/$defs/d0"}}}
    body, field = with_schema(where, schema)
    await assert_400(client, body, field)


async def test_a_schema_reached_many_ways_is_checked_at_once(client: httpx.AsyncClient) -> None:
    defs: dict[str, Any] = {
        f"d{i}": {"anyOf": [{"$ref": f"#/$defs/d{i + 1}"}, {"$ref": f"#/$defs/d{i + 1}"}]} for i in range(20)
    }
    defs["d20"] = {"type": "string"}
    schema = {"type": "object", "$defs": defs, "properties": {"x": {"$ref": "#/$defs/d0"}}, "required": ["x"]}
    body, _ = with_schema("output_config.format", schema)
    start = time.perf_counter()
    response = await client.post(ENDPOINTS[1], json=for_endpoint(ENDPOINTS[1], body))
    assert response.status_code == 200, response.text
    assert time.perf_counter() - start < 2


async def test_a_strict_pattern_that_cannot_compile_is_a_400(client: httpx.AsyncClient) -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string", "pattern": "[a-"}}}
    body, field = with_schema("strict tool", schema)
    await assert_400(client, body, f"{field}.properties.a.pattern")


async def test_a_non_strict_tool_keeps_schemas_outside_the_subset(client: httpx.AsyncClient) -> None:
    schema = {
        "type": "object",
        "properties": {"a": {"type": "string", "format": "lowercase", "minLength": 2, "pattern": "[a-"}},
    }
    body, _ = with_schema("tool", schema)
    for endpoint in ENDPOINTS:
        response = await client.post(endpoint, json=for_endpoint(endpoint, body))
        assert response.status_code == 200, (endpoint, response.text)
