"""Writing the Console's audit log: one row per admin action, before the page answers."""

from __future__ import annotations

import asyncio

from starlette.requests import Request

from sijo.console.sessions import Session
from sijo.store.audit import AuditLog


async def audited(request: Request, session: Session, action: str, target: str | None, detail: str) -> None:
    log: AuditLog = request.app.state.audit
    await asyncio.to_thread(log.record, session.actor, action, target, detail)
