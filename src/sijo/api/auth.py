"""Who is calling: API keys, admin keys and the `anthropic-version` header (reference §4, §5, §14).

Keys made by `sijo keys create` live in the database (hashed; see `store/keys.py`); keys from the
config file or `SIJO_API_KEYS` are held as SHA-256 digests here, and every one is compared in
constant time, so timing does not reveal which one (or whether any) came close. Once any key
exists, every request must present one; a server with none serves loopback only, unauthenticated.

A caller is a workspace (which scopes prompt caches and batches), an account (what the usage
ledger records) and a rate-limit bucket with its limits. The Admin API takes admin keys only.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from sijo.config import RateLimitConfig
from sijo.errors import AuthenticationError, InvalidRequestError, PermissionDeniedError
from sijo.prepared import Account
from sijo.ratelimit import Limits, RateLimiter
from sijo.store.keys import ApiKey, KeyLimits, KeyStore

DEFAULT_WORKSPACE = "default"


@dataclass(frozen=True, slots=True)
class Caller:
    workspace: str
    account: Account
    rate_key: str
    limits: Limits


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


def _config_key_id(secret: bytes, digest: bytes) -> str:
    """A stable, non-reversible id for a key from the config file (it is stored with its batches and
    usage; a bare hash of a short key could be brute-forced from the database)."""
    return hmac.new(secret, digest, hashlib.sha256).hexdigest()[:20]


def _match(presented: str, digests: list[bytes]) -> bytes | None:
    candidate = _digest(presented)
    found = None
    for digest in digests:
        if hmac.compare_digest(candidate, digest):
            found = digest
    return found


class Authenticator:
    def __init__(
        self,
        store: KeyStore,
        api_keys: list[str],
        admin_keys: list[str],
        limits: RateLimitConfig,
        secret: bytes,
    ) -> None:
        self.store = store
        self._secret = secret
        self._api = [_digest(key) for key in api_keys]
        self._admin = [_digest(key) for key in admin_keys]
        self._defaults = limits
        self._keys_exist = bool(api_keys)

    async def caller(self, presented: list[str]) -> Caller:
        if not await self._required():
            return self.keyless("anonymous")
        if not presented:
            raise AuthenticationError("x-api-key header is required")
        for key in presented:
            digest = _match(key, self._api)
            if digest is not None:
                key_id = f"apikey_cfg_{_config_key_id(self._secret, digest)}"
                account = Account(api_key_id=key_id)
                return Caller(f"cfg-{key_id}", account, key_id, self._limits(KeyLimits()))
            stored = await asyncio.to_thread(self.store.verify, key, "api")
            if stored is not None:
                return self._stored(stored)
        raise AuthenticationError("invalid x-api-key")

    async def admin(self, presented: list[str]) -> None:
        if not presented:
            raise AuthenticationError("x-api-key header is required")
        for key in presented:
            if _match(key, self._admin) is not None:
                return
            if await asyncio.to_thread(self.store.verify, key, "admin") is not None:
                return
        api_keys = [await self._is_api_key(key) for key in presented]
        if any(api_keys):
            raise PermissionDeniedError("the Admin API requires an admin key, not an API key")
        raise AuthenticationError("invalid x-api-key")

    def keyless(self, rate_key: str) -> Caller:
        """A caller without a key (loopback on a keyless server, or the Console's Workbench): the
        default workspace, the default limits, in the bucket `rate_key`."""
        return Caller(DEFAULT_WORKSPACE, Account(), rate_key, self._limits(KeyLimits()))

    async def keys_exist(self) -> bool:
        """Whether any key exists, API or admin: until one does, the server trusts loopback."""
        if self._admin or await self._required():
            return True
        return await asyncio.to_thread(self.store.any, "admin")

    async def admin_identity(self, presented: str) -> tuple[str, str | None]:
        """How the audit log names the admin key `presented` (never by any part of the key itself),
        and its id if it is a stored one; the Admin API's refusal when it is no admin key."""
        await self.admin([presented] if presented else [])
        stored = await asyncio.to_thread(self.store.verify, presented, "admin")
        if stored is not None:
            return f"admin key {stored.name} ({stored.id})", stored.id
        return f"configured admin key {_config_key_id(self._secret, _digest(presented))[:8]}", None

    async def _is_api_key(self, key: str) -> bool:
        return _match(key, self._api) is not None or (
            await asyncio.to_thread(self.store.verify, key, "api") is not None
        )

    async def _required(self) -> bool:
        if not self._keys_exist:  # once a key exists it is never deleted, only deactivated
            self._keys_exist = await asyncio.to_thread(self.store.any, "api")
        return self._keys_exist

    def _stored(self, key: ApiKey) -> Caller:
        account = Account(api_key_id=key.id, workspace_id=key.workspace_id)
        return Caller(key.workspace_id or DEFAULT_WORKSPACE, account, key.id, self._limits(key.limits))

    def _limits(self, own: KeyLimits) -> Limits:
        defaults = self._defaults
        return Limits(
            own.requests_per_minute or defaults.requests_per_minute,
            own.input_tokens_per_minute or defaults.input_tokens_per_minute,
            own.output_tokens_per_minute or defaults.output_tokens_per_minute,
        )


def presented_keys(request: Request) -> list[str]:
    keys = [request.headers.get("x-api-key", "")]
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        keys.append(token.strip())
    return [key for key in keys if key]


def _version(request: Request) -> None:
    if not request.headers.get("anthropic-version"):
        raise InvalidRequestError("anthropic-version: header is required")


async def authenticate(request: Request) -> Caller:
    """The caller; its rate-limit state goes on the response (the Messages routes refine it)."""
    authenticator: Authenticator = request.app.state.authenticator
    caller = await authenticator.caller(presented_keys(request))
    _version(request)
    limiter: RateLimiter = request.app.state.limiter
    request.state.ratelimit_headers = (await limiter.peek(caller.rate_key, caller.limits)).headers()
    return caller


async def authenticate_admin(request: Request) -> None:
    authenticator: Authenticator = request.app.state.authenticator
    await authenticator.admin(presented_keys(request))
    _version(request)


Authenticated = Annotated[Caller, Depends(authenticate)]
AdminAuthenticated = Annotated[None, Depends(authenticate_admin)]
