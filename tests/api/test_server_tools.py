"""Server tools through the API with the fake engine: the server runs the tool loop (issue 13).

The fake engine replays the call markup the grammar would force; Sijo runs the tool for real (the
local search index in the test's data directory, a local web server for web_fetch, bubblewrap for
code execution) and the reply goes on in the same message. Streaming and not agree.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import TypeAdapter

from sijo.app import create_app
from sijo.config import DEFAULT_PRICES, ModelConfig, SearchConfig, Settings
from sijo.engines.fake import FakeEngine
from sijo.media.fetch import FetchPolicy
from sijo.output.accumulate import Accumulator
from sijo.pricing import cost_lines
from sijo.prompt import markup
from sijo.protocol.events import PingEvent, StreamEvent
from sijo.tools.web_search.indexing import add_sources
from sijo.tools.web_search.local_index import LocalIndex
from tests.conftest import HEADERS

EVENTS: TypeAdapter[StreamEvent] = TypeAdapter(StreamEvent)
SEARCH = {"type": "web_search_20250305", "name": "web_search"}
FETCH = {"type": "web_fetch_20250910", "name": "web_fetch"}
CODE = {"type": "code_execution_20250825", "name": "code_execution"}
ANSWER = ["The", " answer", "."]


def ask(content: Any, tools: list[Any], *, max_tokens: int, **extra: Any) -> dict[str, Any]:
    """A request body: one user turn and the tools."""
    messages = [{"role": "user", "content": content}]
    return {
        "model": "claude-sonnet-4-6",
        "max_tokens": max_tokens,
        "messages": messages,
        "tools": tools,
        **extra,
    }


WRITE_A_FILE = ask(
    "Write a file.", [CODE], max_tokens=300, tool_choice={"type": "tool", "name": "code_execution"}
)


def call(name: str, arguments: dict[str, Any]) -> list[str]:
    """A call as the fake engine replays it: a few pieces, one token each."""
    text = markup.call_text(name, arguments)
    return [text[:5], text[5:20], text[20:]]


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "kimchi.md").write_text("# Kimchi\n\nKimchi is fermented napa cabbage with gochugaru.\n")
    (docs / "volcano.txt").write_text("Hallasan is the volcano on Jeju island, 1,947 metres high.\n")
    index = LocalIndex(tmp_path / "data" / "search.db")
    added = list(add_sources(index, [str(docs)], workspace=None, policy=FetchPolicy()))
    assert all(a.error is None for a in added) and len(added) == 2
    return tmp_path / "data"


@pytest.fixture
def settings(data_dir: Path) -> Settings:
    return Settings(data_dir=data_dir, media={"fetch_allow": ["127.0.0.1"]})


@asynccontextmanager
async def serving(engine: FakeEngine, settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, FastAPI]]:
    """The app over `engine` with `settings`, started, and a client of it."""
    app = create_app(settings, engines={"default": engine})
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://sijo.localhost", headers=HEADERS
        ) as client:
            yield client, app


@pytest.fixture
async def client(engine: FakeEngine, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with serving(engine, settings) as (c, _app):
        yield c


async def both(
    client: httpx.AsyncClient, engine: FakeEngine, replies: list[list[str]], body: dict[str, Any]
) -> dict[str, Any]:
    """The same reply asked for twice, streamed and not: they agree (ids and sealed blobs aside)."""
    for pieces in replies * 2:
        engine.enqueue(pieces)
    created = await client.post("/v1/messages", json=body)
    streamed = await client.post("/v1/messages", json={**body, "stream": True})
    assert created.status_code == streamed.status_code == 200, created.text
    accumulator = Accumulator()
    starts = []
    for frame in streamed.text.strip().split("\n\n"):
        data = json.loads(frame.split("\n")[1].removeprefix("data: "))
        event = EVENTS.validate_python(data)
        if not isinstance(event, PingEvent):
            accumulator.apply(event)
        if data["type"] == "content_block_start":
            starts.append(data["content_block"])
    for block in starts:
        if block["type"] in ("server_tool_use", "tool_use"):
            assert block["input"] == {}  # the input streams as input_json_delta
    assert accumulator.message is not None
    message = created.json()
    assert _shape(accumulator.message.model_dump(mode="json")) == _shape(message)
    return message


def _shape(message: dict[str, Any]) -> Any:
    """A message without what differs between two runs: ids, sealed blobs, expiry times."""
    text = json.dumps({**message, "id": None})
    value = json.loads(text)
    for block in value["content"]:
        block.pop("id", None)
        block.pop("tool_use_id", None)
        if block["type"] == "web_search_tool_result" and isinstance(block["content"], list):
            for result in block["content"]:
                result["encrypted_content"] = None
        if block["type"] == "web_fetch_tool_result":
            block["content"].pop("retrieved_at", None)
    value.pop("container", None)
    return value


def prompt_text(engine: FakeEngine, index: int = -1) -> str:
    return "".join(chr(t) for t in engine.requests[index].tokens)


async def test_a_forced_web_search_runs_and_the_reply_goes_on_in_the_same_message(
    client: httpx.AsyncClient, engine: FakeEngine
) -> None:
    body = ask(
        "How high is the volcano on Jeju?",
        [SEARCH],
        max_tokens=200,
        tool_choice={"type": "tool", "name": "web_search"},
    )
    message = await both(client, engine, [call("web_search", {"query": "Jeju volcano"}), ANSWER], body)
    use, result, text = message["content"]
    assert use["type"] == "server_tool_use" and use["id"].startswith("srvtoolu_")
    assert use["name"] == "web_search" and use["input"] == {"query": "Jeju volcano"}
    assert result["type"] == "web_search_tool_result" and result["tool_use_id"] == use["id"]
    top = result["content"][0]
    assert top["type"] == "web_search_result" and top["url"].endswith("/volcano.txt")
    assert top["title"] and top["encrypted_content"] and top["page_age"]
    assert text == {"type": "text", "text": "The answer."}
    assert message["stop_reason"] == "end_turn"
    assert message["usage"]["server_tool_use"] == {"web_search_requests": 1, "web_fetch_requests": 0}
    # The answer was generated after the result: its prompt holds the page the search found.
    assert "1,947 metres" in prompt_text(engine)
    # Input: the first prompt, and what the result added to it (the call itself was output: 3 tokens).
    assert message["usage"]["input_tokens"] == len(engine.requests[-1].tokens) - 3
    assert message["usage"]["output_tokens"] == 3 + len(ANSWER) + 1  # the call, the answer, its end


async def test_the_blocks_sent_back_are_read_and_a_forged_page_is_refused(
    client: httpx.AsyncClient, engine: FakeEngine
) -> None:
    body = ask(
        "What is kimchi?", [SEARCH], max_tokens=200, tool_choice={"type": "tool", "name": "web_search"}
    )
    first = await both(client, engine, [call("web_search", {"query": "kimchi"}), ANSWER], body)
    turn = {
        **body,
        "tool_choice": {"type": "auto"},
        "messages": [
            *body["messages"],
            {"role": "assistant", "content": first["content"]},
            {"role": "user", "content": "And in one word?"},
        ],
    }
    engine.enqueue(["Cabbage."])
    second = await client.post("/v1/messages", json=turn)
    assert second.status_code == 200, second.text
    assert "napa cabbage" in prompt_text(engine)  # the sealed page text, read back
    forged = json.loads(json.dumps(first["content"]))
    forged[1]["content"][0]["encrypted_content"] += "x"
    bad = await client.post(
        "/v1/messages",
        json={
            **turn,
            "messages": [turn["messages"][0], {"role": "assistant", "content": forged}, turn["messages"][2]],
        },
    )
    assert bad.status_code == 400
    assert bad.json()["error"]["message"].startswith("messages.1.content.1.content.0.encrypted_content")


async def test_max_uses_exceeded_is_a_result_not_an_http_error(
    client: httpx.AsyncClient, engine: FakeEngine
) -> None:
    body = ask("Search twice.", [{**SEARCH, "max_uses": 1}], max_tokens=300)
    replies = [call("web_search", {"query": "kimchi"}), call("web_search", {"query": "volcano"}), ANSWER]
    message = await both(client, engine, replies, body)
    kinds = [block["type"] for block in message["content"]]
    assert kinds == [
        "server_tool_use",
        "web_search_tool_result",
        "server_tool_use",
        "web_search_tool_result",
        "text",
    ]
    assert isinstance(message["content"][1]["content"], list)
    assert message["content"][3]["content"] == {
        "type": "web_search_tool_result_error",
        "error_code": "max_uses_exceeded",
    }
    assert message["usage"]["server_tool_use"]["web_search_requests"] == 1


async def test_both_domain_filters_are_a_400(client: httpx.AsyncClient) -> None:
    body = ask("Hi", [{**SEARCH, "allowed_domains": ["a.com"], "blocked_domains": ["b.com"]}], max_tokens=10)
    response = await client.post("/v1/messages", json=body)
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith("tools.0")


async def test_pause_turn_after_the_iteration_limit_and_sending_it_back_continues(
    engine: FakeEngine, settings: Settings
) -> None:
    settings = settings.model_copy(
        update={"server_tools": settings.server_tools.model_copy(update={"max_iterations": 1})}
    )
    async with serving(engine, settings) as (client, _app):
        body = ask("What is kimchi?", [SEARCH], max_tokens=200)
        message = await both(client, engine, [call("web_search", {"query": "kimchi"})], body)
        assert message["stop_reason"] == "pause_turn"
        assert [b["type"] for b in message["content"]] == ["server_tool_use", "web_search_tool_result"]
        engine.enqueue(ANSWER)
        resumed = await client.post(
            "/v1/messages",
            json={
                **body,
                "messages": [*body["messages"], {"role": "assistant", "content": message["content"]}],
            },
        )
        assert resumed.status_code == 200, resumed.text
        assert resumed.json()["content"] == [{"type": "text", "text": "The answer."}]
        assert "napa cabbage" in prompt_text(engine)


async def test_count_tokens_counts_the_server_tools(client: httpx.AsyncClient) -> None:
    body = {"model": "claude-sonnet-4-6", "messages": [{"role": "user", "content": "Hi"}]}
    plain = await client.post("/v1/messages/count_tokens", json=body)
    with_tools = await client.post("/v1/messages/count_tokens", json={**body, "tools": [SEARCH, FETCH, CODE]})
    assert plain.status_code == with_tools.status_code == 200, with_tools.text
    assert with_tools.json()["input_tokens"] > plain.json()["input_tokens"] + 100


class _Pages(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/away":  # to the same server under another name
            self.send_response(302)
            self.send_header("Location", f"http://localhost:{self.server.server_address[1]}/jeju")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.path == "/base64":  # a codec Python knows, that is not a text encoding
            page = b"<html><body><p>Hallasan is on Jeju.</p></body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=base64")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)
            return
        body = b"<html><head><title>Jeju</title></head><body><article><p>Jeju has a volcano called Hallasan, the highest mountain in South Korea.</p></article></body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: Any) -> None:
        return None


@pytest.fixture
def site() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Pages)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


async def test_web_fetch_reads_a_url_of_the_conversation_and_no_other(
    client: httpx.AsyncClient, engine: FakeEngine, site: str
) -> None:
    url = f"{site}/jeju"
    body = ask(f"Summarise {url}", [FETCH], max_tokens=300)
    replies = [call("web_fetch", {"url": url}), call("web_fetch", {"url": f"{site}/other"}), ANSWER]
    message = await both(client, engine, replies, body)
    fetched, refused = message["content"][1], message["content"][3]
    assert fetched["type"] == "web_fetch_tool_result"
    result = fetched["content"]
    assert result["type"] == "web_fetch_result" and result["url"] == url and result["retrieved_at"]
    document = result["content"]
    assert document["type"] == "document" and document["title"] == "Jeju"
    assert "Hallasan" in document["source"]["data"] and document["source"]["media_type"] == "text/plain"
    assert refused["content"] == {
        "type": "web_fetch_tool_result_error",
        "error_code": "url_not_in_prior_context",
    }
    assert message["usage"]["server_tool_use"] == {"web_search_requests": 0, "web_fetch_requests": 1}
    assert "highest mountain" in prompt_text(engine)


async def test_code_execution_runs_in_a_container_that_persists_and_its_files_come_out(
    client: httpx.AsyncClient, engine: FakeEngine
) -> None:
    body = WRITE_A_FILE
    command = "echo hello > out.txt && cat out.txt && echo oops >&2"
    engine.enqueue(call("bash_code_execution", {"command": command}))
    engine.enqueue(ANSWER)
    response = await client.post("/v1/messages", json=body)
    assert response.status_code == 200, response.text
    message = response.json()
    use, result, _text = message["content"]
    assert use["type"] == "server_tool_use" and use["name"] == "bash_code_execution"
    assert result["type"] == "bash_code_execution_tool_result"
    content = result["content"]
    assert content["type"] == "bash_code_execution_result"
    assert (content["stdout"], content["stderr"], content["return_code"]) == ("hello\n", "oops\n", 0)
    (output,) = content["content"]
    assert output["type"] == "bash_code_execution_output"
    download = await client.get(f"/v1/files/{output['file_id']}/content")
    assert download.status_code == 200 and download.content == b"hello\n"
    container = message["container"]
    assert container["id"].startswith("container_") and container["expires_at"].endswith("Z")
    # The next request reuses the container: the file is still there.
    engine.enqueue(call("bash_code_execution", {"command": "cat out.txt"}))
    engine.enqueue(ANSWER)
    again = await client.post("/v1/messages", json={**body, "container": container["id"]})
    assert again.status_code == 200, again.text
    assert again.json()["content"][1]["content"]["stdout"] == "hello\n"
    assert again.json()["container"]["id"] == container["id"]
    unknown = await client.post("/v1/messages", json={**body, "container": "container_nope"})
    assert unknown.status_code == 400 and unknown.json()["error"]["message"].startswith("container:")


async def test_the_answer_after_a_search_cites_its_results(engine: FakeEngine, settings: Settings) -> None:
    """A reply that may not call another tool cites the results: each sentence of a result is shown
    with a reference, and `cited_text`, url and title come from the result, not the model."""
    settings = settings.model_copy(
        update={"models": [ModelConfig(id="claude-sonnet-4-6", force_tool_use=True)]}
    )
    async with serving(engine, settings) as (client, _app):
        body = ask("How high is Hallasan?", [SEARCH], max_tokens=300)
        answer = ['<cite ref="', "w1.1", '">', "It is 1,947 metres high.", "</cite>"]
        message = await both(
            client, engine, [call("web_search", {"query": "Hallasan volcano"}), answer], body
        )
    assert "[w1.1] Hallasan is the volcano on Jeju island, 1,947 metres high." in prompt_text(engine)
    _use, result, cited = message["content"]
    assert cited["text"] == "It is 1,947 metres high."
    (citation,) = cited["citations"]
    assert citation["type"] == "web_search_result_location"
    assert (
        citation["url"] == result["content"][0]["url"] and citation["title"] == result["content"][0]["title"]
    )
    assert citation["cited_text"] == "Hallasan is the volcano on Jeju island, 1,947 metres high."
    assert citation["encrypted_index"]


async def test_thinking_then_a_search_then_the_answer(client: httpx.AsyncClient, engine: FakeEngine) -> None:
    tools = [SEARCH, {"name": "save_note", "input_schema": {"type": "object"}}]
    thinking = {"type": "enabled", "budget_tokens": 1024}
    body = ask("What is kimchi made of?", tools, max_tokens=2000, thinking=thinking)
    replies = [["I should search.", "\n</think>"], call("web_search", {"query": "kimchi"}), ANSWER]
    message = await both(client, engine, replies, body)
    kinds = [block["type"] for block in message["content"]]
    assert kinds == ["thinking", "server_tool_use", "web_search_tool_result", "text"]
    assert message["content"][0]["thinking"] == "I should search." and message["content"][0]["signature"]
    # The answer's prompt holds the signed thinking, the call and its result, and opens no new thinking.
    assert "I should search." in prompt_text(engine) and "napa cabbage" in prompt_text(engine)
    assert not prompt_text(engine).endswith("<think>\n")
    # Input: the prompt the answer read, less what the reply wrote before it: the thinking (as the
    # answer's first prompt holds it) and the call (3 tokens).
    think, first, answer = (len(request.tokens) for request in engine.requests[-3:])
    assert message["usage"]["input_tokens"] == think + (answer - first - 3)
    assert message["usage"]["output_tokens_details"]["thinking_tokens"] == 3  # 2 pieces, the end token


async def test_searches_are_billed_in_the_ledger(engine: FakeEngine, settings: Settings) -> None:
    """The usage ledger records the searches a reply made; the cost report prices them ($10 per
    1,000, on a line of their own)."""
    async with serving(engine, settings) as (client, app):
        body = ask("Search twice.", [SEARCH], max_tokens=300)
        replies = [
            call("web_search", {"query": "kimchi"}),
            call("web_search", {"query": "volcano"}),
            ANSWER,
        ]
        for pieces in replies:
            engine.enqueue(pieces)
        response = await client.post("/v1/messages", json=body)
        assert response.status_code == 200, response.text
        await app.state.ledger.flush()
        now = datetime.now(UTC)
        records = app.state.ledger.records(now - timedelta(minutes=5), now + timedelta(minutes=1))
    (record,) = records
    assert record.web_search_requests == 2
    assert record.uncached_input_tokens == response.json()["usage"]["input_tokens"]
    lines = cost_lines(record, DEFAULT_PRICES)
    assert ("web_search", 2, Decimal("0.02")) in [(line.cost_type, line.tokens, line.usd) for line in lines]


async def test_a_search_service_that_is_down_is_an_unavailable_result(
    engine: FakeEngine, settings: Settings
) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    search = {"backend": "searxng", "url": f"http://127.0.0.1:{closed}", "timeout": 2}
    tools = settings.server_tools.model_copy(update={"search": SearchConfig(**search)})
    async with serving(engine, settings.model_copy(update={"server_tools": tools})) as (client, _app):
        body = ask("Search.", [SEARCH], max_tokens=300)
        message = await both(client, engine, [call("web_search", {"query": "kimchi"}), ANSWER], body)
    assert message["content"][1]["content"] == {
        "type": "web_search_tool_result_error",
        "error_code": "unavailable",
    }
    assert message["usage"]["server_tool_use"]["web_search_requests"] == 0
    assert message["content"][2] == {"type": "text", "text": "The answer."}


async def test_web_fetch_takes_urls_from_the_user_and_from_results_never_from_the_model(
    client: httpx.AsyncClient, engine: FakeEngine, site: str
) -> None:
    """The model cannot make a URL fetchable by writing it: not in its text, not in a refused call,
    not in what its code prints."""
    url = f"{site}/jeju"
    body = ask("Tell me about Jeju.", [FETCH], max_tokens=400)
    replies = [
        [f"I will read {url} now.", *call("web_fetch", {"url": url})],
        call("web_fetch", {"url": url}),  # the same URL again: now in the first call's input
        ANSWER,
    ]
    message = await both(client, engine, replies, body)
    refused = [b["content"] for b in message["content"] if b["type"] == "web_fetch_tool_result"]
    assert refused == [{"type": "web_fetch_tool_result_error", "error_code": "url_not_in_prior_context"}] * 2
    assert message["usage"]["server_tool_use"]["web_fetch_requests"] == 0
    # A prefix of a URL the user gave is not that URL.
    engine.enqueue(call("web_fetch", {"url": f"{site}/je"}))
    engine.enqueue(ANSWER)
    asked = {**body, "messages": [{"role": "user", "content": f"Summarise {url}."}]}
    prefix = (await client.post("/v1/messages", json=asked)).json()
    assert prefix["content"][1]["content"]["error_code"] == "url_not_in_prior_context"
    # Nor by printing it from code: only search and fetch results bring URLs in.
    engine.enqueue(call("bash_code_execution", {"command": f"echo {url}"}))
    engine.enqueue(call("web_fetch", {"url": url}))
    engine.enqueue(ANSWER)
    printed = await client.post("/v1/messages", json={**body, "tools": [FETCH, CODE]})
    assert printed.status_code == 200, printed.text
    _use, ran, _, fetched, *_ = printed.json()["content"]
    assert ran["content"]["stdout"] == f"{url}\n"
    assert fetched["content"] == {
        "type": "web_fetch_tool_result_error",
        "error_code": "url_not_in_prior_context",
    }


async def test_web_fetch_never_reaches_loopback_unless_the_operator_allows_it(
    engine: FakeEngine, data_dir: Path, site: str
) -> None:
    async with serving(engine, Settings(data_dir=data_dir)) as (client, _app):
        url = f"{site}/jeju"
        body = ask(f"Read {url} and http://169.254.169.254/latest/", [FETCH], max_tokens=300)
        replies = [
            call("web_fetch", {"url": url}),
            call("web_fetch", {"url": "http://169.254.169.254/latest/"}),
            ANSWER,
        ]
        message = await both(client, engine, replies, body)
    results = [b["content"] for b in message["content"] if b["type"] == "web_fetch_tool_result"]
    assert [r["error_code"] for r in results] == ["url_not_allowed", "url_not_allowed"]


async def test_a_page_in_a_codec_that_is_not_text_is_still_read(
    client: httpx.AsyncClient, engine: FakeEngine, site: str
) -> None:
    url = f"{site}/base64"
    body = ask(f"Read {url}", [FETCH], max_tokens=300)
    message = await both(client, engine, [call("web_fetch", {"url": url}), ANSWER], body)
    document = message["content"][1]["content"]["content"]
    assert "Hallasan" in document["source"]["data"]


async def test_a_client_call_then_a_server_call_runs_it_and_stops_for_the_client(
    client: httpx.AsyncClient, engine: FakeEngine
) -> None:
    body = ask(
        "Note it and search.",
        [{"name": "save_note", "input_schema": {"type": "object"}}, SEARCH],
        max_tokens=300,
    )
    pieces = [*call("save_note", {}), markup.CALL_SEPARATOR, *call("web_search", {"query": "kimchi"})]
    message = await both(client, engine, [pieces], body)
    assert [b["type"] for b in message["content"]] == [
        "tool_use",
        "server_tool_use",
        "web_search_tool_result",
    ]
    assert message["stop_reason"] == "tool_use"


@pytest.mark.parametrize(
    ("filename", "command", "expected"),
    [("data.csv", "wc -l < data.csv", "2"), ("..", "ls", None)],  # None: the file's id
)
async def test_container_upload_places_a_file_for_the_code(
    client: httpx.AsyncClient, engine: FakeEngine, filename: str, command: str, expected: str | None
) -> None:
    """The file is in the working directory under its name, or under its id if the name is not one
    a file can have there."""
    upload = await client.post("/v1/files", files={"file": (filename, b"a,b\n1,2\n", "text/plain")})
    assert upload.status_code == 200, upload.text
    file_id = upload.json()["id"]
    placed = {"type": "container_upload", "file_id": file_id}
    body = ask([{"type": "text", "text": "Look."}, placed], [CODE], max_tokens=300)
    engine.enqueue(call("bash_code_execution", {"command": command}))
    engine.enqueue(ANSWER)
    response = await client.post("/v1/messages", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["content"][1]["content"]["stdout"].strip() == (expected or file_id)
    assert (filename if expected else file_id) in prompt_text(engine, -2)  # the model is told its name


async def test_the_domain_filters_hold_after_redirects(
    client: httpx.AsyncClient, engine: FakeEngine, site: str
) -> None:
    url = f"{site}/away"
    body = ask(f"Read {url} and {site}/jeju", [{**FETCH, "allowed_domains": ["127.0.0.1"]}], max_tokens=300)
    replies = [call("web_fetch", {"url": url}), call("web_fetch", {"url": f"{site}/jeju"}), ANSWER]
    message = await both(client, engine, replies, body)
    away, direct = [b["content"] for b in message["content"] if b["type"] == "web_fetch_tool_result"]
    assert away == {"type": "web_fetch_tool_result_error", "error_code": "url_not_allowed"}
    assert direct["type"] == "web_fetch_result"


async def test_a_structured_answer_after_a_search(client: httpx.AsyncClient, engine: FakeEngine) -> None:
    schema = {"type": "object", "properties": {"height": {"type": "integer"}}, "required": ["height"]}
    body = ask(
        "How high is Hallasan?",
        [SEARCH],
        max_tokens=300,
        output_config={"format": {"type": "json_schema", "schema": schema}},
    )
    message = await both(
        client, engine, [call("web_search", {"query": "Hallasan"}), ['{"height": 1947}']], body
    )
    assert [b["type"] for b in message["content"]] == ["server_tool_use", "web_search_tool_result", "text"]
    assert json.loads(message["content"][2]["text"]) == {"height": 1947}
    # Both answers were constrained: calls or the schema's JSON, before the search and after it.
    assert all("height" in (request.grammar or "") for request in engine.requests[-2:])


async def test_two_replies_in_one_container_each_get_only_their_own_files(
    client: httpx.AsyncClient, engine: FakeEngine
) -> None:
    body = WRITE_A_FILE
    engine.enqueue(call("bash_code_execution", {"command": "true"}))
    engine.enqueue(ANSWER)
    first = await client.post("/v1/messages", json=body)
    container = first.json()["container"]["id"]
    # The slow one starts first; the other's files must not be counted as its, nor its as the other's.
    engine.enqueue(call("bash_code_execution", {"command": "sleep 0.5; echo X > X.txt; echo X"}))
    engine.enqueue(call("bash_code_execution", {"command": "echo Y > Y.txt; echo Y"}))
    engine.enqueue(ANSWER)
    engine.enqueue(ANSWER)
    replies = await asyncio.gather(
        *(client.post("/v1/messages", json={**body, "container": container}) for _ in range(2))
    )
    for reply in replies:
        assert reply.status_code == 200, reply.text
        result = reply.json()["content"][1]["content"]
        name = result["stdout"].strip()
        (output,) = result["content"]
        download = await client.get(f"/v1/files/{output['file_id']}/content")
        assert download.content == f"{name}\n".encode()
