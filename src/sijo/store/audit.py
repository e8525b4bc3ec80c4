"""The audit log: one row for every admin action taken in the Console (who, what, on which id).

Rows are written before the action's response goes out and never change; a secret is never part
of one (a stored key is named by its name and id, a configured one by an HMAC of it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine, insert, select

from sijo.store.tables import audit_log


@dataclass(frozen=True, slots=True)
class AuditEntry:
    at: datetime
    actor: str
    action: str
    target: str | None
    detail: str | None


class AuditLog:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def record(self, actor: str, action: str, target: str | None = None, detail: str | None = None) -> None:
        with self.engine.begin() as connection:
            connection.execute(
                insert(audit_log).values(
                    at=datetime.now(UTC),
                    actor=actor[:200],  # the columns' sizes: a long key name is cut, not refused
                    action=action[:64],
                    target=None if target is None else target[:200],
                    detail=detail,
                )
            )

    def latest(self, limit: int = 100) -> list[AuditEntry]:
        """The newest entries first."""
        query = select(audit_log).order_by(audit_log.c.id.desc()).limit(limit)
        with self.engine.connect() as connection:
            rows = connection.execute(query).all()
        return [AuditEntry(row.at, row.actor, row.action, row.target, row.detail) for row in rows]
