"""The Console's batches: every workspace's batches with their progress by state, a detail page
that refreshes itself while its batch runs, cancel, and the results file (JSONL) once it ended."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse

from sijo.api.batches import result_stream
from sijo.console.access import PostedDep, SessionDep
from sijo.console.audit import audited
from sijo.console.keys import ID
from sijo.console.pages import ConsoleError, page, redirect, secured
from sijo.store.batches import Batch, BatchStore
from sijo.store.keys import KeyStore

router = APIRouter(prefix="/console", include_in_schema=False)

STATES = ("processing", "succeeded", "errored", "canceled", "expired")


def progress(batch: Batch) -> dict[str, Any]:
    """Counts by state (pending and running are `processing`) and the bar's segments, in percent."""
    counts = {"processing": batch.counts.get("pending", 0) + batch.counts.get("running", 0)}
    counts.update({state: batch.counts.get(state, 0) for state in STATES[1:]})
    total = max(batch.request_count, 1)
    segments, x = [], 0.0
    for state in STATES:
        width = 100 * counts[state] / total
        if width:
            segments.append({"state": state, "x": round(x, 3), "width": round(width, 3)})
        x += width
    status = "ended" if batch.ended_at else "canceling" if batch.cancel_initiated_at else "in_progress"
    return {"counts": counts, "segments": segments, "status": status}


async def _workspace_names(request: Request) -> dict[str, str]:
    keys: KeyStore = request.app.state.keys
    return {space.id: space.name for space in await asyncio.to_thread(keys.workspaces)}


async def _batch(request: Request, batch_id: str) -> Batch:
    store: BatchStore = request.app.state.batches
    batch = await asyncio.to_thread(store.get, batch_id, None) if ID.fullmatch(batch_id) else None
    if batch is None:
        raise ConsoleError(404, f"message_batch_id: no batch {batch_id!r}")
    return batch


@router.get("/batches")
async def batches_page(request: Request, _: SessionDep) -> HTMLResponse:
    store: BatchStore = request.app.state.batches
    ids = await asyncio.to_thread(store.ids, None, 100)
    listed, names = await asyncio.gather(asyncio.to_thread(store.many, ids), _workspace_names(request))
    rows = [(batch, progress(batch)) for batch in listed]
    return page(request, "batches.html", rows=rows, workspace_names=names, states=STATES)


@router.get("/batches/{batch_id}")
async def batch_page(batch_id: str, request: Request, _: SessionDep) -> HTMLResponse:
    batch = await _batch(request, batch_id)
    names = await _workspace_names(request)
    shown = progress(batch)
    return page(request, "batch.html", batch=batch, progress=shown, workspace_names=names, states=STATES)


@router.post("/batches/{batch_id}/cancel")
async def cancel_batch(batch_id: str, request: Request, posted_form: PostedDep) -> Response:
    session, _ = posted_form
    batch = await _batch(request, batch_id)
    if batch.ended_at is None and batch.cancel_initiated_at is None:
        store: BatchStore = request.app.state.batches
        await asyncio.to_thread(store.cancel, batch_id, batch.workspace, request.app.state.clock())
        await audited(request, session, "batch.cancel", batch_id, f"{batch.request_count} requests")
    return redirect(request, f"/console/batches/{batch_id}")


@router.get("/batches/{batch_id}/results")
async def batch_results(batch_id: str, request: Request, session: SessionDep) -> Response:
    batch = await _batch(request, batch_id)
    if batch.ended_at is None:
        raise ConsoleError(
            409, f"message_batch_id: batch {batch_id} has not ended; its results come when it has"
        )
    await audited(request, session, "batch.download_results", batch_id, "")
    response = StreamingResponse(
        result_stream(request.app.state.batches, batch_id),
        media_type="application/x-jsonl",
        headers={"content-disposition": f'attachment; filename="{batch_id}_results.jsonl"'},
    )
    return secured(request, response)
