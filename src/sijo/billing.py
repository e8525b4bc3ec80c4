"""What a reply spent, wherever it was generated (here, an upstream engine, a Messages API upstream):
its usage record goes to the ledger (a batch's is written by the batch worker, with its result) and,
with its timing, to the metrics."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from sijo.metrics import Metrics
from sijo.protocol.events import ContentBlockDeltaEvent, ContentBlockStartEvent, StreamEvent
from sijo.store.ledger import UsageLedger
from sijo.usage import UsageRecord


@dataclass(slots=True)
class ContentClock:
    """When a reply started, and when its first and latest content events went out."""

    started: float = field(default_factory=time.monotonic)
    first: float | None = None
    last: float = 0.0

    def see(self, event: StreamEvent) -> None:
        if isinstance(event, ContentBlockStartEvent | ContentBlockDeltaEvent):
            self.last = time.monotonic()
            self.first = self.last if self.first is None else self.first


def bill(
    spent: UsageRecord,
    clock: ContentClock,
    *,
    batch: bool,
    ledger: UsageLedger | None,
    metrics: Metrics | None,
) -> None:
    if ledger is not None and not batch:
        ledger.submit(spent)
    if metrics is not None:
        metrics.record_usage(spent)
        if clock.first is not None:
            metrics.record_timing(spent.model, clock.first, clock.last, clock.started, spent.output_tokens)
