"""Thinking signatures: the MAC is verified before anything is inflated, and inflating is capped, so
no `signature` or `redacted_thinking.data` a client sends can be a decompression bomb."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import zlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from sijo import signing
from sijo.app import create_app
from sijo.config import Settings
from sijo.engines.fake import FakeEngine
from sijo.signing import MAX_THINKING_BYTES, BadSignatureError, ThinkingSigner
from tests.conftest import HEADERS

SECRET = b"k" * 32
INFLATED = 200_000_000  # bytes a bomb would inflate to


@pytest.fixture(scope="module")
def bomb() -> bytes:
    """200 MB of zeros deflated: about 200 KB on the wire."""
    packer = zlib.compressobj(9)
    chunk = bytes(1 << 20)
    deflated = b"".join(packer.compress(chunk) for _ in range(INFLATED >> 20))
    return deflated + packer.flush()


@pytest.fixture
def no_inflating(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if anything is decompressed."""

    def refuse(*_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError("decompressed an unauthenticated blob")

    monkeypatch.setattr(zlib, "decompress", refuse)
    monkeypatch.setattr(zlib, "decompressobj", refuse)


def wrap(mac: bytes, deflated: bytes, version: str = "v2") -> str:
    return version + base64.urlsafe_b64encode(mac + deflated).decode("ascii").rstrip("=")


def unwrap(signature: str) -> tuple[bytes, bytes]:
    blob = base64.urlsafe_b64decode(signature[2:] + "=" * (-len(signature[2:]) % 4))
    return blob[:32], blob[32:]


def genuine_mac(deflated: bytes) -> bytes:
    """The MAC this server's signer puts on `deflated` (the `v2` format, computed independently)."""
    return hmac.new(SECRET, b"sijo-thinking-v2\x00" + deflated, hashlib.sha256).digest()


@pytest.mark.parametrize("thinking", ["", "Let me think: 생각 🙂", "a" * MAX_THINKING_BYTES])
def test_a_signature_carries_its_thinking_back(thinking: str) -> None:
    signer = ThinkingSigner(SECRET)
    signature = signer.sign(thinking)
    assert signature.startswith("v2") and signer.open(signature) == thinking
    assert unwrap(signature)[0] == genuine_mac(unwrap(signature)[1])


@pytest.mark.usefixtures("no_inflating")
def test_altered_compressed_bytes_are_refused_before_inflating() -> None:
    signer = ThinkingSigner(SECRET)
    mac, deflated = unwrap(signer.sign("The answer is 42."))
    for altered in (deflated[:-1] + bytes([deflated[-1] ^ 1]), deflated[:-1], deflated + b"\0"):
        with pytest.raises(BadSignatureError):
            signer.open(wrap(mac, altered))
    with pytest.raises(BadSignatureError):
        ThinkingSigner(b"q" * 32).open(wrap(mac, deflated))  # another server's secret


@pytest.mark.usefixtures("no_inflating")
@pytest.mark.parametrize("version", ["v1", "v2"])
def test_a_forged_bomb_is_refused_without_being_inflated(bomb: bytes, version: str) -> None:
    signer = ThinkingSigner(SECRET)
    for mac in (bytes(32), b"\xff" * 32, b""):
        with pytest.raises(BadSignatureError):
            signer.open(wrap(mac, bomb, version))


def test_a_genuinely_signed_bomb_inflates_only_up_to_the_cap(bomb: bytes) -> None:
    signer = ThinkingSigner(SECRET)
    started = time.monotonic()
    with pytest.raises(BadSignatureError, match="more thinking"):
        signer.open(wrap(genuine_mac(bomb), bomb))
    assert time.monotonic() - started < 1  # 4 MiB inflated, not 200 MB


def test_a_signature_of_more_thinking_than_the_cap_is_refused() -> None:
    signer = ThinkingSigner(SECRET)
    with pytest.raises(BadSignatureError, match="more thinking"):
        signer.open(signer.sign("a" * (MAX_THINKING_BYTES + 1)))


def test_v1_signatures_are_refused() -> None:
    """`v1` signed the plaintext, so checking one meant inflating it first: no longer accepted."""
    text = b"Let me think."
    mac = hmac.new(SECRET, b"sijo-thinking-v1\x00" + text, hashlib.sha256).digest()
    with pytest.raises(BadSignatureError, match="version"):
        ThinkingSigner(SECRET).open(wrap(mac, zlib.compress(text), "v1"))


def test_an_overlong_signature_is_refused_before_it_is_decoded(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError("decoded an overlong signature")

    monkeypatch.setattr(signing.base64, "b64decode", refuse)
    with pytest.raises(BadSignatureError, match="too long"):
        ThinkingSigner(SECRET).open("v2" + "A" * (2 * MAX_THINKING_BYTES))


@pytest.mark.parametrize("malformed", ["", "v2", "v2!!", "v2" + "A" * 43, "v2é"])
def test_malformed_signatures_are_refused(malformed: str) -> None:
    with pytest.raises(BadSignatureError):
        ThinkingSigner(SECRET).open(malformed)


@pytest.fixture
async def local(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The app in-process over the fake engine, reached as `localhost`."""
    app = create_app(settings, engines={"default": FakeEngine()})
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost", headers=HEADERS) as c:
            yield c


@pytest.mark.usefixtures("no_inflating")
@pytest.mark.parametrize("version", ["v1", "v2"])
@pytest.mark.parametrize("path", ["/v1/messages", "/v1/messages/count_tokens"])
async def test_a_bomb_in_redacted_thinking_gets_a_quick_400(
    local: httpx.AsyncClient, bomb: bytes, path: str, version: str
) -> None:
    redacted = {"type": "redacted_thinking", "data": wrap(bytes(32), bomb, version)}
    body: dict[str, Any] = {
        "model": "claude-sonnet-4-6",
        "messages": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": [redacted]},
            {"role": "user", "content": "And?"},
        ],
    }
    if path == "/v1/messages":
        body["max_tokens"] = 20
    started = time.monotonic()
    response = await local.post(path, json=body)
    assert time.monotonic() - started < 2
    assert response.status_code == 400
    assert response.json()["error"] == {
        "type": "invalid_request_error",
        "message": "messages.1.content.0: Invalid `data` in `redacted_thinking` block",
    }


def test_a_request_cannot_open_more_thinking_than_its_budget() -> None:
    signer = ThinkingSigner(b"k" * 32)
    signature = signer.sign("x" * 1000)  # compresses to a few dozen bytes
    opener = signer.opener(budget=10_000)
    for _ in range(10):
        assert opener(signature) == "x" * 1000
    with pytest.raises(BadSignatureError, match="more than 10000 bytes"):
        opener(signature)
    assert signer.opener(budget=10_000)(signature)  # the budget is per request
