"""Relaying a request to a Messages API upstream (the Claude API, another Sijo): its events are
passed on one by one, and what it billed goes to the usage ledger and the metrics like any reply."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any

from sijo.billing import ContentClock, bill
from sijo.errors import UpstreamUnavailableError
from sijo.metrics import Metrics
from sijo.prepared import RemoteMessage
from sijo.protocol.events import (
    MessageDeltaEvent,
    MessageStartEvent,
    StreamEvent,
)
from sijo.protocol.message import Usage
from sijo.store.ledger import UsageLedger
from sijo.usage import UsageRecord


def upstream_body(remote: RemoteMessage) -> dict[str, Any]:
    """The request as the client sent it (what it left out stays out)."""
    return remote.params.model_dump(mode="json", exclude_unset=True, by_alias=True)


async def relay(
    remote: RemoteMessage, ledger: UsageLedger | None, metrics: Metrics | None
) -> AsyncGenerator[StreamEvent, None]:
    """The upstream's events; what it billed is recorded when they end, unless the upstream failed
    before any content (the next route takes the request over, and bills it)."""
    usage: Usage | None = None
    clock = ContentClock()
    events = remote.route.upstream.stream(upstream_body(remote), dict(remote.forwarded))
    try:
        async with aclosing(events):
            async for event in events:
                if isinstance(event, MessageStartEvent):
                    usage = event.message.usage
                elif isinstance(event, MessageDeltaEvent) and usage is not None:
                    usage = _updated(usage, event)
                clock.see(event)
                yield event
    except UpstreamUnavailableError:
        if clock.first is None:
            usage = None
        raise
    finally:
        if usage is not None:
            bill(
                remote_usage_record(remote, usage), clock, batch=remote.batch, ledger=ledger, metrics=metrics
            )


def _updated(usage: Usage, event: MessageDeltaEvent) -> Usage:
    """`message_delta` usage is cumulative: its fields replace those of `message_start`."""
    delta = event.usage.model_dump(exclude_none=True)
    fields = {k: v for k, v in delta.items() if k in Usage.model_fields}
    return Usage.model_validate({**usage.model_dump(), **fields})


def remote_usage_record(remote: RemoteMessage, usage: Usage) -> UsageRecord:
    creation = usage.cache_creation
    if not creation.ephemeral_5m_input_tokens + creation.ephemeral_1h_input_tokens:
        # An upstream that reports no split (`cache_creation` of zeros) wrote 5-minute entries.
        creation = creation.model_copy(
            update={"ephemeral_5m_input_tokens": usage.cache_creation_input_tokens}
        )
        usage = usage.model_copy(update={"cache_creation": creation})
    return remote.account.record(remote.model_id, remote.batch, usage, usage.output_tokens, 0)
