"""Rate limits: both backends under one fake clock; Redis ones against a real server (CI has one)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import pytest
import redis.asyncio

from sijo.errors import InternalServerError, RateLimitError
from sijo.ratelimit import (
    Limits,
    LocalRateLimiter,
    RateLimiter,
    RateLimitState,
    RedisRateLimiter,
    rate_limiter,
)

REDIS_URL = "redis://127.0.0.1:6379/0"
T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z
RPM5 = Limits(requests_per_minute=5, input_tokens_per_minute=1000, output_tokens_per_minute=1000)


class FakeClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def at(seconds: float) -> datetime:
    return datetime.fromtimestamp(T0 + seconds, UTC)


def remaining(state: RateLimitState) -> tuple[int, int, int]:
    return (state.requests.remaining, state.input_tokens.remaining, state.output_tokens.remaining)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def redis_prefix() -> str:
    return f"sijo-test:{uuid.uuid4().hex}:"


@asynccontextmanager
async def redis_limiters(clock: FakeClock, prefix: str) -> AsyncIterator[Callable[[], RedisRateLimiter]]:
    """Makes RedisRateLimiters on one prefix, as several processes would have them; then deletes
    the prefix's keys."""
    made: list[RedisRateLimiter] = []

    def make() -> RedisRateLimiter:
        made.append(RedisRateLimiter(REDIS_URL, clock, prefix=prefix))
        return made[-1]

    try:
        yield make
    finally:
        for limiter in made:
            await limiter.aclose()
        client = redis.asyncio.Redis.from_url(REDIS_URL)
        keys = [key async for key in client.scan_iter(match=prefix + "*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


@pytest.fixture
async def make_redis(clock: FakeClock, redis_prefix: str) -> AsyncIterator[Callable[[], RedisRateLimiter]]:
    async with redis_limiters(clock, redis_prefix) as make:
        yield make


@pytest.fixture(params=["local", "redis"])
async def limiter(
    request: pytest.FixtureRequest, clock: FakeClock, redis_prefix: str
) -> AsyncIterator[RateLimiter]:
    if request.param == "local":
        yield LocalRateLimiter(clock)
        return
    async with redis_limiters(clock, redis_prefix) as make:
        yield make()


async def refusal(limiter: RateLimiter, limits: Limits, input_tokens: int) -> RateLimitError:
    with pytest.raises(RateLimitError) as caught:
        await limiter.admit("key", limits, input_tokens)
    return caught.value


async def test_a_fresh_key_is_full_and_peek_takes_nothing(limiter: RateLimiter) -> None:
    for _ in range(3):
        state = await limiter.peek("key", RPM5)
        assert remaining(state) == (5, 1000, 1000)
        assert (state.requests.limit, state.input_tokens.limit, state.output_tokens.limit) == (5, 1000, 1000)
        assert state.requests.reset == state.input_tokens.reset == state.output_tokens.reset == at(0)


async def test_requests_bucket_exhausts_and_refills(limiter: RateLimiter, clock: FakeClock) -> None:
    for left in (4, 3, 2, 1, 0):
        assert (await limiter.admit("key", RPM5, 10)).requests.remaining == left
    error = await refusal(limiter, RPM5, 10)
    assert error.status_code == 429
    assert error.message.startswith(
        "This request would exceed the rate limit of 5 requests per minute for this API key."
    )
    assert error.headers["retry-after"] == "12"  # one request refills in 60/5 seconds
    assert error.headers["anthropic-ratelimit-requests-remaining"] == "0"
    clock.advance(11)
    assert (await refusal(limiter, RPM5, 10)).headers["retry-after"] == "1"
    clock.advance(1)
    state = await limiter.admit("key", RPM5, 10)
    assert state.requests.remaining == 0
    assert state.requests.reset == at(12 + 60)  # empty again, a full minute from now
    clock.advance(60)
    assert (await limiter.peek("key", RPM5)).requests.remaining == 5


async def test_keys_have_separate_buckets(limiter: RateLimiter) -> None:
    for _ in range(5):
        await limiter.admit("key", RPM5, 1)
    assert (await limiter.admit("other", RPM5, 1)).requests.remaining == 4


async def test_a_refused_request_takes_nothing_from_either_bucket(
    limiter: RateLimiter, clock: FakeClock
) -> None:
    limits = Limits(requests_per_minute=10, input_tokens_per_minute=100, output_tokens_per_minute=100)
    assert remaining(await limiter.admit("key", limits, 60)) == (9, 40, 100)
    error = await refusal(limiter, limits, 50)
    assert "rate limit of 100 input tokens per minute" in error.message
    assert error.headers["retry-after"] == "6"  # 10 more tokens at 100/60 per second
    assert remaining(await limiter.peek("key", limits)) == (9, 40, 100)
    clock.advance(6)
    assert remaining(await limiter.admit("key", limits, 50)) == (9, 0, 100)


async def test_cache_reads_are_given_back_to_the_input_bucket(limiter: RateLimiter) -> None:
    limits = Limits(requests_per_minute=10, input_tokens_per_minute=100, output_tokens_per_minute=100)
    assert remaining(await limiter.admit("key", limits, 90)) == (9, 10, 100)
    # 80 of the 90 prompt tokens were read from the cache: only 10 count, as on the Claude API
    assert remaining(await limiter.settle("key", limits, 5, refund_input_tokens=80)) == (9, 90, 95)
    assert remaining(await limiter.settle("key", limits, 0, refund_input_tokens=500)) == (9, 100, 95)  # capped


async def test_a_request_larger_than_the_whole_limit_is_refused_for_a_minute(limiter: RateLimiter) -> None:
    error = await refusal(limiter, RPM5, 1001)
    assert error.message.startswith(
        "This request alone (1001 input tokens) exceeds the rate limit of 1000 input tokens per minute"
    )
    assert error.headers["retry-after"] == "60"
    assert remaining(await limiter.peek("key", RPM5)) == (5, 1000, 1000)


async def test_output_overdraw_blocks_until_refilled_above_zero(
    limiter: RateLimiter, clock: FakeClock
) -> None:
    limits = Limits(requests_per_minute=100, input_tokens_per_minute=1000, output_tokens_per_minute=100)
    await limiter.admit("key", limits, 10)
    state = await limiter.settle("key", limits, 150)
    assert state.output_tokens.remaining == 0  # never below zero in reports
    assert state.output_tokens.reset == at(90)  # from -50 to 100 at 100/60 per second
    error = await refusal(limiter, limits, 10)
    assert "rate limit of 100 output tokens per minute" in error.message
    assert error.headers["retry-after"] == "31"  # at 30 s the bucket is at zero, which still refuses
    assert error.headers["anthropic-ratelimit-output-tokens-remaining"] == "0"
    clock.advance(30)
    assert (await refusal(limiter, limits, 10)).headers["retry-after"] == "1"
    assert remaining(await limiter.peek("key", limits)) == (100, 1000, 0)  # the refusals took nothing
    clock.advance(1)
    state = await limiter.admit("key", limits, 10)
    assert (state.requests.remaining, state.output_tokens.remaining) == (99, 1)


async def test_headers_names_values_and_format(limiter: RateLimiter, clock: FakeClock) -> None:
    limits = Limits(requests_per_minute=50, input_tokens_per_minute=30_000, output_tokens_per_minute=8_000)
    await limiter.admit("key", limits, 3_000)
    clock.advance(0.5)
    state = await limiter.settle("key", limits, 4_000)
    assert state.headers() == {
        "anthropic-ratelimit-requests-limit": "50",
        "anthropic-ratelimit-requests-remaining": "49",  # 49.4167 after half a second
        "anthropic-ratelimit-requests-reset": "2023-11-14T22:13:22Z",  # full at +1.2 s, rounded up
        # output is half left, input 90%: output is the more restrictive
        "anthropic-ratelimit-tokens-limit": "8000",
        "anthropic-ratelimit-tokens-remaining": "4000",
        "anthropic-ratelimit-tokens-reset": "2023-11-14T22:13:51Z",  # 4000 refill in 30 s, from +0.5
        "anthropic-ratelimit-input-tokens-limit": "30000",
        "anthropic-ratelimit-input-tokens-remaining": "27250",
        "anthropic-ratelimit-input-tokens-reset": "2023-11-14T22:13:26Z",  # 2750 at 500/s: +5.5 s
        "anthropic-ratelimit-output-tokens-limit": "8000",
        "anthropic-ratelimit-output-tokens-remaining": "4000",
        "anthropic-ratelimit-output-tokens-reset": "2023-11-14T22:13:51Z",
    }


async def test_tokens_headers_follow_input_when_it_is_the_more_restrictive(limiter: RateLimiter) -> None:
    limits = Limits(requests_per_minute=50, input_tokens_per_minute=1_000, output_tokens_per_minute=8_000)
    headers = (await limiter.admit("key", limits, 900)).headers()
    assert headers["anthropic-ratelimit-tokens-limit"] == "1000"
    assert headers["anthropic-ratelimit-tokens-remaining"] == "100"
    assert headers["anthropic-ratelimit-tokens-reset"] == "2023-11-14T22:14:14Z"  # 900 at 1000/60 per s


async def test_lowered_limits_clamp_and_raised_ones_refill(limiter: RateLimiter, clock: FakeClock) -> None:
    high = Limits(requests_per_minute=100, input_tokens_per_minute=1000, output_tokens_per_minute=1000)
    low = Limits(requests_per_minute=10, input_tokens_per_minute=100, output_tokens_per_minute=100)
    assert remaining(await limiter.admit("key", high, 10)) == (99, 990, 1000)
    state = await limiter.peek("key", low)
    assert remaining(state) == (10, 100, 100)
    assert state.requests.reset == at(0)
    assert remaining(await limiter.admit("key", low, 10)) == (9, 90, 100)
    # raised again: the level stays where it was and refills at the new rate
    assert remaining(await limiter.peek("key", high)) == (9, 90, 100)
    clock.advance(6)
    assert remaining(await limiter.peek("key", high)) == (19, 190, 200)


async def test_concurrent_admits_never_exceed_the_limit(limiter: RateLimiter) -> None:
    results = await asyncio.gather(
        *(limiter.admit("key", RPM5, 1) for _ in range(12)), return_exceptions=True
    )
    assert sum(isinstance(r, RateLimitState) for r in results) == 5
    assert sum(isinstance(r, RateLimitError) for r in results) == 7


async def test_negative_counts_and_limits_are_programming_errors(limiter: RateLimiter) -> None:
    with pytest.raises(ValueError):
        await limiter.admit("key", RPM5, -1)
    with pytest.raises(ValueError):
        await limiter.settle("key", RPM5, -1)
    with pytest.raises(ValueError):
        Limits(requests_per_minute=0, input_tokens_per_minute=1, output_tokens_per_minute=1)


async def test_two_redis_limiters_share_one_budget(
    make_redis: Callable[[], RedisRateLimiter], clock: FakeClock
) -> None:
    first, second = make_redis(), make_redis()
    results = await asyncio.gather(
        *(limiter.admit("key", RPM5, 100) for _ in range(5) for limiter in (first, second)),
        return_exceptions=True,
    )
    assert sum(isinstance(r, RateLimitState) for r in results) == 5
    assert remaining(await first.peek("key", RPM5)) == (0, 500, 1000)
    await second.settle("key", RPM5, 400)
    assert remaining(await first.peek("key", RPM5)) == (0, 500, 600)
    clock.advance(12)
    assert remaining(await second.admit("key", RPM5, 0)) == (0, 700, 800)


async def test_redis_keeps_each_key_in_one_expiring_hash(
    make_redis: Callable[[], RedisRateLimiter], redis_prefix: str
) -> None:
    limiter = make_redis()
    await limiter.peek("key", RPM5)
    client = redis.asyncio.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        assert await client.exists(redis_prefix + "key") == 0  # peeking stores nothing
        await limiter.admit("key", RPM5, 100)
        stored = await client.hgetall(redis_prefix + "key")
        assert {name: float(value) for name, value in stored.items()} == {
            "requests:level": 4.0,
            "requests:at": T0,
            "input_tokens:level": 900.0,
            "input_tokens:at": T0,
            "output_tokens:level": 1000.0,
            "output_tokens:at": T0,
        }
        assert await client.ttl(redis_prefix + "key") in range(70, 73)  # a minute past full again (12 s)
    finally:
        await client.aclose()


async def test_an_unreachable_redis_is_a_500_that_hides_the_url(clock: FakeClock) -> None:
    limiter = RedisRateLimiter("redis://:hunter2@127.0.0.1:1/0", clock)
    try:
        with pytest.raises(InternalServerError) as caught:
            await limiter.admit("key", RPM5, 1)
    finally:
        await limiter.aclose()
    assert caught.value.message == "rate limit store unavailable: ConnectionError"
    assert "hunter2" not in caught.value.message


async def test_rate_limiter_picks_the_backend(clock: FakeClock) -> None:
    local, remote = rate_limiter(None, clock), rate_limiter(REDIS_URL, clock)
    assert isinstance(local, LocalRateLimiter)
    assert isinstance(remote, RedisRateLimiter)
    await local.aclose()
    await remote.aclose()
