"""Thinking signatures: an HMAC of the thinking under a server secret that survives restarts.

A signature is `v2` + base64url(MAC ‖ zlib(thinking)), the MAC taken over the compressed bytes. It
carries the thinking it signs, so a block returned with `display: "omitted"` (empty `thinking`, full
signature) or as `redacted_thinking` (`data` is the same blob) can be put back into the prompt on
the next turn. The blob is signed, not encrypted: on a self-hosted server the reasoning belongs to
its operator. A block whose text or signature was altered fails the MAC and the request gets a 400.

Nothing a client sends is decompressed before its MAC is verified, and even a genuine blob inflates
to at most `MAX_THINKING_BYTES`: a forged blob of zeros is a decompression bomb (1.3 MB → 1 GB).
`v1` signatures (MAC over the plaintext, so checking one meant decompressing it first) are refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

_VERSION = "v2"
_MAC_SIZE = 32
_CONTEXT = b"sijo-thinking-v2\x00"

# The most thinking one signature may carry. A thinking block is at most `max_tokens` of output
# (128k tokens for the largest Claude models, about 0.5 MB of text); 4 MiB leaves room for long
# tokens and multi-byte text, and bounds what any signature can inflate to.
MAX_THINKING_BYTES = 4 * 1024 * 1024
# zlib's worst case for incompressible input: 5 bytes per 16 KiB stored block, plus 6.
# The most thinking all of one request's signatures may carry together.
MAX_REQUEST_THINKING_BYTES = 4 * MAX_THINKING_BYTES
_MAX_BLOB_BYTES = _MAC_SIZE + MAX_THINKING_BYTES + 5 * (MAX_THINKING_BYTES // 16384 + 1) + 6
_MAX_ENCODED_CHARS = -(-_MAX_BLOB_BYTES * 4 // 3)  # base64 without padding


class BadSignatureError(ValueError):
    """The signature was not made by this server's secret, or the thinking does not match it."""


class ThinkingSigner:
    def __init__(self, secret: bytes) -> None:
        if len(secret) < 32:
            raise ValueError("the signing secret must be at least 32 bytes")
        self._secret = secret

    def sign(self, thinking: str) -> str:
        compressed = zlib.compress(thinking.encode("utf-8"))
        blob = self._mac(compressed) + compressed
        return _VERSION + base64.urlsafe_b64encode(blob).decode("ascii").rstrip("=")

    def open(self, signature: str) -> str:
        """The thinking a signature carries; raises `BadSignatureError` if it is not genuine."""
        if not signature.startswith(_VERSION):
            raise BadSignatureError("unknown signature version")
        encoded = signature[len(_VERSION) :]
        if len(encoded) > _MAX_ENCODED_CHARS:
            raise BadSignatureError("signature too long")
        try:
            blob = base64.b64decode(encoded + "=" * (-len(encoded) % 4), altchars=b"-_", validate=True)
        except ValueError as exc:  # binascii.Error, or characters outside ASCII
            raise BadSignatureError("malformed signature") from exc
        mac, compressed = blob[:_MAC_SIZE], blob[_MAC_SIZE:]
        # Authenticate first: only bytes this server compressed itself are ever inflated.
        if not hmac.compare_digest(mac, self._mac(compressed)):
            raise BadSignatureError("signature mismatch")
        try:
            return _inflate(compressed).decode("utf-8")
        except (zlib.error, UnicodeDecodeError) as exc:
            raise BadSignatureError("malformed signature") from exc

    def derived(self, context: bytes) -> ThinkingSigner:
        """A signer under a key of its own for another use (`SEALING`): what one signs, the other refuses."""
        return ThinkingSigner(hmac.new(self._secret, context, hashlib.sha256).digest())

    def opener(self, budget: int = MAX_REQUEST_THINKING_BYTES) -> Callable[[str], str]:
        """`open` for one request: all the thinking its signatures carry together is at most
        `budget` bytes, so a body repeating one genuine, highly compressible signature thousands of
        times cannot inflate to gigabytes."""
        spent = 0

        def open_within_budget(signature: str) -> str:
            nonlocal spent
            thinking = self.open(signature)
            spent += len(thinking)
            if spent > budget:
                raise BadSignatureError(f"the request's thinking blocks carry more than {budget} bytes")
            return thinking

        return open_within_budget

    def _mac(self, compressed: bytes) -> bytes:
        return hmac.new(self._secret, _CONTEXT + compressed, hashlib.sha256).digest()


def _inflate(compressed: bytes) -> bytes:
    """`compressed` inflated, if it is one whole zlib stream of at most `MAX_THINKING_BYTES`."""
    inflater = zlib.decompressobj()
    text = inflater.decompress(compressed, MAX_THINKING_BYTES)
    if inflater.unconsumed_tail or (not inflater.eof and len(text) == MAX_THINKING_BYTES):
        raise BadSignatureError("the signature carries more thinking than Sijo accepts")
    if not inflater.eof or inflater.unused_data:
        raise BadSignatureError("malformed signature")
    return text


def load_or_create_secret(path: Path) -> bytes:
    """The secret at `path`, created (0600, 32 random bytes) on first use; its directory, if Sijo
    makes it, is private (0700) too, since the database lives there as well."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    secret = secrets.token_bytes(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process created it first
        return path.read_bytes()
    with os.fdopen(fd, "wb") as handle:
        handle.write(secret)
    return secret


# Sealed blobs (`seal`) are signed by `signer.derived(SEALING)`, never by the thinking signer itself,
# and their kind is part of what is signed: a blob made for one use is refused as another.
SEALING = b"sijo-sealed-v1"
SEARCH_RESULT = "web_search_result"


def seal(sealer: ThinkingSigner, kind: str, payload: dict[str, object]) -> str:
    """`payload` (JSON) signed by this server's `sealer` (`derived(SEALING)`), for a client to hand
    back unchanged: a web search result's page text (`encrypted_content`)."""
    return sealer.sign(kind + "\x00" + json.dumps(payload, ensure_ascii=False, separators=(",", ":")))


def open_sealed(open_text: Callable[[str], str], kind: str, blob: str) -> dict[str, Any]:
    """What `seal` sealed as `kind`; ValueError if `blob` is not genuine or was sealed as another kind."""
    text = open_text(blob)
    found, _, body = text.partition("\x00")
    if found != kind:
        raise BadSignatureError(f"not a sealed {kind}")
    try:
        payload = json.loads(body)
    except ValueError as exc:
        raise BadSignatureError("malformed sealed payload") from exc
    if not isinstance(payload, dict):
        raise BadSignatureError("malformed sealed payload")
    return payload
