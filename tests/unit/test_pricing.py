from datetime import UTC, datetime
from decimal import Decimal

from sijo.config import DEFAULT_PRICES, ModelPrice
from sijo.pricing import CostLine, cents, cost_lines, total_usd
from sijo.usage import ServiceTier, UsageRecord

AT = datetime(2025, 5, 14, 12, 0, tzinfo=UTC)
MILLION = 1_000_000


def record(
    model: str = "claude-sonnet-4-6",
    service_tier: ServiceTier = "standard",
    uncached_input_tokens: int = 0,
    output_tokens: int = 0,
    **more: int,
) -> UsageRecord:
    return UsageRecord(
        at=AT,
        api_key_id="apikey_1",
        workspace_id="wrkspc_1",
        model=model,
        service_tier=service_tier,
        uncached_input_tokens=uncached_input_tokens,
        output_tokens=output_tokens,
        **more,
    )


def usd_by_type(rec: UsageRecord) -> dict[str | None, Decimal]:
    return {line.token_type or line.cost_type: line.usd for line in cost_lines(rec, DEFAULT_PRICES)}


def test_a_million_sonnet_input_tokens_cost_three_dollars() -> None:
    (line,) = cost_lines(record(uncached_input_tokens=MILLION), DEFAULT_PRICES)
    assert line == CostLine(
        model="claude-sonnet-4-6",
        service_tier="standard",
        workspace_id="wrkspc_1",
        api_key_id="apikey_1",
        cost_type="tokens",
        token_type="uncached_input_tokens",
        tokens=MILLION,
        usd=Decimal(3),
    )
    assert cents(line.usd) == "300"


def test_output_at_the_output_price() -> None:
    assert usd_by_type(record(output_tokens=MILLION)) == {"output_tokens": Decimal(15)}


def test_cache_multipliers_of_the_input_price() -> None:
    rec = record(cache_write_5m_tokens=MILLION, cache_write_1h_tokens=MILLION, cache_read_tokens=MILLION)
    assert usd_by_type(rec) == {
        "cache_creation.ephemeral_5m_input_tokens": Decimal("3.75"),
        "cache_creation.ephemeral_1h_input_tokens": Decimal(6),
        "cache_read_input_tokens": Decimal("0.3"),
    }


def test_batch_halves_every_token_price_and_stacks_with_cache_multipliers() -> None:
    rec = record(
        service_tier="batch",
        uncached_input_tokens=MILLION,
        output_tokens=MILLION,
        cache_write_5m_tokens=MILLION,
        cache_read_tokens=MILLION,
    )
    assert usd_by_type(rec) == {
        "uncached_input_tokens": Decimal("1.5"),
        "output_tokens": Decimal("7.5"),
        "cache_creation.ephemeral_5m_input_tokens": Decimal("1.875"),
        "cache_read_input_tokens": Decimal("0.15"),  # 0.05x input
    }


def test_web_search_costs_ten_dollars_per_thousand_batch_or_not() -> None:
    for tier in ("standard", "batch"):
        lines = cost_lines(record(service_tier=tier, web_search_requests=3), DEFAULT_PRICES)
        assert [(line.cost_type, line.token_type, line.tokens, line.usd) for line in lines] == [
            ("web_search", None, 3, Decimal("0.03"))
        ]


def test_a_model_without_a_price_costs_nothing_and_gives_no_lines() -> None:
    rec = record(model="smollm2-135m", uncached_input_tokens=MILLION, web_search_requests=5)
    assert cost_lines(rec, DEFAULT_PRICES) == []
    assert total_usd([rec], DEFAULT_PRICES) == Decimal(0)


def test_zero_token_types_give_no_lines() -> None:
    lines = cost_lines(record(uncached_input_tokens=10), DEFAULT_PRICES)
    assert [line.token_type for line in lines] == ["uncached_input_tokens"]
    assert cost_lines(record(), DEFAULT_PRICES) == []


def test_sums_are_exact_decimals() -> None:
    # One batch cache-read token of Haiku: $1 x 0.1 x 0.5 per million, which a float would blur.
    tiny = record(model="claude-haiku-4-5", service_tier="batch", cache_read_tokens=1)
    assert total_usd([tiny] * 3, DEFAULT_PRICES) == Decimal("0.00000015")
    prices = {"m": ModelPrice(input=0.3, output=1.1)}
    rec = record(model="m", uncached_input_tokens=3 * MILLION, output_tokens=MILLION)
    assert total_usd([rec], prices) == Decimal("2.0")  # 0.9 + 1.1, not 2.0000000000000004


def test_total_adds_every_record_and_line() -> None:
    records = [
        record(uncached_input_tokens=MILLION, output_tokens=MILLION),  # 3 + 15
        record(model="claude-opus-4-7", output_tokens=MILLION // 2),  # 12.5
        record(model="unknown", output_tokens=MILLION),  # 0
        record(web_search_requests=1000),  # 10
    ]
    assert total_usd(records, DEFAULT_PRICES) == Decimal("40.5")


def test_descriptions_name_the_model_the_token_type_and_batch() -> None:
    rec = record(uncached_input_tokens=1, cache_write_1h_tokens=1, web_search_requests=1)
    assert [line.description for line in cost_lines(rec, DEFAULT_PRICES)] == [
        "Claude Sonnet 4.6 Usage - Input Tokens",
        "Claude Sonnet 4.6 Usage - Input Tokens, Cache Write 1h",
        "Claude Sonnet 4.6 Web Search",
    ]
    batch = record(model="claude-haiku-4-5", service_tier="batch", output_tokens=1)
    (line,) = cost_lines(batch, DEFAULT_PRICES)
    assert line.description == "Claude Haiku 4.5 Usage - Output Tokens (Batch)"
    (custom,) = cost_lines(record(model="m", output_tokens=1), {"m": ModelPrice(input=1, output=1)})
    assert custom.description == "m Usage - Output Tokens"


def test_cents_are_plain_decimal_strings() -> None:
    assert cents(Decimal(3)) == "300"
    assert cents(Decimal("3.00")) == "300"
    assert cents(Decimal("1.2345")) == "123.45"
    assert cents(Decimal("0.00015")) == "0.015"
    assert cents(Decimal("0.00000015")) == "0.000015"
    assert cents(Decimal(0)) == "0"
