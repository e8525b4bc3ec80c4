"""The Messages API upstream's side of the wire, against a scripted transport: what it sends (the
operator's key, the client's betas, the configured model id), how it reads a stream, and how each
answer maps onto Sijo's errors. The real round trip is tests/e2e/test_hybrid.py."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from sijo.engines.upstream.anthropic import AnthropicSettings, AnthropicUpstream
from sijo.errors import InternalServerError, InvalidRequestError, NotFoundError, UpstreamUnavailableError
from sijo.protocol.events import MessageDeltaEvent, MessageStartEvent

START = {
    "type": "message_start",
    "message": {
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x", "content": [],
        "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": 11, "cache_read_input_tokens": 3, "output_tokens": 1},
    },
}  # fmt: skip
EVENTS = [
    START,
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    {"type": "ping"},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}},
    {"type": "content_block_stop", "index": 0},
    {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {"output_tokens": 2},
    },
    {"type": "message_stop"},
]


def sse(events: list[dict[str, Any]]) -> bytes:
    return b"".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in events)


def upstream(handler: Any, **settings: Any) -> AnthropicUpstream:
    return AnthropicUpstream(
        AnthropicSettings(name="claude", url="http://api.test", api_key="sk-operator", **settings),
        transport=httpx.MockTransport(handler),
    )


async def test_it_sends_the_operators_key_the_betas_and_the_configured_model() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=sse(EVENTS), headers={"content-type": "text/event-stream"})

    claude = upstream(handler, model="claude-real-id")
    body = {"model": "claude-sonnet-4-6", "max_tokens": 5, "messages": []}
    headers = {"anthropic-beta": "files-api-2025-04-14", "x-api-key": "client-key", "cookie": "c"}
    events = [event async for event in claude.stream(body, headers)]
    await claude.aclose()
    [request] = seen
    sent = json.loads(request.content)
    assert request.url.path == "/v1/messages" and sent["model"] == "claude-real-id" and sent["stream"] is True
    assert request.headers["x-api-key"] == "sk-operator"  # never the client's key
    assert request.headers["anthropic-beta"] == "files-api-2025-04-14" and "cookie" not in request.headers
    assert [e.type for e in events] == [e["type"] for e in EVENTS]
    assert isinstance(events[0], MessageStartEvent)
    delta = events[-2]
    assert isinstance(delta, MessageDeltaEvent)
    # message_delta's missing counts are message_start's (a client overwrites its totals with them)
    assert (delta.usage.input_tokens, delta.usage.cache_read_input_tokens, delta.usage.output_tokens) == (
        11,
        3,
        2,
    )


@pytest.mark.parametrize(
    ("status", "error", "raised"),
    [
        (400, {"type": "invalid_request_error", "message": "max_tokens: too big"}, InvalidRequestError),
        (404, {"type": "not_found_error", "message": "model: claude-x"}, NotFoundError),
        (429, {"type": "rate_limit_error", "message": "slow down"}, UpstreamUnavailableError),
        (529, {"type": "overloaded_error", "message": "busy"}, UpstreamUnavailableError),
        (500, {"type": "api_error", "message": "boom"}, UpstreamUnavailableError),
    ],
)
async def test_the_clients_errors_map_one_to_one_and_the_upstreams_own_let_a_route_go_on(
    status: int, error: dict[str, str], raised: type[Exception]
) -> None:
    claude = upstream(lambda _: httpx.Response(status, json={"type": "error", "error": error}))
    with pytest.raises(raised, match=error["message"]):
        async for _ in claude.stream({"model": "m", "messages": []}, {}):
            pass
    assert claude.healthy  # one answer, even a 500, does not take the route down: a refused connection does
    await claude.aclose()


async def test_the_operators_key_refused_is_not_the_clients_authentication_error() -> None:
    error = {"type": "authentication_error", "message": "invalid x-api-key"}
    claude = upstream(lambda _: httpx.Response(401, json={"type": "error", "error": error}))
    with pytest.raises(InternalServerError, match="refused this server's credentials"):
        async for _ in claude.stream({"model": "m", "messages": []}, {}):
            pass
    await claude.aclose()


async def test_an_error_event_mid_stream_and_a_refused_connection() -> None:
    mid = upstream(
        lambda _: httpx.Response(
            200,
            content=sse([START, {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}]),
        )
    )
    with pytest.raises(UpstreamUnavailableError, match="busy"):
        async for _ in mid.stream({"model": "m", "messages": []}, {}):
            pass
    await mid.aclose()

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    down = upstream(refuse)
    with pytest.raises(UpstreamUnavailableError, match="unavailable"):
        async for _ in down.stream({"model": "m", "messages": []}, {}):
            pass
    assert not down.healthy
    await down.aclose()


async def test_an_event_it_cannot_read_is_an_api_error() -> None:
    odd = upstream(
        lambda _: httpx.Response(200, content=sse([START, {"type": "content_block_start", "index": 0}]))
    )
    with pytest.raises(InternalServerError, match="cannot read"):
        async for _ in odd.stream({"model": "m", "messages": []}, {}):
            pass
    await odd.aclose()
