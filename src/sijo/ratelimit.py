"""Per-API-key rate limits: three token buckets (requests, input tokens and output tokens per minute),
as the Claude API has them, and the `anthropic-ratelimit-*` headers that report them.

A bucket holds at most its per-minute limit, starts full and refills continuously at limit/60 per
second. `admit` takes a request and its input tokens before generating (all or nothing, else 429);
`settle` takes the output tokens afterwards, and may overdraw the output bucket, which then refuses
requests until it is above zero again. Two backends: `LocalRateLimiter` (one process) and
`RedisRateLimiter` (processes sharing limits; one Lua script takes atomically).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, Protocol

import redis.asyncio
import redis.exceptions

from sijo.errors import InternalServerError, RateLimitError
from sijo.protocol.base import rfc3339

Levels = tuple[float, float, float]  # requests, input tokens, output tokens
Take = Literal["admit", "settle", "peek"]
_UNITS = ("requests", "input tokens", "output tokens")


@dataclass(frozen=True, slots=True)
class Limits:
    requests_per_minute: int
    input_tokens_per_minute: int
    output_tokens_per_minute: int

    def __post_init__(self) -> None:
        if min(self.capacities()) < 1:
            raise ValueError(f"rate limits must be at least 1 per minute: {self}")

    def capacities(self) -> tuple[int, int, int]:
        return (self.requests_per_minute, self.input_tokens_per_minute, self.output_tokens_per_minute)


@dataclass(frozen=True, slots=True)
class Bucket:
    limit: int
    remaining: int  # floor, never below 0 in reports
    reset: datetime  # UTC, when the bucket would be full again (now if full)

    def headers(self, name: str) -> dict[str, str]:
        # Whole seconds, rounded up: the bucket is surely full by the time reported.
        reset = datetime.fromtimestamp(math.ceil(self.reset.timestamp()), UTC)
        return {
            f"anthropic-ratelimit-{name}-limit": str(self.limit),
            f"anthropic-ratelimit-{name}-remaining": str(self.remaining),
            f"anthropic-ratelimit-{name}-reset": rfc3339(reset, "seconds"),
        }


@dataclass(frozen=True, slots=True)
class RateLimitState:
    requests: Bucket
    input_tokens: Bucket
    output_tokens: Bucket

    def headers(self) -> dict[str, str]:
        """The `anthropic-ratelimit-*` headers; `tokens` is whichever of input and output tokens has
        the lower fraction remaining (input on a tie)."""
        tokens = min(self.input_tokens, self.output_tokens, key=lambda b: b.remaining / b.limit)
        return (
            self.requests.headers("requests")
            | tokens.headers("tokens")
            | self.input_tokens.headers("input-tokens")
            | self.output_tokens.headers("output-tokens")
        )


class RateLimiter(Protocol):
    async def admit(self, key: str, limits: Limits, input_tokens: int) -> RateLimitState:
        """Take one request and `input_tokens`, all or nothing; RateLimitError (429) if refused."""
        ...

    async def peek(self, key: str, limits: Limits) -> RateLimitState:
        """The state, taking nothing."""
        ...

    async def settle(
        self, key: str, limits: Limits, output_tokens: int, refund_input_tokens: int = 0
    ) -> RateLimitState:
        """Take the output tokens a reply used (the output bucket may go below zero), and give back
        input tokens admitted but not counted after all (cache reads, which the API leaves out)."""
        ...

    async def aclose(self) -> None: ...


def rate_limiter(redis_url: str | None, clock: Callable[[], float] = time.time) -> RateLimiter:
    """Redis when a URL is given, else in-process."""
    return RedisRateLimiter(redis_url, clock) if redis_url else LocalRateLimiter(clock)


def _amounts(take: Take, amount: int, refund: int = 0) -> Levels:
    """What a take removes from each bucket (a refund is negative: it gives input tokens back)."""
    if amount < 0 or refund < 0:
        raise ValueError(f"token counts cannot be negative: {amount}, {refund}")
    return {"admit": (1, amount, 0), "settle": (0, -refund, amount), "peek": (0, 0, 0)}[take]


def _blocked(levels: Levels, needs: Levels) -> list[int]:
    """Buckets that refuse: too few requests or input tokens, or output overdrawn (at or below 0)."""
    return [i for i in range(3) if levels[i] < needs[i] or (i == 2 and levels[i] <= 0)]


def _wait(level: float, need: float, capacity: int, strict: bool) -> int:
    """Whole seconds until the bucket holds `need` (more than `need` if strict), at least 1."""
    seconds = round((need - level) * 60 / capacity, 6)  # rounding drops float noise before ceil
    return max(1, math.floor(seconds) + 1 if strict else math.ceil(seconds))


def _state(limits: Limits, levels: Levels, now: float) -> RateLimitState:
    buckets = [
        Bucket(
            limit=capacity,
            remaining=max(0, math.floor(round(level, 6))),
            reset=datetime.fromtimestamp(now + (capacity - level) * 60 / capacity, UTC),
        )
        for capacity, level in zip(limits.capacities(), levels, strict=True)
    ]
    return RateLimitState(*buckets)


def _refusal(limits: Limits, levels: Levels, input_tokens: int, now: float) -> RateLimitError:
    capacities, needs = limits.capacities(), _amounts("admit", input_tokens)
    headers = _state(limits, levels, now).headers()
    if needs[1] > capacities[1]:  # can never pass, however long the client waits
        message = (
            f"This request alone ({input_tokens} input tokens) exceeds the rate limit of "
            f"{capacities[1]} input tokens per minute for this API key. Please reduce the prompt length."
        )
        # x-should-retry false: the SDKs would otherwise wait and retry a request that cannot pass
        return RateLimitError(message, headers={"retry-after": "60", "x-should-retry": "false", **headers})
    blocked = _blocked(levels, needs)
    retry = max(_wait(levels[i], needs[i], capacities[i], strict=i == 2) for i in blocked)
    message = (
        f"This request would exceed the rate limit of {capacities[blocked[0]]} {_UNITS[blocked[0]]} "
        "per minute for this API key. The anthropic-ratelimit-* response headers show current usage; "
        "please try again after the retry-after header's seconds."
    )
    return RateLimitError(message, headers={"retry-after": str(retry), **headers})


class LocalRateLimiter:
    """Buckets in a dict; each take runs without awaiting, so it is atomic within the event loop."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._buckets: dict[str, tuple[Levels, float]] = {}  # key -> (levels, when they were so)

    async def admit(self, key: str, limits: Limits, input_tokens: int) -> RateLimitState:
        return self._take(key, limits, "admit", input_tokens)

    async def peek(self, key: str, limits: Limits) -> RateLimitState:
        return self._take(key, limits, "peek", 0)

    async def settle(
        self, key: str, limits: Limits, output_tokens: int, refund_input_tokens: int = 0
    ) -> RateLimitState:
        return self._take(key, limits, "settle", output_tokens, refund_input_tokens)

    async def aclose(self) -> None:
        self._buckets.clear()

    def _take(self, key: str, limits: Limits, take: Take, amount: int, refund: int = 0) -> RateLimitState:
        now, needs = self._clock(), _amounts(take, amount, refund)
        levels = self._levels(key, limits, now)
        if take == "admit" and _blocked(levels, needs):
            raise _refusal(limits, levels, amount, now)
        if take != "peek":
            capacities = limits.capacities()
            levels = (levels[0] - needs[0], min(capacities[1], levels[1] - needs[1]), levels[2] - needs[2])
            self._buckets[key] = (levels, now)
        return _state(limits, levels, now)

    def _levels(self, key: str, limits: Limits, now: float) -> Levels:
        capacities = limits.capacities()
        levels, at = self._buckets.get(key, (capacities, now))
        elapsed = max(0.0, now - at)
        # min() also clamps a level stored under higher limits than these.
        refilled = [min(c, level + elapsed * c / 60) for c, level in zip(capacities, levels, strict=True)]
        return (refilled[0], refilled[1], refilled[2])


# KEYS[1]: the key's hash ({bucket}:level and {bucket}:at per bucket). ARGV: now, take, amount,
# the three capacities, then the input tokens refunded. Mirrors LocalRateLimiter._take; replies
# the status and three levels.
_SCRIPT = """
local now, take, amount = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3])
local names = {'requests', 'input_tokens', 'output_tokens'}
local needs = {0, 0, 0}
local refund = tonumber(ARGV[7])
if take == 'admit' then needs = {1, amount, 0} elseif take == 'settle' then needs = {0, -refund, amount} end
local levels, capacities, blocked = {}, {}, false
for i, name in ipairs(names) do
  local capacity = tonumber(ARGV[3 + i])
  local level = tonumber(redis.call('HGET', KEYS[1], name .. ':level'))
  local at = tonumber(redis.call('HGET', KEYS[1], name .. ':at'))
  if level == nil or at == nil then level, at = capacity, now end
  level = math.min(capacity, level + math.max(0, now - at) * capacity / 60)
  if level < needs[i] or (i == 3 and level <= 0) then blocked = true end
  levels[i], capacities[i] = level, capacity
end
local status = 'ok'
if take == 'admit' and blocked then status = 'refused' end
if status == 'ok' and take ~= 'peek' then
  local full = 0
  for i, name in ipairs(names) do
    levels[i] = math.min(capacities[i], levels[i] - needs[i])
    full = math.max(full, (capacities[i] - levels[i]) * 60 / capacities[i])
    redis.call('HSET', KEYS[1], name .. ':level', string.format('%.17g', levels[i]),
      name .. ':at', string.format('%.17g', now))
  end
  -- A full bucket needs no state: keep the hash a minute past the time all three are full.
  redis.call('EXPIRE', KEYS[1], math.ceil(full) + 60)
end
local reply = {status}
for i = 1, 3 do reply[i + 1] = string.format('%.17g', levels[i]) end
return reply
"""


class RedisRateLimiter:
    """Buckets in Redis hashes, shared by every process using the same URL and prefix."""

    def __init__(
        self, url: str, clock: Callable[[], float] = time.time, prefix: str = "sijo:ratelimit:"
    ) -> None:
        self._clock = clock
        self._prefix = prefix
        self._redis = redis.asyncio.Redis.from_url(url, decode_responses=True)
        self._script = self._redis.register_script(_SCRIPT)

    async def admit(self, key: str, limits: Limits, input_tokens: int) -> RateLimitState:
        return await self._take(key, limits, "admit", input_tokens)

    async def peek(self, key: str, limits: Limits) -> RateLimitState:
        return await self._take(key, limits, "peek", 0)

    async def settle(
        self, key: str, limits: Limits, output_tokens: int, refund_input_tokens: int = 0
    ) -> RateLimitState:
        return await self._take(key, limits, "settle", output_tokens, refund_input_tokens)

    async def aclose(self) -> None:
        await self._redis.aclose()

    async def _take(
        self, key: str, limits: Limits, take: Take, amount: int, refund: int = 0
    ) -> RateLimitState:
        _amounts(take, amount, refund)  # validates before the round trip
        now = self._clock()
        args: list[str | int] = [repr(now), take, amount, *limits.capacities(), refund]
        try:
            status, *reply = await self._script(keys=[self._prefix + key], args=args)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            # The exception's text may name the host; the URL may hold a password. Neither is the client's.
            raise InternalServerError(f"rate limit store unavailable: {type(exc).__name__}") from exc
        levels = (float(reply[0]), float(reply[1]), float(reply[2]))
        if status == "refused":
            raise _refusal(limits, levels, amount, now)
        return _state(limits, levels, now)
