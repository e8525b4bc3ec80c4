"""A usage record: what one request (interactive or batch) consumed, as the usage ledger keeps it.

Pure values; the ledger (`store/`) persists them, `pricing` prices them, `reports` buckets them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

ServiceTier = Literal["standard", "batch"]


@dataclass(frozen=True, slots=True)
class UsageRecord:
    at: datetime  # when the request ended, timezone-aware UTC
    api_key_id: str | None  # None: a server without keys, or a key from the config file
    workspace_id: str | None  # None: the default workspace
    model: str  # the model id the client asked for (an alias stays an alias, as the API reports it)
    service_tier: ServiceTier
    uncached_input_tokens: int
    output_tokens: int
    cache_write_5m_tokens: int = 0
    cache_write_1h_tokens: int = 0
    cache_read_tokens: int = 0
    thinking_tokens: int = 0  # part of output_tokens
    web_search_requests: int = 0
