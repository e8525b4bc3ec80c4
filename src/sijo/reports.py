"""Reports: the Admin API's usage and cost reports (reference §14) and the `sijo usage` summary.

Framework-free. The router passes the raw query items to `parse_usage_query` / `parse_cost_query`
(bad values raise `InvalidRequestError` naming the parameter), asks the ledger for the records in
`query.fetch_range` (half-open, [start, end)), and returns `usage_report` / `cost_report` as JSON.

Time buckets are UTC minutes, hours or days: `starting_at` is snapped down to its bucket and
`ending_at` (default: now) up to the end of its bucket, so the bucket holding `ending_at` is included
whole. Every bucket of a page is listed, empty ones with `results: []`. A page holds `limit` buckets;
`next_page` is `page_` + base64 of the next page's first bucket (as the API's own cursors), and is
only valid with the same starting_at, ending_at and bucket_width.

Sijo's records all fit the API's smallest context window and run in one place, so when grouped by
them `context_window` is "0-200k" and `inference_geo` is "global".
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

from sijo.config import ModelPrice
from sijo.errors import InvalidRequestError, shown
from sijo.pricing import CostLine, cents, cost_lines, total_usd
from sijo.protocol.base import rfc3339
from sijo.usage import UsageRecord

CONTEXT_WINDOW = "0-200k"
INFERENCE_GEO = "global"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# The usage report's dimensions, in the order a result lists them; group_by may name any of them.
USAGE_DIMENSIONS = ("model", "workspace_id", "api_key_id", "service_tier", "context_window", "inference_geo")
COST_GROUPS = ("workspace_id", "description")
COST_FIELDS = (
    "cost_type",
    "description",
    "model",
    "service_tier",
    "context_window",
    "token_type",
    "workspace_id",
    "inference_geo",
)
SERVICE_TIERS = ("standard", "batch", "priority", "priority_on_demand", "flex", "flex_discount")
CONTEXT_WINDOWS = ("0-200k", "200k-1M")
INFERENCE_GEOS = ("global", "us", "not_available")

Params = dict[str, list[str]]
Dimensions = tuple[tuple[str, str | None], ...]
V = TypeVar("V")


@dataclass(frozen=True, slots=True)
class BucketWidth:
    name: str
    size: timedelta
    default_limit: int
    max_limit: int


USAGE_WIDTHS = {
    width.name: width
    for width in (
        BucketWidth("1m", timedelta(minutes=1), 60, 1440),
        BucketWidth("1h", timedelta(hours=1), 24, 168),
        BucketWidth("1d", timedelta(days=1), 7, 31),
    )
}
COST_WIDTHS = {"1d": USAGE_WIDTHS["1d"]}


@dataclass(frozen=True, slots=True)
class ReportWindow:
    """The buckets a report covers, and the page of them that this request returns."""

    start: datetime  # the report's first bucket: starting_at snapped down
    end: datetime  # the end of its last bucket: ending_at (or now) snapped up
    width: BucketWidth
    limit: int
    page_start: datetime  # this page's first bucket: start, or the `page` cursor

    @property
    def page_end(self) -> datetime:
        left = (self.end - self.page_start) // self.width.size  # so far-future dates cannot overflow
        return self.page_start + min(self.limit, left) * self.width.size

    @property
    def next_page(self) -> str | None:
        return _cursor(self.page_end) if self.page_end < self.end else None

    def buckets(self) -> list[datetime]:
        count = (self.page_end - self.page_start) // self.width.size
        return [self.page_start + index * self.width.size for index in range(count)]

    def bucket_of(self, at: datetime) -> datetime | None:
        """The start of the bucket on this page holding `at`, or None when it is off the page."""
        if not self.page_start <= at < self.page_end:
            return None
        return _floor(at, self.width.size)


@dataclass(frozen=True, slots=True)
class UsageQuery:
    window: ReportWindow
    group_by: tuple[str, ...] = ()
    models: frozenset[str] = frozenset()  # each filter: empty means no filter
    api_key_ids: frozenset[str] = frozenset()
    workspace_ids: frozenset[str] = frozenset()
    service_tiers: frozenset[str] = frozenset()
    context_windows: frozenset[str] = frozenset()
    inference_geos: frozenset[str] = frozenset()

    @property
    def fetch_range(self) -> tuple[datetime, datetime]:
        """The records this page needs: those with `start <= at < end`."""
        return self.window.page_start, self.window.page_end

    def matches(self, record: UsageRecord) -> bool:
        wanted = (
            (self.models, record.model),
            (self.api_key_ids, record.api_key_id),
            (self.workspace_ids, record.workspace_id),
            (self.service_tiers, record.service_tier),
            (self.context_windows, CONTEXT_WINDOW),
            (self.inference_geos, INFERENCE_GEO),
        )
        return all(not allowed or value in allowed for allowed, value in wanted)


@dataclass(frozen=True, slots=True)
class CostQuery:
    window: ReportWindow
    group_by: tuple[str, ...] = ()

    @property
    def fetch_range(self) -> tuple[datetime, datetime]:
        """The records this page needs: those with `start <= at < end`."""
        return self.window.page_start, self.window.page_end


@dataclass(frozen=True, slots=True)
class SummaryRow:
    model: str  # "total" in the total row
    requests: int
    input_tokens: int  # uncached input
    cache_write_tokens: int  # 5 minute and 1 hour writes
    cache_read_tokens: int
    output_tokens: int
    usd: Decimal | None  # on the Claude API; None for a model it has no price for


# --- queries ---


def parse_usage_query(items: Sequence[tuple[str, str]], now: datetime) -> UsageQuery:
    """`GET /v1/organizations/usage_report/messages`'s query string, validated."""
    params = _collect(items)
    return UsageQuery(
        window=_window(params, now, USAGE_WIDTHS),
        group_by=_members(params, "group_by", USAGE_DIMENSIONS),
        models=frozenset(params.get("models", ())),
        api_key_ids=frozenset(params.get("api_key_ids", ())),
        workspace_ids=frozenset(params.get("workspace_ids", ())),
        service_tiers=frozenset(_members(params, "service_tiers", SERVICE_TIERS)),
        context_windows=frozenset(_members(params, "context_window", CONTEXT_WINDOWS)),
        inference_geos=frozenset(_members(params, "inference_geos", INFERENCE_GEOS)),
    )


def parse_cost_query(items: Sequence[tuple[str, str]], now: datetime) -> CostQuery:
    """`GET /v1/organizations/cost_report`'s query string, validated."""
    params = _collect(items)
    return CostQuery(
        window=_window(params, now, COST_WIDTHS), group_by=_members(params, "group_by", COST_GROUPS)
    )


def _collect(items: Sequence[tuple[str, str]]) -> Params:
    # The SDKs send arrays as `group_by[]=a&group_by[]=b`; a bare `group_by=a` means the same.
    params: Params = {}
    for key, value in items:
        params.setdefault(key.removesuffix("[]"), []).append(value)
    return params


def _single(params: Params, name: str) -> str | None:
    values = params.get(name)
    return values[-1] if values else None


def _members(params: Params, name: str, allowed: Sequence[str]) -> tuple[str, ...]:
    values = tuple(dict.fromkeys(params.get(name, ())))
    for value in values:
        if value not in allowed:
            raise InvalidRequestError(f"{name}: {shown(repr(value))} is not one of {', '.join(allowed)}")
    return values


def _window(params: Params, now: datetime, widths: Mapping[str, BucketWidth]) -> ReportWindow:
    name = _single(params, "bucket_width") or "1d"
    width = widths.get(name)
    if width is None:
        raise InvalidRequestError(f"bucket_width: must be one of {', '.join(widths)}")
    starting_at = _timestamp(params, "starting_at")
    if starting_at is None:
        raise InvalidRequestError("starting_at: required")
    ending_at = _timestamp(params, "ending_at")
    if ending_at is not None and ending_at <= starting_at:
        raise InvalidRequestError("ending_at: must be after starting_at")
    start = _floor(starting_at, width.size)
    end = max(_ceil(ending_at or now.astimezone(UTC), width.size), start)
    page_start = _page_start(_single(params, "page"), start, end, width.size)
    return ReportWindow(start, end, width, _limit(params, width), page_start)


def _timestamp(params: Params, name: str) -> datetime | None:
    raw = _single(params, name)
    if raw is None:
        return None
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        value = None
    # 1970 to 9998: no overflow when moved to UTC or snapped to its bucket's bounds
    if value is None or value.tzinfo is None or not 1970 <= value.year <= 9998:
        raise InvalidRequestError(f"{name}: must be an RFC 3339 timestamp, e.g. 2025-01-01T00:00:00Z")
    return value.astimezone(UTC)


def _limit(params: Params, width: BucketWidth) -> int:
    raw = _single(params, "limit")
    if raw is None:
        return width.default_limit
    try:
        limit = int(raw)
    except ValueError:
        limit = 0
    if not 1 <= limit <= width.max_limit:
        raise InvalidRequestError(
            f"limit: must be an integer from 1 to {width.max_limit} for bucket_width {width.name}"
        )
    return limit


def _page_start(page: str | None, start: datetime, end: datetime, size: timedelta) -> datetime:
    if page is None:
        return start
    try:
        at = datetime.fromisoformat(base64.b64decode(page.removeprefix("page_"), validate=True).decode())
    except (ValueError, binascii.Error, UnicodeDecodeError):
        at = None
    if at is None or at.tzinfo is None or not start <= at < end or _floor(at, size) != at:
        raise InvalidRequestError(
            "page: not a next_page of this report (same starting_at, ending_at, bucket_width)"
        )
    return at.astimezone(UTC)


def _cursor(at: datetime) -> str:
    return "page_" + base64.b64encode(rfc3339(at, "seconds").encode()).decode()


def _floor(at: datetime, size: timedelta) -> datetime:
    return EPOCH + (at - EPOCH) // size * size


def _ceil(at: datetime, size: timedelta) -> datetime:
    return EPOCH - (EPOCH - at) // size * size


# --- reports ---


def usage_report(records: Iterable[UsageRecord], query: UsageQuery) -> dict[str, Any]:
    """The usage report's page: token counts per bucket, one result per group of records."""
    buckets: dict[datetime, dict[Dimensions, list[UsageRecord]]] = {b: {} for b in query.window.buckets()}
    for record in records:
        bucket = query.window.bucket_of(record.at)
        if bucket is not None and query.matches(record):
            key = tuple((name, _dimension(record, name)) for name in query.group_by)
            buckets[bucket].setdefault(key, []).append(record)
    data = [
        _bucket(start, query.window, [_usage_result(key, group) for key, group in _in_order(groups)])
        for start, groups in buckets.items()
    ]
    return _page(data, query.window)


def _dimension(record: UsageRecord, name: str) -> str | None:
    fixed = {"context_window": CONTEXT_WINDOW, "inference_geo": INFERENCE_GEO}
    value: str | None = fixed[name] if name in fixed else getattr(record, name)
    return value


def _usage_result(key: Dimensions, records: list[UsageRecord]) -> dict[str, Any]:
    grouped = dict(key)
    return {
        "uncached_input_tokens": sum(r.uncached_input_tokens for r in records),
        "cache_read_input_tokens": sum(r.cache_read_tokens for r in records),
        "cache_creation": {
            "ephemeral_5m_input_tokens": sum(r.cache_write_5m_tokens for r in records),
            "ephemeral_1h_input_tokens": sum(r.cache_write_1h_tokens for r in records),
        },
        "output_tokens": sum(r.output_tokens for r in records),
        "server_tool_use": {"web_search_requests": sum(r.web_search_requests for r in records)},
        **{name: grouped.get(name) for name in USAGE_DIMENSIONS},
    }


def cost_report(
    records: Iterable[UsageRecord], prices: Mapping[str, ModelPrice], query: CostQuery
) -> dict[str, Any]:
    """The cost report's page: Claude API prices of the usage per bucket, amounts in US cents."""
    buckets: dict[datetime, dict[Dimensions, Decimal]] = {b: {} for b in query.window.buckets()}
    for record in records:
        bucket = query.window.bucket_of(record.at)
        if bucket is None:
            continue
        for line in cost_lines(record, prices):
            key = _cost_key(line, query.group_by)
            buckets[bucket][key] = buckets[bucket].get(key, Decimal(0)) + line.usd
    data = [
        _bucket(start, query.window, [_cost_result(key, usd) for key, usd in _in_order(totals)])
        for start, totals in buckets.items()
    ]
    return _page(data, query.window)


def _cost_key(line: CostLine, group_by: tuple[str, ...]) -> Dimensions:
    key: list[tuple[str, str | None]] = []
    if "workspace_id" in group_by:
        key.append(("workspace_id", line.workspace_id))
    if "description" in group_by:
        key += [
            ("description", line.description),
            ("model", line.model),
            ("service_tier", line.service_tier),
            ("cost_type", line.cost_type),
            ("token_type", line.token_type),
            ("context_window", CONTEXT_WINDOW),
            ("inference_geo", INFERENCE_GEO),
        ]
    return tuple(key)


def _cost_result(key: Dimensions, usd: Decimal) -> dict[str, Any]:
    grouped = dict(key)
    return {"amount": cents(usd), "currency": "USD", **{name: grouped.get(name) for name in COST_FIELDS}}


def _in_order(groups: dict[Dimensions, V]) -> list[tuple[Dimensions, V]]:
    return sorted(groups.items(), key=lambda item: tuple(value or "" for _name, value in item[0]))


def _bucket(start: datetime, window: ReportWindow, results: list[dict[str, Any]]) -> dict[str, Any]:
    end = start + window.width.size
    return {
        "starting_at": rfc3339(start, "seconds"),
        "ending_at": rfc3339(end, "seconds"),
        "results": results,
    }


def _page(data: list[dict[str, Any]], window: ReportWindow) -> dict[str, Any]:
    next_page = window.next_page
    return {"data": data, "has_more": next_page is not None, "next_page": next_page}


# --- `sijo usage` ---


def usage_summary(records: Iterable[UsageRecord], prices: Mapping[str, ModelPrice]) -> list[SummaryRow]:
    """One row per model (by id), then a total row (of the priced models' costs)."""
    by_model: dict[str, list[UsageRecord]] = {}
    for record in records:
        by_model.setdefault(record.model, []).append(record)
    rows = [_summary_row(model, group, prices, model in prices) for model, group in sorted(by_model.items())]
    every = [record for group in by_model.values() for record in group]
    return [*rows, _summary_row("total", every, prices, priced=True)]


def _summary_row(
    label: str, records: list[UsageRecord], prices: Mapping[str, ModelPrice], priced: bool
) -> SummaryRow:
    return SummaryRow(
        model=label,
        requests=len(records),
        input_tokens=sum(r.uncached_input_tokens for r in records),
        cache_write_tokens=sum(r.cache_write_5m_tokens + r.cache_write_1h_tokens for r in records),
        cache_read_tokens=sum(r.cache_read_tokens for r in records),
        output_tokens=sum(r.output_tokens for r in records),
        usd=total_usd(records, prices) if priced else None,
    )


_SUMMARY_HEADERS = ("model", "requests", "input", "cache write", "cache read", "output", "Claude API cost")


def format_summary(rows: Sequence[SummaryRow]) -> str:
    """The rows as a plain-text table: model names left-aligned, numbers right-aligned."""
    table = [_SUMMARY_HEADERS, *(_summary_cells(row) for row in rows)]
    widths = [max(len(line[column]) for line in table) for column in range(len(_SUMMARY_HEADERS))]
    lines = [
        "  ".join(
            [line[0].ljust(widths[0]), *(c.rjust(w) for c, w in zip(line[1:], widths[1:], strict=True))]
        )
        for line in table
    ]
    return "\n".join(lines)


def _summary_cells(row: SummaryRow) -> tuple[str, ...]:
    tokens = (row.input_tokens, row.cache_write_tokens, row.cache_read_tokens, row.output_tokens)
    return (row.model, f"{row.requests:,}", *(f"{count:,}" for count in tokens), _dollars(row.usd))


def _dollars(usd: Decimal | None) -> str:
    if usd is None:
        return "-"  # no Claude API price for this model
    if 0 < usd < Decimal("0.01"):
        return "<$0.01"
    return f"${usd:,.2f}"
