"""Relaying to a Messages API upstream: what is billed (once, from the upstream's own counts, and
nothing for an attempt that failed before any content) and what rate limits estimate beforehand."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest

from sijo.catalog import RemoteModel
from sijo.config import ModelConfig
from sijo.engines.upstream.anthropic import AnthropicSettings, AnthropicUpstream
from sijo.errors import UpstreamUnavailableError
from sijo.prepared import MEDIA_TOKENS, RemoteMessage
from sijo.protocol.params import MessageCreateParams
from sijo.relay import relay
from sijo.usage import UsageRecord
from tests.unit.test_anthropic_upstream import EVENTS, START, sse


class Ledger:
    def __init__(self) -> None:
        self.records: list[UsageRecord] = []

    def submit(self, record: UsageRecord) -> None:
        self.records.append(record)


def remote(events: list[dict[str, Any]], **params: Any) -> RemoteMessage:
    transport = httpx.MockTransport(lambda _: httpx.Response(200, content=sse(events)))
    upstream = AnthropicUpstream(AnthropicSettings(name="claude", url="http://api.test"), transport=transport)
    body = {
        "model": "claude-sonnet-4-6",
        "max_tokens": 8,
        "messages": [{"role": "user", "content": "hi"}],
        **params,
    }
    return RemoteMessage(
        "claude-sonnet-4-6",
        RemoteModel(ModelConfig(id="claude-sonnet-4-6"), upstream),
        MessageCreateParams.model_validate(body),
        "default",
    )


async def test_a_reply_that_searched_is_billed_with_its_searches() -> None:
    delta = {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {"output_tokens": 5, "server_tool_use": {"web_search_requests": 2}},
    }
    ledger = Ledger()
    message = remote([*EVENTS[:-2], delta, EVENTS[-1]])
    kinds = [event.type async for event in relay(message, ledger, None)]  # type: ignore[arg-type]
    assert kinds[-1] == "message_stop"
    [record] = ledger.records
    assert (record.uncached_input_tokens, record.cache_read_tokens, record.output_tokens) == (11, 3, 5)
    assert record.web_search_requests == 2


async def test_an_attempt_that_failed_before_content_bills_nothing() -> None:
    busy = {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}
    ledger = Ledger()
    with pytest.raises(UpstreamUnavailableError):
        async for _ in relay(remote([START, busy]), ledger, None):  # type: ignore[arg-type]
            pass
    assert ledger.records == []  # the next route serves the request, and bills it


def test_inline_media_counts_as_media_not_as_its_bytes() -> None:
    png = base64.b64encode(b"\x89PNG" + bytes(300_000)).decode()
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": png}}
    text = remote([], messages=[{"role": "user", "content": "hi"}])
    with_image = remote([], messages=[{"role": "user", "content": [image, {"type": "text", "text": "hi"}]}])
    assert text.input_tokens < 40
    added = with_image.input_tokens - text.input_tokens
    assert MEDIA_TOKENS <= added < MEDIA_TOKENS + 100  # not the 100,000 "tokens" of its base64
    assert len(json.dumps(image)) > 400_000
