"""Message Batches in the database: batches, their requests, and each request's result.

Every state change is one transaction, so a process killed at any point leaves each request either
unstarted, running (rerun after a restart) or finished with its result; a result is written only
by the worker that holds the request, and only once, so no `custom_id` is ever answered twice.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Connection, Engine, delete, func, insert, select, update

from sijo.ids import new_id
from sijo.store.tables import batch_requests, batches, usage
from sijo.usage import UsageRecord

RequestState = Literal["pending", "running", "succeeded", "errored", "canceled", "expired"]
ENDED_STATES: tuple[RequestState, ...] = ("succeeded", "errored", "canceled", "expired")


@dataclass(frozen=True, slots=True)
class Batch:
    id: str
    workspace: str
    request_count: int
    counts: dict[str, int]  # by request state
    created_at: datetime
    expires_at: datetime
    cancel_initiated_at: datetime | None
    ended_at: datetime | None


@dataclass(frozen=True, slots=True)
class Owner:
    workspace: str  # the namespace that isolates batches and caches
    workspace_id: str | None
    api_key_id: str | None


@dataclass(frozen=True, slots=True)
class ClaimedRequest:
    id: int
    batch_id: str
    custom_id: str
    params: str
    owner: Owner


class BatchStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create(
        self, owner: Owner, requests: Sequence[tuple[str, str]], now: datetime, expires_at: datetime
    ) -> Batch:
        """A batch of (custom_id, params JSON) requests, all pending."""
        batch_id = new_id("msgbatch")
        with self.engine.begin() as connection:
            connection.execute(
                insert(batches).values(
                    id=batch_id,
                    workspace=owner.workspace,
                    workspace_id=owner.workspace_id,
                    api_key_id=owner.api_key_id,
                    request_count=len(requests),
                    created_at=now,
                    expires_at=expires_at,
                )
            )
            rows = [
                {"batch_id": batch_id, "position": i, "custom_id": c, "params": p, "state": "pending"}
                for i, (c, p) in enumerate(requests)
            ]
            for start in range(0, len(rows), 1000):
                connection.execute(insert(batch_requests), rows[start : start + 1000])
        found = self.get(batch_id, owner.workspace)
        assert found is not None
        return found

    def get(self, batch_id: str, workspace: str | None) -> Batch | None:
        """The batch, if it is `workspace`'s (None: of any workspace, for the Console)."""
        query = select(batches).where(batches.c.id == batch_id)
        if workspace is not None:
            query = query.where(batches.c.workspace == workspace)
        with self.engine.connect() as connection:
            row = connection.execute(query).first()
            return None if row is None else _batch(row, _counts(connection, [batch_id])[batch_id])

    def queued(self, api_key_id: str | None) -> int:
        """Requests of this key's batches waiting or running (None: those made without a key)."""
        owner = batches.c.api_key_id.is_(None) if api_key_id is None else batches.c.api_key_id == api_key_id
        with self.engine.connect() as connection:
            count = connection.execute(
                select(func.count())
                .select_from(batch_requests.join(batches, batches.c.id == batch_requests.c.batch_id))
                .where(owner, batch_requests.c.state.in_(("pending", "running")))
            ).scalar()
        return int(count or 0)

    def ids(self, workspace: str | None, limit: int | None = None) -> list[str]:
        """The workspace's batch ids (None: every workspace's), newest first."""
        query = select(batches.c.id).order_by(batches.c.created_at.desc(), batches.c.id.desc()).limit(limit)
        if workspace is not None:
            query = query.where(batches.c.workspace == workspace)
        with self.engine.connect() as connection:
            return list(connection.execute(query).scalars())

    def many(self, batch_ids: list[str]) -> list[Batch]:
        """These batches (one page of a list), in the order given."""
        with self.engine.connect() as connection:
            rows = {
                row.id: row for row in connection.execute(select(batches).where(batches.c.id.in_(batch_ids)))
            }
            counts = _counts(connection, batch_ids)
        return [_batch(rows[i], counts[i]) for i in batch_ids if i in rows]

    def cancel(self, batch_id: str, workspace: str, now: datetime) -> Batch | None:
        """Unstarted requests become canceled; running ones finish; the batch ends when they have."""
        with self.engine.begin() as connection:
            row = connection.execute(
                select(batches)
                .where(batches.c.id == batch_id, batches.c.workspace == workspace)
                .with_for_update()
            ).first()
            if row is None:
                return None
            if row.ended_at is None and row.cancel_initiated_at is None:
                connection.execute(
                    update(batches).where(batches.c.id == batch_id).values(cancel_initiated_at=now)
                )
                _settle(connection, batch_id, "pending", "canceled")
                _end_if_done(connection, batch_id, now)
        return self.get(batch_id, workspace)

    def delete(self, batch_id: str, workspace: str) -> bool:
        with self.engine.begin() as connection:
            owned = connection.execute(
                select(batches.c.id).where(batches.c.id == batch_id, batches.c.workspace == workspace)
            ).first()
            if owned is None:
                return False
            connection.execute(delete(batch_requests).where(batch_requests.c.batch_id == batch_id))
            connection.execute(delete(batches).where(batches.c.id == batch_id))
            return True

    def result_lines(self, batch_id: str) -> Iterator[bytes]:
        """The results file's lines (`{"custom_id": ..., "result": ...}`), in request order."""
        for custom_id, result in self.results(batch_id):
            yield f'{{"custom_id":{json.dumps(custom_id)},"result":{result}}}\n'.encode()

    def results(self, batch_id: str, chunk: int = 500) -> Iterator[tuple[str, str]]:
        """(custom_id, result JSON) of every request, in request order, read a chunk at a time."""
        position = -1
        while True:
            with self.engine.connect() as connection:
                rows = connection.execute(
                    select(batch_requests.c.position, batch_requests.c.custom_id, batch_requests.c.result)
                    .where(batch_requests.c.batch_id == batch_id, batch_requests.c.position > position)
                    .order_by(batch_requests.c.position)
                    .limit(chunk)
                ).all()
            for row in rows:
                yield row.custom_id, row.result or '{"type":"expired"}'
            if len(rows) < chunk:
                return
            position = rows[-1].position

    # --- the worker's side ---------------------------------------------------------------------

    def claim(self, worker: str, now: datetime, lease: timedelta) -> ClaimedRequest | None:
        """Take the oldest pending request for `worker`, leased until `now + lease`, or None."""
        for _ in range(8):  # another process may take the same candidate: try the next one
            with self.engine.begin() as connection:
                row = connection.execute(
                    select(batch_requests.c.id, batch_requests.c.batch_id)
                    .where(batch_requests.c.state == "pending")
                    .order_by(batch_requests.c.id)
                    .limit(1)
                    .with_for_update(skip_locked=True)
                ).first()
                if row is None:
                    return None
                taken = connection.execute(
                    update(batch_requests)
                    .where(batch_requests.c.id == row.id, batch_requests.c.state == "pending")
                    .values(state="running", worker=worker, lease_until=now + lease)
                ).rowcount
                if taken:
                    return self._claimed(connection, row.id)
        return None

    def _claimed(self, connection: Connection, request_id: int) -> ClaimedRequest:
        row = connection.execute(
            select(
                batch_requests.c.id,
                batch_requests.c.batch_id,
                batch_requests.c.custom_id,
                batch_requests.c.params,
                batches.c.workspace,
                batches.c.workspace_id,
                batches.c.api_key_id,
            )
            .join(batches, batches.c.id == batch_requests.c.batch_id)
            .where(batch_requests.c.id == request_id)
        ).one()
        owner = Owner(row.workspace, row.workspace_id, row.api_key_id)
        return ClaimedRequest(row.id, row.batch_id, row.custom_id, row.params, owner)

    def renew(self, worker: str, request_ids: list[int], now: datetime, lease: timedelta) -> None:
        """Extend the leases of the requests `worker` is running now (it is alive)."""
        if not request_ids:
            return
        with self.engine.begin() as connection:
            connection.execute(
                update(batch_requests)
                .where(
                    batch_requests.c.id.in_(request_ids),
                    batch_requests.c.worker == worker,
                    batch_requests.c.state == "running",
                )
                .values(lease_until=now + lease)
            )

    def complete(
        self,
        request: ClaimedRequest,
        worker: str,
        state: RequestState,
        result: str,
        now: datetime,
        spent: UsageRecord | None = None,
    ) -> bool:
        """Write a request's result (once, by its worker) with the usage it spent, in one
        transaction, so a request rerun after a crash is neither answered nor billed twice; end its
        batch if it was the last."""
        with self.engine.begin() as connection:
            _lock(connection, request.batch_id)
            written = connection.execute(
                update(batch_requests)
                .where(
                    batch_requests.c.id == request.id,
                    batch_requests.c.state == "running",
                    batch_requests.c.worker == worker,
                )
                .values(state=state, result=result, params="", lease_until=None)
            ).rowcount
            if written and spent is not None:
                connection.execute(insert(usage).values(**asdict(spent)))
            _end_if_done(connection, request.batch_id, now)
        return bool(written)

    def release(self, request: ClaimedRequest, worker: str) -> None:
        """Give a request back unfinished (the worker is stopping, or the engine is full)."""
        with self.engine.begin() as connection:
            connection.execute(
                update(batch_requests)
                .where(
                    batch_requests.c.id == request.id,
                    batch_requests.c.worker == worker,
                    batch_requests.c.state == "running",
                )
                .values(state="pending", worker=None, lease_until=None)
            )

    def recover(self, now: datetime) -> int:
        """Requests whose worker stopped renewing their lease (its process died) run again."""
        with self.engine.begin() as connection:
            return int(
                connection.execute(
                    update(batch_requests)
                    .where(batch_requests.c.state == "running", batch_requests.c.lease_until < now)
                    .values(state="pending", worker=None, lease_until=None)
                ).rowcount
            )

    def expire(self, now: datetime) -> int:
        """Batches past their expiry: unstarted requests become expired. Returns how many batches."""
        with self.engine.begin() as connection:
            due = (
                connection.execute(
                    select(batches.c.id).where(batches.c.ended_at.is_(None), batches.c.expires_at <= now)
                )
                .scalars()
                .all()
            )
        for batch_id in due:
            with self.engine.begin() as connection:
                _lock(connection, batch_id)
                _settle(connection, batch_id, "pending", "expired")
                _end_if_done(connection, batch_id, now)
        return len(due)


def _lock(connection: Connection, batch_id: str) -> None:
    """Serialise the changes that may end a batch (PostgreSQL; SQLite has one writer anyway), so two
    requests finishing at once cannot both see the other still running and leave the batch open."""
    connection.execute(select(batches.c.id).where(batches.c.id == batch_id).with_for_update())


def _settle(connection: Connection, batch_id: str, state: RequestState, to: RequestState) -> None:
    connection.execute(
        update(batch_requests)
        .where(batch_requests.c.batch_id == batch_id, batch_requests.c.state == state)
        .values(state=to, result=f'{{"type":"{to}"}}', params="")
    )


def _end_if_done(connection: Connection, batch_id: str, now: datetime) -> None:
    unfinished = connection.execute(
        select(func.count()).where(
            batch_requests.c.batch_id == batch_id, batch_requests.c.state.in_(("pending", "running"))
        )
    ).scalar()
    if not unfinished:
        connection.execute(
            update(batches).where(batches.c.id == batch_id, batches.c.ended_at.is_(None)).values(ended_at=now)
        )


def _counts(connection: Connection, batch_ids: list[str]) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = {batch_id: {} for batch_id in batch_ids}
    if not batch_ids:
        return counts
    rows = connection.execute(
        select(batch_requests.c.batch_id, batch_requests.c.state, func.count())
        .where(batch_requests.c.batch_id.in_(batch_ids))
        .group_by(batch_requests.c.batch_id, batch_requests.c.state)
    )
    for batch_id, state, count in rows:
        counts[batch_id][state] = int(count)
    return counts


def _batch(row: Any, counts: dict[str, int]) -> Batch:
    return Batch(
        id=row.id,
        workspace=row.workspace,
        request_count=row.request_count,
        counts=counts,
        created_at=row.created_at,
        expires_at=row.expires_at,
        cancel_initiated_at=row.cancel_initiated_at,
        ended_at=row.ended_at,
    )
