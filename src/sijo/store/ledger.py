"""The usage ledger: one row per request, interactive or batch, as `UsageRecord`s."""

from __future__ import annotations

from dataclasses import asdict, fields
from datetime import datetime

from sqlalchemy import Engine, insert, select

from sijo.store.tables import usage
from sijo.usage import UsageRecord

_FIELDS = [field.name for field in fields(UsageRecord)]


class UsageLedger:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def record(self, entry: UsageRecord) -> None:
        with self.engine.begin() as connection:
            connection.execute(insert(usage).values(**asdict(entry)))

    def records(self, start: datetime, end: datetime) -> list[UsageRecord]:
        """Requests that ended in [start, end), oldest first."""
        query = (
            select(*(usage.c[name] for name in _FIELDS))
            .where(usage.c.at >= start, usage.c.at < end)
            .order_by(usage.c.at, usage.c.id)
        )
        with self.engine.connect() as connection:
            return [UsageRecord(**row._asdict()) for row in connection.execute(query)]
