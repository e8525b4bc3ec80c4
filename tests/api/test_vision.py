"""Images, documents and citations through the API, in-process over the fake engine.

The fake engine reads images (each costs 16 positions and a `[`/`]` pair): what these tests check is
Sijo's own work — sources decoded and checked, images placed in the prompt and handed to the
engine, documents laid out, citations taken from the documents. The real model and projector are
exercised end to end in `tests/e2e/test_vision.py`.
"""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import httpx
import pytest
from PIL import Image

from sijo.engines.base import placeholders
from sijo.engines.fake import FakeEngine
from tests.api.test_messages import parse_sse
from tests.documents import pdf

MODEL = "claude-sonnet-4-6"
IMAGE_TOKENS = 16


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine(image_tokens=IMAGE_TOKENS)


def png(color: tuple[int, int, int], size: tuple[int, int] = (32, 24)) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def image_block(data: str, media_type: str = "image/png") -> dict[str, Any]:
    return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}


def body(*content: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "model": MODEL,
        "max_tokens": 20,
        "messages": [{"role": "user", "content": list(content)}],
        **extra,
    }


def text_document(text: str, *, cite: bool = True, title: str | None = "Notes") -> dict[str, Any]:
    block: dict[str, Any] = {
        "type": "document",
        "source": {"type": "text", "media_type": "text/plain", "data": text},
        "citations": {"enabled": cite},
    }
    if title is not None:
        block["title"] = title
    return block


async def test_an_image_reaches_the_engine_as_its_positions(
    client: httpx.AsyncClient, engine: FakeEngine
) -> None:
    engine.enqueue(["A red square."])
    request = body(image_block(png((255, 0, 0))), {"type": "text", "text": "What is this?"})
    count = await client.post(
        "/v1/messages/count_tokens", json={k: v for k, v in request.items() if k != "max_tokens"}
    )
    response = await client.post("/v1/messages", json=request)
    assert response.status_code == 200, response.text
    sent = engine.requests[-1]
    assert len(sent.images) == 1
    span = sent.images[0]
    assert (span.bitmap.width, span.bitmap.height) == (32, 24)
    assert sent.tokens[span.start : span.start + span.count] == placeholders(span.bitmap.digest, IMAGE_TOKENS)
    assert sent.tokens[span.start - 1] == ord("[") and sent.tokens[span.start + span.count] == ord("]")
    usage = response.json()["usage"]
    assert usage["input_tokens"] == count.json()["input_tokens"] == len(sent.tokens)


async def test_the_same_pixels_are_the_same_image_and_other_pixels_another(
    client: httpx.AsyncClient, engine: FakeEngine
) -> None:
    for color in ((10, 20, 30), (10, 20, 30), (10, 20, 31)):
        engine.enqueue(["ok"])
        response = await client.post(
            "/v1/messages", json=body(image_block(png(color)), {"type": "text", "text": "?"})
        )
        assert response.status_code == 200, response.text
    first, again, other = (request.images[0].bitmap.digest for request in engine.requests[-3:])
    assert first == again != other


async def test_a_model_without_a_projector_refuses_images(client: httpx.AsyncClient) -> None:
    # `engine` here reads images: ask a settings-free client with one that does not.
    transport_engine = FakeEngine()
    from sijo.app import create_app
    from sijo.config import Settings

    app = create_app(Settings(), engines={"default": transport_engine})
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://sijo.localhost"
        ) as plain:
            headers = {"anthropic-version": "2023-06-01"}
            response = await plain.post(
                "/v1/messages", json=body(image_block(png((1, 2, 3)))), headers=headers
            )
            info = await plain.get(f"/v1/models/{MODEL}", headers=headers)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["message"] == f"messages.0.content.0: {MODEL} does not support image input"
    assert info.json()["capabilities"]["image_input"]["supported"] is False
    own = await client.get(f"/v1/models/{MODEL}")
    assert own.json()["capabilities"]["image_input"]["supported"] is True


@pytest.mark.parametrize(
    ("block", "field", "words"),
    [
        (image_block(png((0, 0, 0)), "image/jpeg"), "messages.0.content.0", "does not match"),
        (image_block("not base64!"), "messages.0.content.0.source.data", "base64"),
        (
            image_block(base64.b64encode(b"plain text, not an image").decode()),
            "messages.0.content.0",
            "Could not process image",
        ),
        (
            {"type": "image", "source": {"type": "url", "url": "http://127.0.0.1:9/cat.png"}},
            "messages.0.content.0.source.url",
            "is loopback",
        ),
        (
            {"type": "image", "source": {"type": "url", "url": "file:///etc/passwd"}},
            "messages.0.content.0.source.url",
            "only http and https",
        ),
        (
            {"type": "image", "source": {"type": "file", "file_id": "file_nope"}},
            "messages.0.content.0.source.file_id",
            "File not found: file_nope",
        ),
    ],
)
async def test_bad_images_are_400s_naming_the_block(
    client: httpx.AsyncClient, engine: FakeEngine, block: dict[str, Any], field: str, words: str
) -> None:
    response = await client.post("/v1/messages", json=body(block, {"type": "text", "text": "?"}))
    assert response.status_code == 400, response.text
    message = response.json()["error"]["message"]
    assert message.startswith(field), message
    assert words in message
    assert engine.requests == []


async def test_images_in_a_tool_result(client: httpx.AsyncClient, engine: FakeEngine) -> None:
    engine.enqueue(["It is blue."])
    messages = [
        {"role": "user", "content": "Take a screenshot."},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "toolu_1", "name": "shot", "input": {}}],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_1",
                    "content": [{"type": "text", "text": "Here:"}, image_block(png((0, 0, 255)))],
                }
            ],
        },
    ]
    tools = [{"name": "shot", "description": "Screenshot", "input_schema": {"type": "object"}}]
    response = await client.post(
        "/v1/messages", json={"model": MODEL, "max_tokens": 20, "messages": messages, "tools": tools}
    )
    assert response.status_code == 200, response.text
    assert len(engine.requests[-1].images) == 1


async def test_a_text_document_is_cited_with_the_exact_span(
    client: httpx.AsyncClient, engine: FakeEngine
) -> None:
    text = "The sky is green. Grass is blue.\n\nWater is dry."
    engine.enqueue(['Says: <cite ref="1.2">grass is blue</cite>', " and more."])
    response = await client.post(
        "/v1/messages", json=body(text_document(text), {"type": "text", "text": "Colours?"})
    )
    assert response.status_code == 200, response.text
    sent = engine.requests[-1]
    assert sent.grammar is not None and '"1.2"' in sent.grammar and '"1.4"' not in sent.grammar
    content = response.json()["content"]
    assert [block["text"] for block in content] == ["Says: ", "grass is blue", " and more."]
    assert "citations" not in content[0] and "citations" not in content[2]
    (citation,) = content[1]["citations"]
    assert citation["type"] == "char_location"
    assert citation["document_index"] == 0 and citation["document_title"] == "Notes"
    assert citation["cited_text"] == text[citation["start_char_index"] : citation["end_char_index"]]
    assert citation["cited_text"].strip() == "Grass is blue."


async def test_citations_stream_as_citations_deltas(client: httpx.AsyncClient, engine: FakeEngine) -> None:
    engine.enqueue(['<cite ref="1.1">', "one", "</cite>"])
    response = await client.post(
        "/v1/messages", json=body(text_document("One thing."), {"type": "text", "text": "?"}, stream=True)
    )
    events = parse_sse(response.text)
    start = next(data for name, data in events if name == "content_block_start")
    assert start["content_block"] == {"type": "text", "text": "", "citations": []}
    deltas = [data["delta"] for name, data in events if name == "content_block_delta"]
    assert deltas[0]["type"] == "citations_delta"
    assert deltas[0]["citation"]["cited_text"] == "One thing."
    assert "".join(d["text"] for d in deltas if d["type"] == "text_delta") == "one"


async def test_content_documents_cite_blocks(client: httpx.AsyncClient, engine: FakeEngine) -> None:
    engine.enqueue(['<cite ref="1.2">b</cite>'])
    document = {
        "type": "document",
        "source": {
            "type": "content",
            "content": [{"type": "text", "text": "First."}, {"type": "text", "text": "Second."}],
        },
        "citations": {"enabled": True},
    }
    response = await client.post("/v1/messages", json=body(document, {"type": "text", "text": "?"}))
    (citation,) = response.json()["content"][0]["citations"]
    assert citation == {
        "type": "content_block_location",
        "cited_text": "Second.",
        "document_index": 0,
        "document_title": None,
        "start_block_index": 1,
        "end_block_index": 2,
        "file_id": None,
    }


async def test_citations_on_some_documents_only_are_refused(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/messages",
        json=body(text_document("A."), text_document("B.", cite=False), {"type": "text", "text": "?"}),
    )
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith("messages.0.content.1.citations:")


async def test_citations_with_structured_outputs_are_refused(client: httpx.AsyncClient) -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}
    request = body(
        text_document("A."),
        {"type": "text", "text": "?"},
        output_config={"format": {"type": "json_schema", "schema": schema}},
    )
    response = await client.post("/v1/messages", json=request)
    assert response.status_code == 400
    assert "Citations" in response.json()["error"]["message"]


async def test_documents_without_citations_are_plain_text(
    client: httpx.AsyncClient, engine: FakeEngine
) -> None:
    engine.enqueue(["Fine."])
    response = await client.post(
        "/v1/messages",
        json=body(text_document("Plain words.", cite=False), {"type": "text", "text": "?"}),
    )
    assert response.status_code == 200
    sent = engine.requests[-1]
    prompt = "".join(chr(t) for t in sent.tokens)
    assert "<document_content>\nPlain words.\n</document_content>" in prompt
    assert "[1.1]" not in prompt
    assert sent.grammar is None
    assert json.dumps(response.json()["content"]) == json.dumps([{"type": "text", "text": "Fine."}])


async def test_openai_image_url_parts_are_images(client: httpx.AsyncClient, engine: FakeEngine) -> None:
    engine.enqueue(["Red."])
    content = [
        {"type": "text", "text": "What colour?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png((200, 0, 0))}"}},
    ]
    response = await client.post(
        "/v1/chat/completions", json={"model": MODEL, "messages": [{"role": "user", "content": content}]}
    )
    assert response.status_code == 200, response.text
    assert len(engine.requests[-1].images) == 1
    bad = [{"type": "image_url", "image_url": {"url": "data:image/png;base64,bm90IGFuIGltYWdl"}}]
    refused = await client.post(
        "/v1/chat/completions", json={"model": MODEL, "messages": [{"role": "user", "content": bad}]}
    )
    assert refused.status_code == 400
    assert refused.json()["error"]["message"].startswith("messages.0.content.0"), refused.text


def pdf_base64(*pages: str) -> str:
    return base64.b64encode(pdf(*pages)).decode()


async def test_pdf_pages_are_cited_by_page(client: httpx.AsyncClient, engine: FakeEngine) -> None:
    engine.enqueue(['<cite ref="1.3">', "ponds", "</cite>"])
    document = {
        "type": "document",
        "source": {
            "type": "base64",
            "media_type": "application/pdf",
            "data": pdf_base64("One. Two.", "Ponds."),
        },
        "title": "Park",
        "citations": {"enabled": True},
    }
    response = await client.post("/v1/messages", json=body(document, {"type": "text", "text": "?"}))
    assert response.status_code == 200, response.text
    (citation,) = response.json()["content"][0]["citations"]
    assert citation == {
        "type": "page_location",
        "cited_text": "Ponds.",
        "document_index": 0,
        "document_title": "Park",
        "start_page_number": 2,
        "end_page_number": 3,
        "file_id": None,
    }
    assert len(engine.requests[-1].images) == 2  # the fake engine reads images: a page image each


async def test_the_same_data_declared_twice_is_checked_twice(client: httpx.AsyncClient) -> None:
    data = png((9, 9, 9))
    response = await client.post(
        "/v1/messages",
        json=body(image_block(data), image_block(data, "image/jpeg"), {"type": "text", "text": "?"}),
    )
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith("messages.0.content.1")


async def test_citations_with_tools_are_shown_without_references(
    client: httpx.AsyncClient, engine: FakeEngine
) -> None:
    engine.enqueue(["Fine."])
    tools = [{"name": "look", "description": "Look", "input_schema": {"type": "object"}}]
    response = await client.post(
        "/v1/messages",
        json=body(text_document("A fact. Another."), {"type": "text", "text": "?"}, tools=tools),
    )
    assert response.status_code == 200, response.text
    prompt = "".join(chr(t) for t in engine.requests[-1].tokens if t > 0)
    assert "A fact. Another." in prompt and "[1.1]" not in prompt


async def test_an_inline_image_sent_again_is_not_decoded_again(
    client: httpx.AsyncClient, engine: FakeEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sijo.media import images

    calls: list[str] = []
    decode = images.decode_image

    def counted(data: bytes, **options: Any) -> Any:
        calls.append(options["field"])
        return decode(data, **options)

    monkeypatch.setattr(images, "decode_image", counted)
    data = png((70, 80, 90))
    for _ in range(3):
        engine.enqueue(["ok"])
        response = await client.post(
            "/v1/messages", json=body(image_block(data), {"type": "text", "text": "?"})
        )
        assert response.status_code == 200, response.text
    assert len(calls) == 1
    assert len({request.images[0].bitmap.digest for request in engine.requests[-3:]}) == 1
    refused = await client.post(
        "/v1/messages", json=body(image_block(data, "image/gif"), {"type": "text", "text": "?"})
    )
    assert refused.status_code == 400  # another declared type is checked again, not taken from the cache
