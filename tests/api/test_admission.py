"""Admission before the response starts: a request the engine cannot take gets a 529, never a
200 followed by an SSE `overloaded_error`; a disconnect mid-upload ends the request quietly."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from sijo.app import create_app
from sijo.config import Settings
from sijo.engines.fake import FakeEngine
from tests.conftest import HEADERS

BODY: dict[str, Any] = {
    "model": "claude-sonnet-4-6",
    "max_tokens": 8,
    "stream": True,
    "messages": [{"role": "user", "content": "hi"}],
}


@pytest.fixture
async def busy() -> AsyncIterator[tuple[FakeEngine, httpx.AsyncClient]]:
    engine = FakeEngine(capacity=2, delay=0.01)
    app = create_app(Settings(), engines={"default": engine})
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://sijo.localhost", headers=HEADERS) as c:
            yield engine, c


async def _stream(client: httpx.AsyncClient, body: dict[str, Any]) -> tuple[int, str]:
    async with client.stream("POST", "/v1/messages", json=body) as response:
        return response.status_code, (await response.aread()).decode()


@pytest.mark.parametrize("stream", [True, False])
async def test_a_request_is_refused_with_529_or_served_to_the_end(
    busy: tuple[FakeEngine, httpx.AsyncClient], stream: bool
) -> None:
    engine, client = busy
    results = await asyncio.gather(*(_stream(client, {**BODY, "stream": stream}) for _ in range(12)))
    statuses = [status for status, _ in results]
    assert set(statuses) == {200, 529}, statuses
    for status, text in results:
        if status == 200:
            assert "overloaded_error" not in text
            assert ("event: message_stop" in text) if stream else json.loads(text)["stop_reason"] == "end_turn"
        else:
            assert '"type":"overloaded_error"' in text.replace(" ", "")
    assert engine.admitted == 0 and engine.active == 0


async def test_an_admitted_thinking_reply_is_never_refused_between_its_phases(
    busy: tuple[FakeEngine, httpx.AsyncClient],
) -> None:
    """The answer phase of a thinking reply runs under the admission the thinking phase took."""
    engine, client = busy
    body = {**BODY, "max_tokens": 2048, "thinking": {"type": "enabled", "budget_tokens": 1024}}
    engine.enqueue(["Let me think.", "</think>"])
    engine.enqueue(["Done."])
    status, text = await _stream(client, body)
    assert status == 200 and "event: message_stop" in text and "error" not in text
    assert len(engine.requests) == 2  # thinking, then the answer
    assert all(request.admission is not None for request in engine.requests)
    assert engine.admitted == 0


async def test_a_client_that_hangs_up_mid_upload_is_one_log_line(caplog: pytest.LogCaptureFixture) -> None:
    app = create_app(Settings(), engines={"default": FakeEngine()})
    messages = [
        {"type": "http.request", "body": b'{"model": "claude-sonnet-4-6", "messages": [', "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": "/v1/messages", "raw_path": b"/v1/messages", "query_string": b"",
        "root_path": "", "server": ("127.0.0.1", 8000), "client": ("127.0.0.1", 50000),
        "headers": [(b"host", b"127.0.0.1:8000"), (b"anthropic-version", b"2023-06-01"),
                    (b"content-type", b"application/json"), (b"content-length", b"1000")],
    }
    caplog.set_level(logging.INFO)
    async with app.router.lifespan_context(app):
        await app(scope, receive, send)
    records = [r for r in caplog.records if r.name.startswith("sijo")]
    assert len(records) == 1, [r.getMessage() for r in records]
    assert records[0].exc_info is None and records[0].levelno == logging.INFO
    assert "disconnected" in records[0].getMessage()
    assert sent[0]["status"] == 499
