"""Prompt caching as the Claude API defines it (reference §6): breakpoints, lookup, TTLs and billing.

This module decides what a request *bills*; the engine decides what it *recomputes*. For every
breakpoint (a block's `cache_control`, or the last block under top-level automatic caching) the
prefix up to and including that block is an entry, keyed by workspace, model and the exact prefix
tokens (tools → system → messages, as rendered). A breakpoint looks back up to 20 blocks for an
entry that is still alive; the longest hit is `cache_read_input_tokens`, the tokens from there to
the last breakpoint are written (`cache_creation_input_tokens`, split by the TTL of the breakpoint
that ends each stretch), the rest is `input_tokens`. Prefixes shorter than the model's minimum are
silently not cached. A hit pushes the entry's expiry back by its TTL. The same prefixes are handed
to the engine as `KeepPoint`s, so that an entry that bills as a read really is not recomputed.
Entries live in this process, or in Redis when one is configured: then every process of a fleet in
front of the same upstream bills a prefix written through one as a read through another.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import redis.asyncio

from sijo.engines.base import KeepPoint
from sijo.errors import InvalidRequestError
from sijo.prompt.conversation import Conversation, Ttl
from sijo.prompt.template import Prompt
from sijo.protocol.base import CacheControl

MAX_BREAKPOINTS = 4
LOOKBACK_BLOCKS = 20
TTL_SECONDS: dict[Ttl, float] = {"5m": 300.0, "1h": 3600.0}


@dataclass(frozen=True, slots=True)
class Breakpoint:
    block: int
    ttl: Ttl


@dataclass(frozen=True, slots=True)
class CacheUsage:
    read: int = 0
    write_5m: int = 0
    write_1h: int = 0

    @property
    def write(self) -> int:
        return self.write_5m + self.write_1h


@dataclass(frozen=True, slots=True)
class CachePlan:
    usage: CacheUsage
    keep: tuple[KeepPoint, ...]


NO_CACHE = CachePlan(CacheUsage(), ())


def breakpoints(conversation: Conversation, automatic: CacheControl | None) -> list[Breakpoint]:
    """The request's breakpoints in prompt order, checked against the API's limits (400 if broken)."""
    parts = conversation.parts()
    found = [Breakpoint(p.block, p.cache_ttl) for p in parts if p.cache_ttl and p.block is not None]
    numbered = [p.block for p in parts if p.block is not None]
    if automatic is not None and numbered and not any(b.block == numbered[-1] for b in found):
        found.append(Breakpoint(numbered[-1], automatic.ttl or "5m"))
    if len(found) > MAX_BREAKPOINTS:
        raise InvalidRequestError(
            f"A maximum of {MAX_BREAKPOINTS} blocks with cache_control may be provided. Found {len(found)}."
        )
    fields = {p.block: p.field for p in parts}
    for earlier, later in itertools.pairwise(found):
        if earlier.ttl == "5m" and later.ttl == "1h":
            where = fields.get(later.block) or "cache_control"
            raise InvalidRequestError(
                f"{where}.cache_control.ttl: a ttl='1h' cache_control block must not come after a "
                "ttl='5m' cache_control block"
            )
    return found


class CacheEntries(Protocol):
    """Where entries live: this process's memory, or Redis shared by every process of a fleet (so
    that a prefix written through one process bills as a read through another)."""

    async def alive(self, keys: list[str]) -> dict[str, float]:
        """The TTL (seconds) of each of `keys` that is alive."""
        ...

    async def refresh(self, key: str, ttl: float) -> None:
        """A hit: the entry lives `ttl` seconds more from now."""
        ...

    async def put(self, key: str, seconds: float) -> float:
        """Write (or extend) an entry to live at least `seconds` from now; its TTL after."""
        ...

    async def aclose(self) -> None: ...


@dataclass(slots=True)
class _Entry:
    ttl: float
    expires_at: float


class MemoryEntries:
    """Entries of this process; `clock` is injectable for tests."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._entries: dict[str, _Entry] = {}

    def __len__(self) -> int:
        return len(self._entries)

    async def alive(self, keys: list[str]) -> dict[str, float]:
        now = self._clock()
        if len(self._entries) > 4096:
            self._entries = {k: e for k, e in self._entries.items() if e.expires_at > now}
        found = {key: self._entries.get(key) for key in keys}
        return {
            key: entry.ttl for key, entry in found.items() if entry is not None and entry.expires_at > now
        }

    async def refresh(self, key: str, ttl: float) -> None:
        entry = self._entries.get(key)
        if entry is not None:
            entry.expires_at = self._clock() + ttl

    async def put(self, key: str, seconds: float) -> float:
        now = self._clock()
        entry = self._entries.get(key)
        if entry is None or entry.expires_at <= now:
            entry = self._entries[key] = _Entry(seconds, now + seconds)
        entry.ttl = max(entry.ttl, seconds)
        entry.expires_at = max(entry.expires_at, now + seconds)
        return entry.ttl

    async def aclose(self) -> None:
        self._entries.clear()


# put: the entry's TTL becomes the larger of its own and ARGV[1], and it lives at least that long.
_PUT = """
local ttl = math.max(tonumber(redis.call('GET', KEYS[1]) or '0'), tonumber(ARGV[1]))
local left = redis.call('PTTL', KEYS[1])
redis.call('SET', KEYS[1], string.format('%.17g', ttl), 'PX', math.max(left, math.floor(ARGV[1] * 1000)))
return string.format('%.17g', ttl)
"""


class RedisEntries:
    """Entries as Redis keys that expire with them (the value is the entry's TTL)."""

    def __init__(self, url: str, prefix: str = "sijo:prompt-cache:") -> None:
        self._prefix = prefix
        self._redis = redis.asyncio.Redis.from_url(url, decode_responses=True)
        self._put = self._redis.register_script(_PUT)

    async def alive(self, keys: list[str]) -> dict[str, float]:
        if not keys:
            return {}
        values = await self._redis.mget([self._prefix + key for key in keys])
        return {key: float(value) for key, value in zip(keys, values, strict=True) if value is not None}

    async def refresh(self, key: str, ttl: float) -> None:
        await self._redis.pexpire(self._prefix + key, int(ttl * 1000))

    async def put(self, key: str, seconds: float) -> float:
        return float(await self._put(keys=[self._prefix + key], args=[seconds]))

    async def aclose(self) -> None:
        await self._redis.aclose()


class PromptCache:
    """The live cache entries of every workspace (in `entries`: memory unless given Redis's)."""

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, entries: CacheEntries | None = None
    ) -> None:
        self.entries = entries if entries is not None else MemoryEntries(clock)

    async def plan(
        self,
        *,
        workspace: str,
        model: str,
        prompt: Prompt,
        points: list[Breakpoint],
        min_tokens: int,
    ) -> CachePlan:
        """Look the breakpoints up, record the writes and refresh the hits; return the bill."""
        eligible = [
            (prompt.block_ends[b.block], b.ttl)
            for b in points
            if b.block in prompt.block_ends and prompt.block_ends[b.block] >= min_tokens
        ]
        if not eligible:
            return NO_CACHE
        lookbacks = [_lookback(b.block, prompt, min_tokens) for b in points]
        digests = _digests(prompt, {length for lengths in lookbacks for length in lengths})

        def key(length: int) -> str:
            return json.dumps([workspace, model, digests[length].hex()])

        alive = await self.entries.alive([key(length) for length in digests])
        read, read_ttl = 0, 0.0
        for lengths in lookbacks:
            hit = next((length for length in lengths if key(length) in alive), None)
            if hit is not None and hit > read:
                read, read_ttl = hit, alive[key(hit)]
        keep: list[KeepPoint] = []
        if read:
            await self.entries.refresh(key(read), read_ttl)
            keep.append(KeepPoint(read, read_ttl))
        written = {"5m": 0, "1h": 0}
        previous = read
        for length, ttl in eligible:
            if length > previous:
                written[ttl] += length - previous
                previous = length
            keep.append(KeepPoint(length, await self.entries.put(key(length), TTL_SECONDS[ttl])))
        usage = CacheUsage(read=read, write_5m=written["5m"], write_1h=written["1h"])
        return CachePlan(usage, tuple(sorted(set(keep), key=lambda k: k.length)))


def _lookback(block: int, prompt: Prompt, min_tokens: int) -> list[int]:
    """Prefix lengths a breakpoint on `block` may hit: its own, then up to 20 blocks back."""
    lengths = []
    for candidate in range(block, block - LOOKBACK_BLOCKS - 1, -1):
        length = prompt.block_ends.get(candidate)
        if length is not None and length >= min_tokens:
            lengths.append(length)
    return lengths


def _digests(prompt: Prompt, lengths: set[int]) -> dict[int, bytes]:
    """SHA-256 of the prompt's first `length` tokens, for each length, in one pass."""
    tokens = np.asarray(prompt.tokens, dtype=np.int32)
    digest = hashlib.sha256()
    digests: dict[int, bytes] = {}
    done = 0
    for length in sorted(lengths):
        digest.update(tokens[done:length].tobytes())
        done = length
        digests[length] = digest.copy().digest()
    return digests
