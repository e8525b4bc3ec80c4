"""The usage ledger: one row per request, interactive or batch, as `UsageRecord`s.

Requests hand their record over without waiting (`submit`): the write runs on a worker thread, so
a busy database never stalls the event loop, and a failed write is logged, never raised into a
reply that already succeeded. Readers in the same process `flush` first, to see every request
that has ended.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import asdict, fields
from datetime import datetime

from sqlalchemy import Engine, func, insert, select

from sijo.store.tables import api_keys, usage
from sijo.usage import UsageRecord

_FIELDS = [field.name for field in fields(UsageRecord)]
logger = logging.getLogger("sijo.usage")


class UsageLedger:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._pending: set[asyncio.Future[None]] = set()

    def submit(self, entry: UsageRecord) -> None:
        """Record `entry` in the background (call from the event loop)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # a reply finalised outside the loop (at shutdown): write it now
            self._record_logged(entry)
            return
        future = loop.run_in_executor(None, self._record_logged, entry)
        self._pending.add(future)
        future.add_done_callback(self._pending.discard)

    async def flush(self) -> None:
        """Wait for every record submitted so far."""
        if self._pending:
            await asyncio.wait(set(self._pending))

    def _record_logged(self, entry: UsageRecord) -> None:
        try:
            self.record(entry)
        except Exception:
            logger.exception("could not record usage of %s", entry.model)

    def record(self, entry: UsageRecord) -> None:
        with self.engine.begin() as connection:
            connection.execute(insert(usage).values(**asdict(entry)))

    def last_used(self) -> dict[str, datetime]:
        """When each key last made a request that was recorded (keys never used are left out).

        One index lookup per key (`ix_usage_api_key_at`), not a pass over the whole ledger: a
        GROUP BY over usage reads every row (70 ms at a million rows on SQLite, against 0.3 ms)."""
        latest = select(func.max(usage.c.at)).where(usage.c.api_key_id == api_keys.c.id).scalar_subquery()
        query = select(api_keys.c.id, latest)
        with self.engine.connect() as connection:
            return {key_id: at for key_id, at in connection.execute(query) if at is not None}

    def records(self, start: datetime, end: datetime) -> list[UsageRecord]:
        """Requests that ended in [start, end), oldest first."""
        query = (
            select(*(usage.c[name] for name in _FIELDS))
            .where(usage.c.at >= start, usage.c.at < end)
            .order_by(usage.c.at, usage.c.id)
        )
        with self.engine.connect() as connection:
            return [UsageRecord(**row._asdict()) for row in connection.execute(query)]
