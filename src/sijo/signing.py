"""Thinking signatures: an HMAC of the thinking under a server secret that survives restarts.

A signature is `v1` + base64url(MAC ‖ zlib(thinking)). It carries the thinking it signs, so a
block returned with `display: "omitted"` (empty `thinking`, full signature) or as
`redacted_thinking` (`data` is the same blob) can be put back into the prompt on the next turn.
The blob is signed, not encrypted: on a self-hosted server the reasoning belongs to its operator.
A block whose text or signature was altered fails the MAC and the request gets a 400.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import zlib
from pathlib import Path

_VERSION = "v1"
_MAC_SIZE = 32
_CONTEXT = b"sijo-thinking-v1\x00"


class BadSignatureError(ValueError):
    """The signature was not made by this server's secret, or the thinking does not match it."""


class ThinkingSigner:
    def __init__(self, secret: bytes) -> None:
        if len(secret) < 32:
            raise ValueError("the signing secret must be at least 32 bytes")
        self._secret = secret

    def sign(self, thinking: str) -> str:
        text = thinking.encode("utf-8")
        blob = self._mac(text) + zlib.compress(text)
        return _VERSION + base64.urlsafe_b64encode(blob).decode("ascii").rstrip("=")

    def open(self, signature: str) -> str:
        """The thinking a signature carries; raises `BadSignatureError` if it is not genuine."""
        if not signature.startswith(_VERSION):
            raise BadSignatureError("unknown signature version")
        encoded = signature[len(_VERSION) :]
        try:
            blob = base64.b64decode(encoded + "=" * (-len(encoded) % 4), altchars=b"-_", validate=True)
            text = zlib.decompress(blob[_MAC_SIZE:])
        except (ValueError, zlib.error) as exc:
            raise BadSignatureError("malformed signature") from exc
        if not hmac.compare_digest(blob[:_MAC_SIZE], self._mac(text)):
            raise BadSignatureError("signature mismatch")
        try:
            return text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadSignatureError("malformed signature") from exc

    def _mac(self, text: bytes) -> bytes:
        return hmac.new(self._secret, _CONTEXT + text, hashlib.sha256).digest()


def load_or_create_secret(path: Path) -> bytes:
    """The secret at `path`, created (0600, 32 random bytes) on first use."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_bytes(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process created it first
        return path.read_bytes()
    with os.fdopen(fd, "wb") as handle:
        handle.write(secret)
    return secret
