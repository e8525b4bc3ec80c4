"""API keys and the `anthropic-version` header (reference §4, §5).

Keys are held only as SHA-256 digests and compared in constant time; every configured key is
compared, so timing does not reveal which one (or whether any) came close.

Authentication yields the caller's workspace, which scopes what is shared between requests (prompt
caches). Until keys carry workspaces of their own, each configured key is its own workspace, and
an unauthenticated loopback server has one, `default`.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated

from fastapi import Depends, Request

from sijo.errors import AuthenticationError, InvalidRequestError


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


class ApiKeys:
    def __init__(self, keys: list[str]) -> None:
        self._digests = [_digest(key) for key in keys]

    @property
    def enabled(self) -> bool:
        return bool(self._digests)

    def verify(self, presented: str) -> str | None:
        """The workspace of the key, or None if it is not a configured key."""
        candidate = _digest(presented)
        workspace = None
        for digest in self._digests:
            if hmac.compare_digest(candidate, digest):
                workspace = f"key-{digest.hex()[:16]}"
        return workspace


def _presented_keys(request: Request) -> list[str]:
    keys = [request.headers.get("x-api-key", "")]
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        keys.append(token.strip())
    return [key for key in keys if key]


async def authenticate(request: Request) -> str:
    api_keys: ApiKeys = request.app.state.api_keys
    workspace = DEFAULT_WORKSPACE
    if api_keys.enabled:
        presented = _presented_keys(request)
        if not presented:
            raise AuthenticationError("x-api-key header is required")
        workspaces = [w for w in (api_keys.verify(key) for key in presented) if w is not None]
        if not workspaces:
            raise AuthenticationError("invalid x-api-key")
        workspace = workspaces[0]
    if not request.headers.get("anthropic-version"):
        raise InvalidRequestError("anthropic-version: header is required")
    return workspace


DEFAULT_WORKSPACE = "default"
Authenticated = Annotated[str, Depends(authenticate)]
