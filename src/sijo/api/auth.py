"""API keys and the `anthropic-version` header (reference §4, §5).

Keys are held only as SHA-256 digests and compared in constant time; every configured key is
compared, so timing does not reveal which one (or whether any) came close.
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

    def verify(self, presented: str) -> bool:
        candidate = _digest(presented)
        matched = False
        for digest in self._digests:
            matched |= hmac.compare_digest(candidate, digest)
        return matched


def _presented_keys(request: Request) -> list[str]:
    keys = [request.headers.get("x-api-key", "")]
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        keys.append(token.strip())
    return [key for key in keys if key]


async def authenticate(request: Request) -> None:
    api_keys: ApiKeys = request.app.state.api_keys
    if api_keys.enabled:
        presented = _presented_keys(request)
        if not presented:
            raise AuthenticationError("x-api-key header is required")
        if not any(api_keys.verify(key) for key in presented):
            raise AuthenticationError("invalid x-api-key")
    if not request.headers.get("anthropic-version"):
        raise InvalidRequestError("anthropic-version: header is required")


Authenticated = Annotated[None, Depends(authenticate)]
