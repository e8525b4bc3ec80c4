"""The Console's usage page, as values: tokens by kind and requests per time bucket (the Admin API
usage report's buckets, from the same ledger records), totals grouped by model, key or workspace,
and what the traffic would have cost on the Claude API, with the part prompt caching saved.

Framework-free: `usage_view` takes the records and returns what the template draws, bar geometry
included (plain SVG, no chart library).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal

from sijo.config import ModelPrice
from sijo.pricing import total_usd
from sijo.reports import EPOCH, UsageQuery, parse_usage_query
from sijo.usage import UsageRecord

# range name: (bucket width, how many buckets)
RANGES = {"24h": ("1h", 24), "7d": ("1d", 7), "30d": ("1d", 30)}
GROUPS = {"model": "model", "key": "api_key_id", "workspace": "workspace_id"}
KINDS = ("input", "cache_write", "cache_read", "output", "thinking")
KIND_NAMES = {
    "input": "input",
    "cache_write": "cache write",
    "cache_read": "cache read",
    "output": "output (besides thinking)",
    "thinking": "thinking",
}
CHART_WIDTH, CHART_HEIGHT = 880, 220


@dataclass(frozen=True, slots=True)
class Segment:
    kind: str
    tokens: int
    y: float
    height: float


@dataclass(frozen=True, slots=True)
class Bar:
    start: datetime
    label: str
    requests: int
    tokens: int
    x: float
    width: float
    segments: tuple[Segment, ...]
    requests_y: float  # top of the requests bar, in the requests chart


@dataclass(frozen=True, slots=True)
class GroupRow:
    label: str
    requests: int
    tokens: dict[str, int]
    usd: Decimal | None  # None: no Claude API price for any of its models


@dataclass(frozen=True, slots=True)
class UsageView:
    range: str
    group: str
    bars: list[Bar]
    rows: list[GroupRow]
    claude_usd: Decimal
    uncached_usd: Decimal  # the same traffic priced as if nothing had been cached
    requests: int
    unpriced: list[str]  # models with no Claude API price (left out of the cost)
    max_tokens: int
    max_requests: int

    @property
    def saved_usd(self) -> Decimal:
        return self.uncached_usd - self.claude_usd


def query_for(range_name: str, now: datetime) -> UsageQuery:
    """The usage report query whose buckets end with the one holding `now`."""
    width, count = RANGES[range_name]
    size = timedelta(hours=1) if width == "1h" else timedelta(days=1)
    current = EPOCH + (now - EPOCH) // size * size  # the bucket holding `now`, even on its first instant
    items = [
        ("starting_at", (current - size * (count - 1)).isoformat()),
        ("ending_at", (current + size).isoformat()),
        ("bucket_width", width),
        ("limit", str(count)),
    ]
    return parse_usage_query(items, now)


def tokens_of(record: UsageRecord) -> dict[str, int]:
    return {
        "input": record.uncached_input_tokens,
        "cache_write": record.cache_write_5m_tokens + record.cache_write_1h_tokens,
        "cache_read": record.cache_read_tokens,
        "output": record.output_tokens - record.thinking_tokens,
        "thinking": record.thinking_tokens,
    }


def usage_view(
    records: Iterable[UsageRecord],
    query: UsageQuery,
    range_name: str,
    group: str,
    prices: Mapping[str, ModelPrice],
    label: Callable[[str, str | None], str],
) -> UsageView:
    """`label(dimension, value)` names a group (a key's name, a workspace's)."""
    starts = query.window.buckets()
    per_bucket: dict[datetime, list[UsageRecord]] = {start: [] for start in starts}
    kept: list[UsageRecord] = []
    for record in records:
        bucket = query.window.bucket_of(record.at)
        if bucket is not None:
            per_bucket[bucket].append(record)
            kept.append(record)
    dimension = GROUPS[group]
    by_group: dict[str | None, list[UsageRecord]] = {}
    for record in kept:
        by_group.setdefault(getattr(record, dimension), []).append(record)
    rows = [_row(label(dimension, value), group_records, prices) for value, group_records in by_group.items()]
    rows.sort(key=lambda row: (-sum(row.tokens.values()), row.label))
    totals = {start: _sum(group) for start, group in per_bucket.items()}
    max_tokens = max((sum(t.values()) for t in totals.values()), default=0)
    max_requests = max((len(group) for group in per_bucket.values()), default=0)
    bars = _bars(starts, per_bucket, totals, max_tokens, max_requests, query.window.width.name)
    return UsageView(
        range=range_name,
        group=group,
        bars=bars,
        rows=rows,
        claude_usd=total_usd(kept, prices),
        uncached_usd=total_usd((_uncached(record) for record in kept), prices),
        requests=len(kept),
        unpriced=sorted({record.model for record in kept if record.model not in prices}),
        max_tokens=max_tokens,
        max_requests=max_requests,
    )


def _row(label: str, records: list[UsageRecord], prices: Mapping[str, ModelPrice]) -> GroupRow:
    priced = any(record.model in prices for record in records)
    return GroupRow(label, len(records), _sum(records), total_usd(records, prices) if priced else None)


def _sum(records: Iterable[UsageRecord]) -> dict[str, int]:
    totals = dict.fromkeys(KINDS, 0)
    for record in records:
        for kind, count in tokens_of(record).items():
            totals[kind] += count
    return totals


def _uncached(record: UsageRecord) -> UsageRecord:
    """The record as the API would have billed it without prompt caching: every prompt token input."""
    cached = record.cache_read_tokens + record.cache_write_5m_tokens + record.cache_write_1h_tokens
    return replace(
        record,
        uncached_input_tokens=record.uncached_input_tokens + cached,
        cache_read_tokens=0,
        cache_write_5m_tokens=0,
        cache_write_1h_tokens=0,
    )


def _bars(
    starts: list[datetime],
    per_bucket: Mapping[datetime, list[UsageRecord]],
    totals: Mapping[datetime, dict[str, int]],
    max_tokens: int,
    max_requests: int,
    width_name: str,
) -> list[Bar]:
    slot = CHART_WIDTH / max(len(starts), 1)
    bars = []
    for index, start in enumerate(starts):
        segments, top = [], float(CHART_HEIGHT)
        for kind in KINDS:
            count = totals[start][kind]
            height = CHART_HEIGHT * count / max_tokens if max_tokens else 0.0
            top -= height
            if count:
                segments.append(Segment(kind, count, round(top, 2), round(height, 2)))
        requests = len(per_bucket[start])
        requests_height = CHART_HEIGHT / 2 * requests / max_requests if max_requests else 0.0
        bars.append(
            Bar(
                start=start,
                label=start.strftime("%H:00" if width_name == "1h" else "%b %d"),
                requests=requests,
                tokens=sum(totals[start].values()),
                x=round(index * slot + slot * 0.15, 2),
                width=round(slot * 0.7, 2),
                segments=tuple(segments),
                requests_y=round(CHART_HEIGHT / 2 - requests_height, 2),
            )
        )
    return bars
