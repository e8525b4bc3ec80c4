"""Dependency aliases: what a route needs, taken from `app.state` (built once in `create_app`)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, Request

from sijo.batch_worker import BatchWorker
from sijo.config import Settings
from sijo.ratelimit import RateLimiter
from sijo.service import MessagesService
from sijo.store.batches import BatchStore
from sijo.store.files import FileStore
from sijo.store.keys import KeyStore
from sijo.store.ledger import UsageLedger


def _state(name: str) -> Callable[[Request], Any]:
    def read(request: Request) -> Any:
        return getattr(request.app.state, name)

    return read


SettingsDep = Annotated[Settings, Depends(_state("settings"))]
ServiceDep = Annotated[MessagesService, Depends(_state("service"))]
LimiterDep = Annotated[RateLimiter, Depends(_state("limiter"))]
KeysDep = Annotated[KeyStore, Depends(_state("keys"))]
BatchesDep = Annotated[BatchStore, Depends(_state("batches"))]
WorkerDep = Annotated[BatchWorker, Depends(_state("batch_worker"))]
LedgerDep = Annotated[UsageLedger, Depends(_state("ledger"))]
ClockDep = Annotated[Callable[[], datetime], Depends(_state("clock"))]
FilesDep = Annotated[FileStore, Depends(_state("files"))]
