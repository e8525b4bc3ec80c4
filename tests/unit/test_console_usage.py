"""The Console's usage view: buckets, kinds, groups, and what caching saved, at Claude API prices."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sijo.config import DEFAULT_PRICES
from sijo.console.usage import query_for, usage_view
from sijo.usage import UsageRecord

NOW = datetime(2026, 11, 27, 15, 30, tzinfo=UTC)


def record(hours_ago: float, **tokens: int) -> UsageRecord:
    return UsageRecord(
        at=NOW - timedelta(hours=hours_ago),
        api_key_id=tokens.pop("key", None) and "apikey_1",
        workspace_id=None,
        model="claude-sonnet-4-6",
        service_tier="standard",
        uncached_input_tokens=tokens.get("input", 0),
        output_tokens=tokens.get("output", 0),
        cache_read_tokens=tokens.get("read", 0),
        cache_write_5m_tokens=tokens.get("write", 0),
        thinking_tokens=tokens.get("thinking", 0),
    )


def label(dimension: str, value: str | None) -> str:
    return f"{dimension}={value}"


def test_hourly_buckets_hold_each_kind_and_thinking_is_not_counted_twice() -> None:
    records = [
        record(0, input=10, output=30, thinking=20),
        record(2, input=5, output=5),
        record(30, input=99),
    ]
    view = usage_view(records, query_for("24h", NOW), "24h", "model", DEFAULT_PRICES, label)

    assert len(view.bars) == 24 and view.requests == 2  # 30 hours ago is out of range
    last = view.bars[-1]
    assert {s.kind: s.tokens for s in last.segments} == {"input": 10, "output": 10, "thinking": 20}
    assert last.tokens == 40 and view.max_tokens == 40
    assert view.rows[0].tokens["output"] + view.rows[0].tokens["thinking"] == 35


def test_caching_saves_what_reads_would_have_cost_as_input() -> None:
    cached = [record(1, input=100, read=10_000, output=10)]
    view = usage_view(cached, query_for("7d", NOW), "7d", "model", DEFAULT_PRICES, label)

    # Sonnet 4.6: $3 per million input tokens; a cache read costs a tenth.
    assert view.uncached_usd - view.claude_usd == Decimal("0.027")
    assert view.saved_usd == Decimal("0.027")


def test_groups_are_labelled_and_unpriced_models_named() -> None:
    records = [record(1, input=1, key=1), record(1, input=1)]
    other = UsageRecord(NOW, None, None, "my-local-gguf", "standard", 5, 5)
    view = usage_view([*records, other], query_for("7d", NOW), "7d", "key", DEFAULT_PRICES, label)

    assert sorted(row.label for row in view.rows) == ["api_key_id=None", "api_key_id=apikey_1"]
    assert view.unpriced == ["my-local-gguf"]
