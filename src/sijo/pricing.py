"""Pricing: what a usage record would have cost on the Claude API, as cost lines in exact decimals.

Owns the price rules (reference §6 "Prices", §8 "Pricing", §12 web_search), given a model's
`ModelPrice` in USD per million tokens:

    uncached input          1x input price
    5 minute cache write    1.25x input price
    1 hour cache write      2x input price
    cache read              0.1x input price
    output (thinking too)   1x output price
    service_tier "batch"    0.5x on every token price above (so a batch cache read is 0.05x)
    web search              $10 per 1,000 searches; the batch discount is on tokens only

A model without a price is not on the Claude API (a local model served under its own id): it costs
nothing, and its records give no cost lines at all, web searches included. Lines for zero tokens are
left out too, so every line has something to pay for. Money is `Decimal`, never float: prices are
converted through their shortest decimal repr, so `3.0` is exactly three dollars.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from sijo.config import CLAUDE_MODELS, ModelPrice
from sijo.usage import ServiceTier, UsageRecord

CostType = Literal["tokens", "web_search"]
TokenType = Literal[
    "uncached_input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "cache_creation.ephemeral_5m_input_tokens",
    "cache_creation.ephemeral_1h_input_tokens",
]

PER_MILLION = Decimal(1_000_000)
WEB_SEARCH_USD = Decimal("0.01")  # $10 per 1,000 searches
BATCH_DISCOUNT = Decimal("0.5")

# Each token type: the record field counting it, the base price it follows, and its multiplier.
_TOKEN_RATES: tuple[tuple[TokenType, str, Literal["input", "output"], Decimal], ...] = (
    ("uncached_input_tokens", "uncached_input_tokens", "input", Decimal(1)),
    ("cache_creation.ephemeral_5m_input_tokens", "cache_write_5m_tokens", "input", Decimal("1.25")),
    ("cache_creation.ephemeral_1h_input_tokens", "cache_write_1h_tokens", "input", Decimal(2)),
    ("cache_read_input_tokens", "cache_read_tokens", "input", Decimal("0.1")),
    ("output_tokens", "output_tokens", "output", Decimal(1)),
)

_TOKEN_WORDS: dict[TokenType, str] = {
    "uncached_input_tokens": "Input Tokens",
    "output_tokens": "Output Tokens",
    "cache_read_input_tokens": "Input Tokens, Cache Read",
    "cache_creation.ephemeral_5m_input_tokens": "Input Tokens, Cache Write 5m",
    "cache_creation.ephemeral_1h_input_tokens": "Input Tokens, Cache Write 1h",
}

_DISPLAY_NAMES: dict[str, str] = {
    model_id: name
    for claude_id, name, aliases, _max_tokens in CLAUDE_MODELS
    for model_id in (claude_id, *aliases)
}


@dataclass(frozen=True, slots=True)
class CostLine:
    """One priced quantity of one record (or, summed, of many records sharing these fields)."""

    model: str
    service_tier: ServiceTier
    workspace_id: str | None
    api_key_id: str | None
    cost_type: CostType
    token_type: TokenType | None  # None for web_search
    tokens: int  # tokens of token_type; for cost_type "web_search", the number of searches
    usd: Decimal

    @property
    def description(self) -> str:
        """What the cost report calls this line, e.g. "Claude Sonnet 4.6 Usage - Input Tokens"."""
        name = display_name(self.model)
        what = "Web Search" if self.token_type is None else f"Usage - {_TOKEN_WORDS[self.token_type]}"
        batch = " (Batch)" if self.service_tier == "batch" else ""
        return f"{name} {what}{batch}"


def display_name(model: str) -> str:
    """The Claude model's marketing name ("Claude Sonnet 4.6"), or the id itself for other models."""
    return _DISPLAY_NAMES.get(model, model)


def cost_lines(record: UsageRecord, prices: Mapping[str, ModelPrice]) -> list[CostLine]:
    """The record's cost, one line per token type (and one for web searches) it used."""
    price = prices.get(record.model)
    if price is None:
        return []
    tier = BATCH_DISCOUNT if record.service_tier == "batch" else Decimal(1)
    base = {"input": _decimal(price.input), "output": _decimal(price.output)}
    lines = []
    for token_type, field, side, multiplier in _TOKEN_RATES:
        tokens: int = getattr(record, field)
        if tokens:
            usd = tokens * base[side] * multiplier * tier / PER_MILLION
            lines.append(_line(record, "tokens", token_type, tokens, usd))
    if record.web_search_requests:
        usd = record.web_search_requests * WEB_SEARCH_USD
        lines.append(_line(record, "web_search", None, record.web_search_requests, usd))
    return lines


def total_usd(records: Iterable[UsageRecord], prices: Mapping[str, ModelPrice]) -> Decimal:
    """What all the records together would have cost, in US dollars."""
    return sum((line.usd for record in records for line in cost_lines(record, prices)), Decimal(0))


def cents(usd: Decimal) -> str:
    """US dollars as the cost report's amount: a plain decimal string of cents, e.g. "300", "0.015"."""
    return format((usd * 100).normalize(), "f")


def _line(
    record: UsageRecord, cost_type: CostType, token_type: TokenType | None, tokens: int, usd: Decimal
) -> CostLine:
    return CostLine(
        model=record.model,
        service_tier=record.service_tier,
        workspace_id=record.workspace_id,
        api_key_id=record.api_key_id,
        cost_type=cost_type,
        token_type=token_type,
        tokens=tokens,
        usd=usd,
    )


def _decimal(usd_per_million: float) -> Decimal:
    # repr of a float is its shortest round-tripping decimal: 0.3 becomes Decimal("0.3"), not 0.2999...
    return Decimal(repr(usd_per_million))
