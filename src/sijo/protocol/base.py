"""The base class of every wire type, and the small shapes shared by many of them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict


class WireModel(BaseModel):
    """A request-side wire object: unknown keys are rejected, as the real API does (reference §1.2)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ResponseModel(BaseModel):
    """A response-side wire object: serialised with every key, nulls included (reference §2)."""

    model_config = ConfigDict(frozen=True)


class CacheControl(WireModel):
    type: Literal["ephemeral"]
    ttl: Literal["5m", "1h"] | None = None


def rfc3339(moment: datetime, timespec: str = "auto") -> str:
    """A time as the API writes it, in UTC with a `Z`: `2025-08-01T00:00:00Z` (reference §0)."""
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec=timespec) + "Z"
