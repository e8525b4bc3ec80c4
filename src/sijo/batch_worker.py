"""The batch worker: runs Message Batches requests through the same pipeline as interactive ones.

It takes pending requests from the database one at a time, at most `concurrency` at once (fewer
than the engine's slots, so interactive requests always find one), and the engine serves them after
any waiting interactive request. Each result is committed as its request ends. A worker holds each
request it runs on a lease it renews on every pass; a request whose lease lapsed (its process was
killed) runs again, wherever a worker is alive. Expired batches are settled on every pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError

from sijo.errors import ApiError, InternalServerError, InvalidRequestError, OverloadedError
from sijo.ids import new_id
from sijo.prepared import Account
from sijo.protocol.params import MessageCreateParams
from sijo.protocol.validation import describe_errors
from sijo.service import MessagesService, usage_record
from sijo.store.batches import BatchStore, ClaimedRequest, RequestState
from sijo.usage import UsageRecord

logger = logging.getLogger("sijo.batches")
Clock = Callable[[], datetime]
LEASE = timedelta(seconds=15)  # renewed every pass (about every second)


class BatchWorker:
    def __init__(
        self,
        store: BatchStore,
        service: MessagesService,
        *,
        concurrency: int,
        clock: Clock,
        poll: float = 1.0,
    ) -> None:
        self.store = store
        self.service = service
        self.concurrency = concurrency
        self.clock = clock
        self.poll = poll
        self.name = new_id("worker")
        self._wake = asyncio.Event()
        self._running: dict[asyncio.Task[None], ClaimedRequest] = {}
        self._loop: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._loop = asyncio.create_task(self._run(), name="sijo-batch-worker")
        self._loop.add_done_callback(_report_death)

    def wake(self) -> None:
        self._wake.set()

    async def stop(self) -> None:
        """Stop taking work; requests still running go back to pending for the next start."""
        if self._loop is not None:
            self._loop.cancel()
            await asyncio.gather(self._loop, return_exceptions=True)
        running = dict(self._running)
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        for claimed in running.values():
            await asyncio.to_thread(self.store.release, claimed, self.name)

    async def _run(self) -> None:
        while True:
            self._wake.clear()  # before the pass: a wake() during it is not lost
            try:
                await self._pass()
            except Exception:  # the database went away for a moment: try again on the next pass
                logger.exception("batch worker pass failed")
            waits: set[asyncio.Future[Any]] = {asyncio.ensure_future(self._wake.wait()), *self._running}
            _done, pending = await asyncio.wait(waits, timeout=self.poll, return_when=asyncio.FIRST_COMPLETED)
            for future in pending:
                if future not in self._running:
                    future.cancel()

    async def _pass(self) -> None:
        now = self.clock()
        running = [claimed.id for claimed in self._running.values()]
        await asyncio.to_thread(self.store.renew, self.name, running, now, LEASE)
        await asyncio.to_thread(self.store.recover, now)
        await asyncio.to_thread(self.store.expire, now)
        await self._fill()

    async def _fill(self) -> None:
        while len(self._running) < self.concurrency:
            claimed = await asyncio.to_thread(self.store.claim, self.name, self.clock(), LEASE)
            if claimed is None:
                return
            task = asyncio.create_task(self._one(claimed))
            self._running[task] = claimed
            task.add_done_callback(self._running.pop)

    async def _one(self, claimed: ClaimedRequest) -> None:
        try:
            state, result, spent = await self._answer(claimed)
        except OverloadedError:  # the engine's queue is full: not the request's fault, run it later
            await asyncio.to_thread(self.store.release, claimed, self.name)
            await asyncio.sleep(1.0)
            return
        line = json.dumps(result, ensure_ascii=False, separators=(",", ":"))
        for attempt in range(5):
            try:
                complete = self.store.complete
                await asyncio.to_thread(complete, claimed, self.name, state, line, self.clock(), spent)
                return
            except Exception:  # keep the answer while the database is away for a moment
                logger.exception("could not record the result of batch request %s", claimed.custom_id)
                await asyncio.sleep(2**attempt)
        with contextlib.suppress(Exception):  # give it back to run again; failing that, its lease lapses
            await asyncio.to_thread(self.store.release, claimed, self.name)

    async def _answer(
        self, claimed: ClaimedRequest
    ) -> tuple[RequestState, dict[str, Any], UsageRecord | None]:
        try:
            params = _params(claimed.params)
            owner = claimed.owner
            account = Account(api_key_id=owner.api_key_id, workspace_id=owner.workspace_id)
            prepared = await self.service.prepare(params, owner.workspace, account=account, batch=True)
            message = await self.service.create(prepared)
        except OverloadedError:
            raise
        except ApiError as exc:
            return "errored", {"type": "errored", "error": exc.body(new_id("req"))}, None
        except Exception:
            logger.exception("batch request %s failed", claimed.custom_id)
            error = InternalServerError("Internal server error")
            return "errored", {"type": "errored", "error": error.body(new_id("req"))}, None
        usage = message.usage
        spent = usage_record(
            prepared, usage, usage.output_tokens, usage.output_tokens_details.thinking_tokens
        )
        return "succeeded", {"type": "succeeded", "message": message.model_dump(mode="json")}, spent


def _params(raw: str) -> MessageCreateParams:
    """A request's params, validated as POST /v1/messages would, less what batches do not support."""
    try:
        params = MessageCreateParams.model_validate_json(raw, strict=True)
    except ValidationError as exc:
        raise InvalidRequestError(describe_errors(exc.errors(), json.loads(raw))) from None
    if params.stream:
        raise InvalidRequestError("stream: streaming is not supported in Message Batches")
    if params.max_tokens == 0:
        raise InvalidRequestError("max_tokens: 0 is not supported in Message Batches")
    return params


def _report_death(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("the batch worker stopped", exc_info=task.exception())
