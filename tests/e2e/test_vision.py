"""Vision, documents and files end to end: a real server with the embedded model and a projector
written at test time (`tests/projector.py`), and the official SDK as the client.

The projector's weights are random, so what the model says about a picture means nothing; what
these tests check is that the pixels reach the model (the same image gives the same greedy reply,
another image changes it), that image positions are counted and cached like any tokens, and that
every way of giving an image or a document works as the Claude API defines it.
"""

from __future__ import annotations

import base64
import http.server
import io
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import pytest
from PIL import Image

from tests.conftest import Server, start_configured, stop_server
from tests.documents import pdf
from tests.e2e.test_guide import run_example
from tests.e2e.test_platform import wait_until_ended
from tests.projector import write_projector

GUIDE = Path(__file__).parent / "guide"
MODEL = "claude-sonnet-4-6"
IMAGE_POSITIONS = 16  # what the test projector makes of any image


@pytest.fixture(scope="module")
def vision(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("vision")
    projector = write_projector(tmp / "mmproj.gguf")
    config = f'[engines.default]\nmmproj = "{projector}"\n\n[media]\nfetch_allow = ["127.0.0.1"]\n'
    server = start_configured(tmp, config)
    yield server
    stop_server(server)


@pytest.fixture(scope="module")
def client(vision: Server) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=vision.base_url, api_key=vision.api_key, max_retries=0)


def picture(color: tuple[int, int, int], kind: str = "PNG", size: tuple[int, int] = (48, 32)) -> bytes:
    image = Image.new("RGB", size, color)
    for x in range(size[0] // 2):  # a shape, so that pictures differ in more than their colour
        image.putpixel((x, x % size[1]), (255 - color[0], 255 - color[1], 255 - color[2]))
    buffer = io.BytesIO()
    image.save(buffer, format=kind)
    return buffer.getvalue()


def image_block(data: bytes, media_type: str = "image/png", **extra: Any) -> dict[str, Any]:
    source = {"type": "base64", "media_type": media_type, "data": base64.b64encode(data).decode()}
    return {"type": "image", "source": source, **extra}


def ask(client: anthropic.Anthropic, *content: dict[str, Any], **extra: Any) -> anthropic.types.Message:
    return client.messages.create(
        model=MODEL,
        max_tokens=extra.pop("max_tokens", 8),
        extra_body={"temperature": 0},
        messages=[{"role": "user", "content": [*content, {"type": "text", "text": "Describe it."}]}],  # type: ignore[list-item]
        **extra,
    )


def count(client: anthropic.Anthropic, *content: dict[str, Any]) -> int:
    messages = [{"role": "user", "content": [*content, {"type": "text", "text": "Describe it."}]}]
    return client.messages.count_tokens(model=MODEL, messages=messages).input_tokens  # type: ignore[arg-type]


def run_guide(vision: Server, example: str, workdir: Path) -> str:
    shutil.copy(GUIDE / example, workdir / example)
    return run_example(vision, example, workdir, timeout=600)


def test_the_guides_image_example_runs_unchanged(vision: Server, tmp_path: Path) -> None:
    (tmp_path / "diagram.png").write_bytes(picture((30, 120, 200), size=(640, 400)))
    assert run_guide(vision, "vision.py", tmp_path).strip()


def test_the_guides_two_image_comparison_runs_unchanged(vision: Server, tmp_path: Path) -> None:
    (tmp_path / "before.jpg").write_bytes(picture((200, 40, 40), "JPEG", (320, 240)))
    (tmp_path / "after.jpg").write_bytes(picture((40, 200, 40), "JPEG", (320, 240)))
    assert run_guide(vision, "vision_compare.py", tmp_path).strip()


def test_image_positions_are_input_tokens_counted_exactly(client: anthropic.Anthropic) -> None:
    red, blue = image_block(picture((255, 0, 0))), image_block(picture((0, 0, 255)))
    none, one, two = count(client), count(client, red), count(client, red, blue)
    assert one - none >= IMAGE_POSITIONS
    assert two - one == one - none  # every image costs the same here: its positions and its wrapping
    message = ask(client, red, blue)
    assert message.usage.input_tokens == two


def test_the_pixels_reach_the_logits(client: anthropic.Anthropic) -> None:
    # A first request leaves the prompt's cells behind; the two compared both start from them, so
    # they compute the same thing the same way (a fresh prefill and a reused one can differ by
    # kernel noise, and greedy text can part at a near-tie).
    ask(client, image_block(picture((255, 0, 0))), max_tokens=1)
    first = ask(client, image_block(picture((255, 0, 0))), max_tokens=6)
    again = ask(client, image_block(picture((255, 0, 0))), max_tokens=6)
    others = [ask(client, image_block(picture(color)), max_tokens=6) for color in ((0, 0, 255), (0, 255, 0))]
    text = first.content[0].text  # type: ignore[union-attr]
    assert again.content[0].text == text  # type: ignore[union-attr]
    assert any(other.content[0].text != text for other in others)  # type: ignore[union-attr]


def test_a_repeated_image_prefix_is_a_cache_read(client: anthropic.Anthropic) -> None:
    system = "You describe pictures for a museum catalogue. " * 200  # over the 1024-token minimum
    cached = image_block(picture((90, 10, 160)), cache_control={"type": "ephemeral"})
    first = ask(client, cached, system=system, max_tokens=1)
    second = ask(client, cached, system=system, max_tokens=1)
    assert first.usage.cache_creation_input_tokens > IMAGE_POSITIONS
    assert second.usage.cache_read_input_tokens == first.usage.cache_creation_input_tokens
    assert second.usage.input_tokens == first.usage.input_tokens


def test_an_image_inside_a_tool_result(client: anthropic.Anthropic) -> None:
    tool = {"name": "screenshot", "description": "Take a screenshot", "input_schema": {"type": "object"}}
    result = {
        "type": "tool_result",
        "tool_use_id": "toolu_01",
        "content": [{"type": "text", "text": "The screen:"}, image_block(picture((5, 5, 5)))],
    }
    messages = [
        {"role": "user", "content": "What is on my screen?"},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "toolu_01", "name": "screenshot", "input": {}}],
        },
        {"role": "user", "content": [result]},
    ]
    without = [*messages[:2], {"role": "user", "content": [{**result, "content": "The screen:"}]}]
    message = client.messages.create(model=MODEL, max_tokens=4, tools=[tool], messages=messages)  # type: ignore[arg-type, list-item]
    plain = client.messages.count_tokens(model=MODEL, tools=[tool], messages=without)  # type: ignore[arg-type, list-item]
    assert message.usage.input_tokens - plain.input_tokens >= IMAGE_POSITIONS


@pytest.fixture(scope="module")
def pictures() -> Iterator[str]:
    """A local HTTP server with one picture, /cat.png, and a redirect to a private address."""
    body = picture((250, 200, 10))

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/away":
                self.send_response(302)
                self.send_header("Location", "http://10.1.2.3/cat.png")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_a_url_image_is_fetched_and_is_the_same_image(client: anthropic.Anthropic, pictures: str) -> None:
    """The fetched picture is the inline one, pixel for pixel: the inline request reads the prompt
    cache the URL request wrote, image included (another image would end the match where it starts)."""
    system = "You check pictures sent by URL. " * 250  # over the 1024-token minimum
    by_url = {"type": "image", "source": {"type": "url", "url": f"{pictures}/cat.png"}}
    cached = {"cache_control": {"type": "ephemeral"}}
    fetched = ask(client, {**by_url, **cached}, system=system, max_tokens=1)
    inline = ask(client, image_block(picture((250, 200, 10)), **cached), system=system, max_tokens=1)
    assert fetched.usage.cache_creation_input_tokens > IMAGE_POSITIONS
    assert inline.usage.cache_read_input_tokens == fetched.usage.cache_creation_input_tokens


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("http://10.0.0.7/cat.png", "the address 10.0.0.7 is private"),
        ("http://169.254.169.254/latest/meta-data", "cloud metadata"),
        ("/away", "the address 10.1.2.3 is private"),  # a redirect from an allowed host
    ],
)
def test_urls_to_private_addresses_are_refused(
    client: anthropic.Anthropic, pictures: str, path: str, why: str
) -> None:
    url = pictures + path if path.startswith("/") else path
    with pytest.raises(anthropic.BadRequestError) as refused:
        ask(client, {"type": "image", "source": {"type": "url", "url": url}})
    message = refused.value.body["error"]["message"]  # type: ignore[index]
    assert message.startswith("messages.0.content.0.source.url: Unable to download the file: ")
    assert why in message


def pdf_block(data: bytes, **extra: Any) -> dict[str, Any]:
    source = {"type": "base64", "media_type": "application/pdf", "data": base64.b64encode(data).decode()}
    return {"type": "document", "source": source, **extra}


def test_pdf_pages_are_read_as_text_and_images(client: anthropic.Anthropic) -> None:
    one = count(client, pdf_block(pdf("Quarterly revenue rose.")))
    two = count(client, pdf_block(pdf("Quarterly revenue rose.", "Costs fell sharply.")))
    assert two - one >= IMAGE_POSITIONS + 3  # the second page's image and its words


def test_pdf_citations_point_inside_the_document(client: anthropic.Anthropic) -> None:
    pages = ("The museum opened in 1921. It holds ten thousand works.", "Its garden has a pond.")
    document = pdf_block(pdf(*pages), title="Museum", citations={"enabled": True})
    message = client.messages.create(
        model=MODEL,
        max_tokens=60,
        extra_body={"temperature": 0},
        messages=[
            {"role": "user", "content": [document, {"type": "text", "text": "When did the museum open?"}]}
        ],  # type: ignore[list-item]
    )
    for block in message.content:
        assert block.type == "text"
        for citation in block.citations or []:
            assert citation.type == "page_location"
            assert 1 <= citation.start_page_number < citation.end_page_number <= len(pages) + 1
            page = pages[citation.start_page_number - 1]
            assert citation.cited_text.strip() in page and citation.cited_text.strip()
            assert citation.document_index == 0 and citation.document_title == "Museum"


def test_a_broken_pdf_is_a_400_naming_the_block(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError) as refused:
        ask(client, pdf_block(pdf("Fine.")[:200]))
    assert refused.value.body["error"]["message"].startswith("messages.0.content.0")  # type: ignore[index]


def test_a_file_id_image_and_document(client: anthropic.Anthropic) -> None:
    png = picture((1, 99, 199))
    image = client.beta.files.upload(file=("pic.png", png, "image/png"))
    text = client.beta.files.upload(file=("notes.txt", b"Rivers flow to the sea.", "text/plain"))
    by_file = {"type": "image", "source": {"type": "file", "file_id": image.id}}
    document = {"type": "document", "source": {"type": "file", "file_id": text.id}}
    assert count(client, by_file) == count(client, image_block(png))
    message = client.beta.messages.create(
        model=MODEL,
        max_tokens=4,
        messages=[{"role": "user", "content": [by_file, document, {"type": "text", "text": "?"}]}],  # type: ignore[list-item]
        betas=["files-api-2025-04-14"],
    )
    assert message.usage.input_tokens > IMAGE_POSITIONS
    client.beta.files.delete(image.id)
    with pytest.raises(anthropic.BadRequestError) as gone:
        count(client, by_file)
    assert image.id in gone.value.message


def test_a_batch_may_carry_images(client: anthropic.Anthropic) -> None:
    params = {
        "model": MODEL,
        "max_tokens": 4,
        "messages": [
            {"role": "user", "content": [image_block(picture((0, 128, 0))), {"type": "text", "text": "?"}]}
        ],
    }
    created = client.messages.batches.create(requests=[{"custom_id": "picture", "params": params}])  # type: ignore[list-item]
    wait_until_ended(client, created.id)
    (line,) = client.messages.batches.results(created.id)
    assert line.result.type == "succeeded", line.result
    assert line.result.message.usage.input_tokens >= IMAGE_POSITIONS
