from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from sijo.config import DEFAULT_PRICES
from sijo.errors import InvalidRequestError
from sijo.reports import (
    SummaryRow,
    cost_report,
    format_summary,
    parse_cost_query,
    parse_usage_query,
    usage_report,
    usage_summary,
)
from sijo.usage import ServiceTier, UsageRecord

NOW = datetime(2025, 5, 20, 15, 30, tzinfo=UTC)
DAY1 = datetime(2025, 5, 14, 9, 0, tzinfo=UTC)
DAY2 = datetime(2025, 5, 15, 9, 0, tzinfo=UTC)
DAY3 = datetime(2025, 5, 16, 9, 0, tzinfo=UTC)
MILLION = 1_000_000


def rec(
    at: datetime,
    model: str = "claude-sonnet-4-6",
    *,
    api_key_id: str | None = "apikey_a",
    workspace_id: str | None = None,
    service_tier: ServiceTier = "standard",
    uncached_input_tokens: int = 100,
    output_tokens: int = 10,
    **more: int,
) -> UsageRecord:
    return UsageRecord(
        at=at,
        api_key_id=api_key_id,
        workspace_id=workspace_id,
        model=model,
        service_tier=service_tier,
        uncached_input_tokens=uncached_input_tokens,
        output_tokens=output_tokens,
        **more,
    )


def usage(records: list[UsageRecord], **query: str | list[str]) -> dict[str, Any]:
    return usage_report(records, parse_usage_query(items(query), NOW))


def items(query: Mapping[str, str | list[str]]) -> list[tuple[str, str]]:
    pairs = []
    for key, value in query.items():
        values = value if isinstance(value, list) else [value]
        pairs += [(key, one) for one in values]
    return pairs


# --- the usage report ---


def test_one_day_bucket_sums_every_counter_and_leaves_groups_null() -> None:
    records = [
        rec(DAY1, cache_read_tokens=50, cache_write_5m_tokens=7, cache_write_1h_tokens=3),
        rec(DAY1.replace(hour=23), model="claude-opus-4-7", output_tokens=5, web_search_requests=2),
    ]
    report = usage(records, starting_at="2025-05-14T00:00:00Z", ending_at="2025-05-15T00:00:00Z")
    assert report == {
        "data": [
            {
                "starting_at": "2025-05-14T00:00:00Z",
                "ending_at": "2025-05-15T00:00:00Z",
                "results": [
                    {
                        "uncached_input_tokens": 200,
                        "cache_read_input_tokens": 50,
                        "cache_creation": {"ephemeral_5m_input_tokens": 7, "ephemeral_1h_input_tokens": 3},
                        "output_tokens": 15,
                        "server_tool_use": {"web_search_requests": 2},
                        "model": None,
                        "workspace_id": None,
                        "api_key_id": None,
                        "service_tier": None,
                        "context_window": None,
                        "inference_geo": None,
                    }
                ],
            }
        ],
        "has_more": False,
        "next_page": None,
    }


def test_hour_buckets_split_records_across_an_hour_boundary() -> None:
    records = [
        rec(datetime(2025, 5, 14, 10, 59, 59, tzinfo=UTC), uncached_input_tokens=1),
        rec(datetime(2025, 5, 14, 11, 0, 0, tzinfo=UTC), uncached_input_tokens=2),
        rec(datetime(2025, 5, 14, 11, 30, tzinfo=UTC), uncached_input_tokens=4),
    ]
    report = usage(
        records, starting_at="2025-05-14T10:15:00Z", ending_at="2025-05-14T12:00:00Z", bucket_width="1h"
    )
    buckets = [
        (b["starting_at"], b["ending_at"], [r["uncached_input_tokens"] for r in b["results"]])
        for b in report["data"]
    ]
    assert buckets == [
        ("2025-05-14T10:00:00Z", "2025-05-14T11:00:00Z", [1]),  # starting_at snapped down
        ("2025-05-14T11:00:00Z", "2025-05-14T12:00:00Z", [6]),
    ]


def test_empty_buckets_are_listed_and_ending_at_defaults_to_now() -> None:
    report = usage([rec(DAY1)], starting_at="2025-05-18T06:00:00+02:00")
    assert [(b["starting_at"], b["results"]) for b in report["data"]] == [
        ("2025-05-18T00:00:00Z", []),
        ("2025-05-19T00:00:00Z", []),
        ("2025-05-20T00:00:00Z", []),  # today, up to NOW
    ]
    assert report["has_more"] is False


def test_minute_buckets() -> None:
    records = [rec(datetime(2025, 5, 14, 10, 1, 30, tzinfo=UTC))]
    report = usage(
        records, starting_at="2025-05-14T10:00:00Z", ending_at="2025-05-14T10:03:00Z", bucket_width="1m"
    )
    assert [len(b["results"]) for b in report["data"]] == [0, 1, 0]


def test_group_by_model_splits_results_and_fills_only_that_field() -> None:
    records = [rec(DAY1), rec(DAY1, "claude-opus-4-7", output_tokens=1), rec(DAY1, output_tokens=5)]
    report = usage(records, starting_at="2025-05-14T00:00:00Z", limit="1", **{"group_by[]": "model"})
    results = report["data"][0]["results"]
    assert [(r["model"], r["output_tokens"], r["uncached_input_tokens"]) for r in results] == [
        ("claude-opus-4-7", 1, 100),
        ("claude-sonnet-4-6", 15, 200),
    ]
    assert {r["api_key_id"] for r in results} == {None}
    assert {r["context_window"] for r in results} == {None}


def test_group_by_several_fields_and_without_brackets() -> None:
    records = [
        rec(DAY1, workspace_id="wrkspc_1", service_tier="batch"),
        rec(DAY1, workspace_id="wrkspc_1"),
        rec(DAY1, workspace_id=None, api_key_id="apikey_b"),
    ]
    query = {"group_by": ["workspace_id", "service_tier", "context_window", "inference_geo"]}
    report = usage(records, starting_at="2025-05-14T00:00:00Z", limit="1", **query)
    results = report["data"][0]["results"]
    assert [(r["workspace_id"], r["service_tier"], r["api_key_id"]) for r in results] == [
        (None, "standard", None),
        ("wrkspc_1", "batch", None),
        ("wrkspc_1", "standard", None),
    ]
    assert {(r["context_window"], r["inference_geo"]) for r in results} == {("0-200k", "global")}


def test_filters_keep_only_matching_records() -> None:
    records = [
        rec(DAY1, api_key_id="apikey_a", uncached_input_tokens=1),
        rec(DAY1, api_key_id="apikey_b", uncached_input_tokens=2),
        rec(DAY1, "claude-opus-4-7", api_key_id="apikey_b", uncached_input_tokens=4),
        rec(DAY1, workspace_id="wrkspc_1", service_tier="batch", uncached_input_tokens=8),
    ]

    def total(**query: str | list[str]) -> int:
        report = usage(records, starting_at="2025-05-14T00:00:00Z", limit="1", **query)
        return sum(r["uncached_input_tokens"] for r in report["data"][0]["results"])

    assert total() == 15
    assert total(**{"api_key_ids[]": "apikey_b"}) == 6
    assert total(**{"models[]": ["claude-opus-4-7", "claude-haiku-4-5"]}) == 4
    assert total(**{"models[]": "claude-sonnet-4-6", "api_key_ids[]": "apikey_b"}) == 2
    assert total(**{"workspace_ids[]": "wrkspc_1"}) == 8
    assert total(**{"service_tiers[]": "standard"}) == 7
    assert total(**{"context_window[]": "200k-1M"}) == 0


def test_pagination_limit_two_over_three_days() -> None:
    records = [rec(DAY1, output_tokens=1), rec(DAY2, output_tokens=2), rec(DAY3, output_tokens=3)]
    query = {"starting_at": "2025-05-14T00:00:00Z", "ending_at": "2025-05-17T00:00:00Z", "limit": "2"}
    first = parse_usage_query(items(query), NOW)
    assert first.fetch_range == (datetime(2025, 5, 14, tzinfo=UTC), datetime(2025, 5, 16, tzinfo=UTC))
    page1 = usage_report(records, first)
    assert [b["starting_at"] for b in page1["data"]] == ["2025-05-14T00:00:00Z", "2025-05-15T00:00:00Z"]
    assert [b["results"][0]["output_tokens"] for b in page1["data"]] == [1, 2]
    assert page1["has_more"] is True
    assert page1["next_page"] == "page_MjAyNS0wNS0xNlQwMDowMDowMFo="  # base64 of 2025-05-16T00:00:00Z

    second = parse_usage_query([*items(query), ("page", page1["next_page"])], NOW)
    assert second.fetch_range == (datetime(2025, 5, 16, tzinfo=UTC), datetime(2025, 5, 17, tzinfo=UTC))
    page2 = usage_report(records, second)
    assert [b["starting_at"] for b in page2["data"]] == ["2025-05-16T00:00:00Z"]
    assert page2["data"][0]["results"][0]["output_tokens"] == 3
    assert (page2["has_more"], page2["next_page"]) == (False, None)


def test_default_limits_per_bucket_width() -> None:
    start = "2025-05-01T00:00:00Z"
    for width, limit in (("1d", 7), ("1h", 24), ("1m", 60)):
        query = parse_usage_query([("starting_at", start), ("bucket_width", width)], NOW)
        assert query.window.limit == limit
        assert len(usage_report([], query)["data"]) == limit


def test_starting_at_in_the_future_gives_no_buckets() -> None:
    assert usage([], starting_at="2025-06-01T00:00:00Z") == {"data": [], "has_more": False, "next_page": None}


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ({}, "starting_at"),
        ({"starting_at": "yesterday"}, "starting_at"),
        ({"starting_at": "2025-05-14T00:00:00"}, "starting_at"),  # no time zone
        ({"ending_at": "2025-05-13"}, "ending_at"),
        ({"ending_at": "2025-05-13T00:00:00Z"}, "ending_at"),  # before starting_at
        ({"bucket_width": "1w"}, "bucket_width"),
        ({"limit": "0"}, "limit"),
        ({"limit": "32"}, "limit"),
        ({"limit": "169", "bucket_width": "1h"}, "limit"),
        ({"limit": "1441", "bucket_width": "1m"}, "limit"),
        ({"limit": "seven"}, "limit"),
        ({"group_by[]": "speed"}, "group_by"),
        ({"service_tiers[]": "gold"}, "service_tiers"),
        ({"inference_geos[]": "mars"}, "inference_geos"),
        ({"page": "page_bm9wZQ=="}, "page"),
        ({"page": "not base64!"}, "page"),
        ({"page": "page_MjAyNi0wMS0wMVQwMDowMDowMFo="}, "page"),  # 2026: past the report's end
        ({"page": "page_MjAyNS0wNS0xNlQwMTowMDowMFo="}, "page"),  # 01:00, not a day bucket
    ],
)
def test_usage_query_errors_name_their_parameter(query: dict[str, str], named: str) -> None:
    base = {"starting_at": "2025-05-14T00:00:00Z"} if "starting_at" not in query and query else {}
    with pytest.raises(InvalidRequestError) as caught:
        parse_usage_query(items({**base, **query}), NOW)
    assert caught.value.message.startswith(f"{named}:")
    assert caught.value.status_code == 400


def test_errors_name_the_bad_value_and_the_choices() -> None:
    with pytest.raises(
        InvalidRequestError, match=r"^group_by: 'speed' is not one of model, workspace_id, api_key_id"
    ):
        parse_usage_query([("starting_at", "2025-05-14T00:00:00Z"), ("group_by[]", "speed")], NOW)
    with pytest.raises(InvalidRequestError, match="bucket_width: must be one of 1m, 1h, 1d"):
        parse_usage_query([("starting_at", "2025-05-14T00:00:00Z"), ("bucket_width", "5m")], NOW)


# --- the cost report ---


def cost(records: list[UsageRecord], **query: str | list[str]) -> dict[str, Any]:
    return cost_report(records, DEFAULT_PRICES, parse_cost_query(items(query), NOW))


def test_cost_without_group_by_is_one_total_per_bucket_in_cents() -> None:
    records = [
        rec(DAY1, uncached_input_tokens=MILLION, output_tokens=0),  # $3
        rec(DAY1, service_tier="batch", uncached_input_tokens=0, output_tokens=MILLION),  # $7.50
        rec(DAY1, "local-model", uncached_input_tokens=MILLION),  # no price
    ]
    report = cost(records, starting_at="2025-05-14T00:00:00Z", ending_at="2025-05-16T00:00:00Z")
    assert report["data"] == [
        {
            "starting_at": "2025-05-14T00:00:00Z",
            "ending_at": "2025-05-15T00:00:00Z",
            "results": [
                {
                    "amount": "1050",
                    "currency": "USD",
                    "cost_type": None,
                    "description": None,
                    "model": None,
                    "service_tier": None,
                    "context_window": None,
                    "token_type": None,
                    "workspace_id": None,
                    "inference_geo": None,
                }
            ],
        },
        {"starting_at": "2025-05-15T00:00:00Z", "ending_at": "2025-05-16T00:00:00Z", "results": []},
    ]
    assert (report["has_more"], report["next_page"]) == (False, None)


def test_cost_by_description_fills_model_token_type_and_tier() -> None:
    records = [
        rec(DAY1, uncached_input_tokens=MILLION, output_tokens=MILLION, cache_read_tokens=MILLION),
        rec(DAY1, uncached_input_tokens=MILLION, output_tokens=0, web_search_requests=2),
        rec(DAY1, service_tier="batch", uncached_input_tokens=MILLION, output_tokens=0),
    ]
    report = cost(records, starting_at="2025-05-14T00:00:00Z", limit="1", **{"group_by[]": "description"})
    results = report["data"][0]["results"]
    rows = [
        (r["description"], r["service_tier"], r["cost_type"], r["token_type"], r["amount"]) for r in results
    ]
    assert rows == [
        ("Claude Sonnet 4.6 Usage - Input Tokens", "standard", "tokens", "uncached_input_tokens", "600"),
        ("Claude Sonnet 4.6 Usage - Input Tokens (Batch)", "batch", "tokens", "uncached_input_tokens", "150"),
        (
            "Claude Sonnet 4.6 Usage - Input Tokens, Cache Read",
            "standard",
            "tokens",
            "cache_read_input_tokens",
            "30",
        ),
        ("Claude Sonnet 4.6 Usage - Output Tokens", "standard", "tokens", "output_tokens", "1500"),
        ("Claude Sonnet 4.6 Web Search", "standard", "web_search", None, "2"),
    ]
    assert {(r["model"], r["context_window"], r["inference_geo"], r["workspace_id"]) for r in results} == {
        ("claude-sonnet-4-6", "0-200k", "global", None)
    }


def test_cost_by_workspace() -> None:
    records = [
        rec(DAY1, workspace_id="wrkspc_1", uncached_input_tokens=MILLION, output_tokens=0),
        rec(DAY1, workspace_id="wrkspc_2", uncached_input_tokens=0, output_tokens=MILLION),
    ]
    report = cost(records, starting_at="2025-05-14T00:00:00Z", limit="1", group_by="workspace_id")
    results = report["data"][0]["results"]
    assert [(r["workspace_id"], r["amount"], r["description"]) for r in results] == [
        ("wrkspc_1", "300", None),
        ("wrkspc_2", "1500", None),
    ]


def test_cost_pagination_round_trips() -> None:
    records = [rec(day, uncached_input_tokens=MILLION, output_tokens=0) for day in (DAY1, DAY2, DAY3)]
    query = [("starting_at", "2025-05-14T00:00:00Z"), ("ending_at", "2025-05-17T00:00:00Z"), ("limit", "2")]
    page1 = cost_report(records, DEFAULT_PRICES, parse_cost_query(query, NOW))
    assert page1["has_more"] is True
    second = parse_cost_query([*query, ("page", page1["next_page"])], NOW)
    page2 = cost_report(records, DEFAULT_PRICES, second)
    assert [(b["starting_at"], b["results"][0]["amount"]) for b in page2["data"]] == [
        ("2025-05-16T00:00:00Z", "300")
    ]
    assert page2["has_more"] is False


def test_cost_defaults_to_seven_days() -> None:
    query = parse_cost_query([("starting_at", "2025-05-01T00:00:00Z")], NOW)
    assert query.window.limit == 7
    assert query.fetch_range == (datetime(2025, 5, 1, tzinfo=UTC), datetime(2025, 5, 8, tzinfo=UTC))


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ({"bucket_width": "1h"}, "bucket_width"),
        ({"group_by[]": "model"}, "group_by"),
        ({"limit": "32"}, "limit"),
        ({"page": "page_x"}, "page"),
        ({"ending_at": "soon"}, "ending_at"),
    ],
)
def test_cost_query_errors_name_their_parameter(query: dict[str, str], named: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        parse_cost_query(items({"starting_at": "2025-05-14T00:00:00Z", **query}), NOW)
    assert caught.value.message.startswith(f"{named}:")


# --- `sijo usage` ---


def test_usage_summary_one_row_per_model_and_a_total() -> None:
    records = [
        rec(DAY1, uncached_input_tokens=MILLION, output_tokens=0, cache_write_5m_tokens=10),
        rec(DAY2, uncached_input_tokens=0, output_tokens=MILLION, cache_write_1h_tokens=5),
        rec(DAY2, "smollm2", uncached_input_tokens=7, output_tokens=3, cache_read_tokens=2),
    ]
    sonnet_usd = Decimal("18.0000675")  # 3 + 15, and cache writes: 10 x $3.75 + 5 x $6 per million
    assert usage_summary(records, DEFAULT_PRICES) == [
        SummaryRow("claude-sonnet-4-6", 2, MILLION, 15, 0, MILLION, sonnet_usd),
        SummaryRow("smollm2", 1, 7, 0, 2, 3, None),
        SummaryRow("total", 3, MILLION + 7, 15, 2, MILLION + 3, sonnet_usd),
    ]


def test_usage_summary_of_nothing_is_a_zero_total() -> None:
    assert usage_summary([], DEFAULT_PRICES) == [SummaryRow("total", 0, 0, 0, 0, 0, Decimal(0))]


def test_usage_summary_rows_are_sorted_by_model() -> None:
    records = [rec(DAY1, "zeta"), rec(DAY1, "alpha"), rec(DAY1, "claude-opus-4-7")]
    assert [row.model for row in usage_summary(records, DEFAULT_PRICES)] == [
        "alpha",
        "claude-opus-4-7",
        "zeta",
        "total",
    ]


def test_format_summary_is_an_aligned_table() -> None:
    records = [
        rec(DAY1, uncached_input_tokens=MILLION, output_tokens=MILLION),
        rec(DAY1, "local", uncached_input_tokens=5, output_tokens=1),
        rec(DAY1, "claude-haiku-4-5", uncached_input_tokens=1, output_tokens=0),
    ]
    text = format_summary(usage_summary(records, DEFAULT_PRICES))
    lines = text.splitlines()
    assert lines[0].split() == [
        "model",
        "requests",
        "input",
        "cache",
        "write",
        "cache",
        "read",
        "output",
        "Claude",
        "API",
        "cost",
    ]
    assert lines[1].split() == ["claude-haiku-4-5", "1", "1", "0", "0", "0", "<$0.01"]
    assert lines[2].split() == ["claude-sonnet-4-6", "1", "1,000,000", "0", "0", "1,000,000", "$18.00"]
    assert lines[3].split() == ["local", "1", "5", "0", "0", "1", "-"]
    assert lines[4].split() == ["total", "3", "1,000,006", "0", "0", "1,000,001", "$18.00"]
    assert len({len(line) for line in lines}) == 1  # every column padded to one width
    assert lines[4].endswith("$18.00") and lines[3].endswith("-")


def test_dates_at_the_edges_of_the_calendar() -> None:
    with pytest.raises(InvalidRequestError, match=r"^starting_at:"):
        parse_usage_query([("starting_at", "9999-12-31T00:00:00Z")], NOW)
    late = usage([], starting_at="9998-12-30T00:00:00Z", ending_at="9998-12-31T12:00:00Z", limit="31")
    assert [b["starting_at"] for b in late["data"]] == ["9998-12-30T00:00:00Z", "9998-12-31T00:00:00Z"]
    early = usage([], starting_at="1970-01-01T00:00:00Z", limit="1")
    assert early["data"][0]["ending_at"] == "1970-01-02T00:00:00Z"
    again = parse_usage_query([("starting_at", "1970-01-01T00:00:00Z"), ("page", early["next_page"])], NOW)
    assert again.fetch_range[0] == datetime(1970, 1, 2, tzinfo=UTC)
    for ancient in ("0001-01-01T00:00:00+14:00", "1969-12-31T23:59:59Z"):  # +14:00 overflowed once
        with pytest.raises(InvalidRequestError, match=r"^starting_at:"):
            parse_usage_query([("starting_at", ancient)], NOW)
