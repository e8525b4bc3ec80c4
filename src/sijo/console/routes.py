"""The Console's pages: sign-in and sign-out, the overview (engines, slots, queue, cached
prefixes, upstream health), API keys (list, create with the secret shown once, rename,
deactivate) and workspaces, usage and cost, batches (progress, cancel, results), the audit log.

Every page needs a session (access.py); every POST but sign-in carries the session's CSRF token,
and every change is written to the audit log before the page answers.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles

from sijo.api.auth import Authenticator
from sijo.api.batches import result_stream
from sijo.catalog import available
from sijo.config import ModelPrice
from sijo.console import usage, workbench
from sijo.console.access import BadToken, PostedDep, SessionDep, SignInRequired
from sijo.console.pages import form, page, redirect, secured
from sijo.console.sessions import COOKIE, Session, Sessions
from sijo.errors import AuthenticationError, PermissionDeniedError
from sijo.prompt_cache import MemoryEntries
from sijo.service import MessagesService
from sijo.store.audit import AuditLog
from sijo.store.batches import Batch, BatchStore
from sijo.store.keys import ApiKey, KeyStatus, KeyStore
from sijo.store.ledger import UsageLedger

router = APIRouter(prefix="/console", include_in_schema=False)
STATIC = StaticFiles(packages=[("sijo.console", "static")])

KEY_STATUSES = ("active", "inactive")


def _stores(request: Request) -> tuple[KeyStore, UsageLedger, AuditLog]:
    state = request.app.state
    return state.keys, state.ledger, state.audit


async def _audit(request: Request, session: Session, action: str, target: str | None, detail: str) -> None:
    await asyncio.to_thread(request.app.state.audit.record, session.actor, action, target, detail)


# Signing in and out


@router.get("/sign-in")
async def sign_in_form(request: Request) -> HTMLResponse:
    return page(request, "sign_in.html", error=None)


@router.post("/sign-in")
async def sign_in(request: Request) -> Response:
    fields = await form(request)
    authenticator: Authenticator = request.app.state.authenticator
    presented = fields.get("admin_key", "").strip()
    if not presented:
        return page(request, "sign_in.html", status_code=400, error="admin_key: enter an admin key")
    try:
        hint = await authenticator.admin_hint(presented)
    except PermissionDeniedError:
        error = "admin_key: that is an API key; the Console takes an admin key"
        return page(request, "sign_in.html", status_code=403, error=error)
    except AuthenticationError:
        return page(request, "sign_in.html", status_code=401, error="admin_key: not an active admin key")
    session = request.app.state.console_sessions.start(f"admin key {hint}")
    request.state.console_started = session
    await asyncio.to_thread(request.app.state.audit.record, session.actor, "console.sign_in", None, "")
    return redirect(request, "/console")


@router.post("/sign-out")
async def sign_out(request: Request, posted_form: PostedDep) -> Response:
    session, _ = posted_form
    request.app.state.console_sessions.end(session.token)
    await _audit(request, session, "console.sign_out", None, "")
    response = redirect(request, "/console/sign-in")
    response.delete_cookie(COOKIE, path="/console")
    return response


# The overview


@router.get("")
async def overview(request: Request, _: SessionDep) -> HTMLResponse:
    service: MessagesService = request.app.state.service
    engines: dict[str, dict[str, int | float]] = service.catalog.stats()
    models = [available(served).info().id for served in service.catalog.list()]
    entries = service.cache.entries
    held = len(entries) if isinstance(entries, MemoryEntries) else None
    return page(request, "overview.html", engines=engines, models=models, cache_entries=held)


# API keys and workspaces


@router.get("/keys")
async def keys_page(request: Request, _: SessionDep) -> HTMLResponse:
    return await _keys_page(request, created=None, secret=None)


async def _keys_page(
    request: Request, *, created: ApiKey | None, secret: str | None, status_code: int = 200
) -> HTMLResponse:
    keys, ledger, _ = _stores(request)
    await ledger.flush()
    listed, used, spaces = await asyncio.gather(
        asyncio.to_thread(keys.list, kind="api"),
        asyncio.to_thread(ledger.last_used),
        asyncio.to_thread(keys.workspaces),
    )
    names = {space.id: space.name for space in spaces}
    return page(
        request,
        "keys.html",
        status_code=status_code,
        keys=listed,
        last_used=used,
        workspace_names=names,
        workspaces=spaces,
        created=created,
        secret=secret,
    )


@router.post("/keys")
async def create_key(request: Request, posted_form: PostedDep) -> HTMLResponse:
    session, fields = posted_form
    name = fields.get("name", "").strip()
    workspace = fields.get("workspace", "").strip() or None
    if not name or len(name) > 500:
        return page(
            request,
            "error.html",
            status_code=400,
            message="name: give the key a name (500 characters at most)",
        )
    keys, _, _ = _stores(request)
    created, secret = await asyncio.to_thread(keys.create, name, workspace=workspace)
    await _audit(
        request, session, "api_key.create", created.id, f"name {name!r}, workspace {workspace or 'default'}"
    )
    # The secret is in this response only: the page is not cached and the secret is never shown again.
    return await _keys_page(request, created=created, secret=secret, status_code=201)


@router.post("/keys/{key_id}")
async def change_key(key_id: str, request: Request, posted_form: PostedDep) -> Response:
    session, fields = posted_form
    keys, _, _ = _stores(request)
    key = await asyncio.to_thread(keys.get, key_id)
    if key is None or key.kind != "api":
        return page(request, "error.html", status_code=404, message=f"api_key_id: no API key {key_id!r}")
    action = fields.get("action", "")
    if action == "rename":
        name = fields.get("name", "").strip()
        if not name or len(name) > 500:
            return page(
                request, "error.html", status_code=400, message="name: a key's name is 1 to 500 characters"
            )
        await asyncio.to_thread(keys.update, key_id, name=name)
        await _audit(request, session, "api_key.rename", key_id, f"{key.name!r} → {name!r}")
    elif action in ("deactivate", "activate"):
        status: KeyStatus = "inactive" if action == "deactivate" else "active"
        await asyncio.to_thread(keys.update, key_id, status=status)
        await _audit(request, session, f"api_key.{action}", key_id, f"{key.status} → {status}")
    else:
        return page(request, "error.html", status_code=400, message="action: rename, activate or deactivate")
    return redirect(request, "/console/keys")


@router.get("/usage")
async def usage_page(request: Request, _: SessionDep) -> HTMLResponse:
    range_name = request.query_params.get("range", "7d")
    group = request.query_params.get("group", "model")
    if range_name not in usage.RANGES or group not in usage.GROUPS:
        message = f"range: one of {', '.join(usage.RANGES)}; group: one of {', '.join(usage.GROUPS)}"
        return page(request, "error.html", status_code=400, message=message)
    keys, ledger, _audit_log = _stores(request)
    query = usage.query_for(range_name, request.app.state.clock())
    await ledger.flush()
    records, listed, spaces = await asyncio.gather(
        asyncio.to_thread(ledger.records, *query.fetch_range),
        asyncio.to_thread(keys.list, kind="api"),
        asyncio.to_thread(keys.workspaces),
    )
    names: dict[str, dict[str, str]] = {
        "api_key_id": {key.id: f"{key.name} ({key.hint})" for key in listed},
        "workspace_id": {space.id: space.name for space in spaces},
    }
    nameless = {"api_key_id": "no key, or a key from the config file", "workspace_id": "default"}

    def label(dimension: str, value: str | None) -> str:
        if value is None:
            return nameless.get(dimension, "—")
        return names.get(dimension, {}).get(value, value)

    prices: dict[str, ModelPrice] = request.app.state.settings.prices
    view = usage.usage_view(records, query, range_name, group, prices, label)
    return page(
        request,
        "usage.html",
        view=view,
        kinds=usage.KINDS,
        kind_names=usage.KIND_NAMES,
        ranges=list(usage.RANGES),
        groups=list(usage.GROUPS),
        chart=(usage.CHART_WIDTH, usage.CHART_HEIGHT),
    )


# Batches


STATES = ("processing", "succeeded", "errored", "canceled", "expired")


def _progress(batch: Batch) -> dict[str, Any]:
    """Counts by state (pending and running are `processing`) and the bar's segments, in percent."""
    counts = {state: batch.counts.get(state, 0) for state in STATES[1:]}
    counts = {"processing": batch.counts.get("pending", 0) + batch.counts.get("running", 0), **counts}
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
    spaces = await asyncio.to_thread(request.app.state.keys.workspaces)
    return {space.id: space.name for space in spaces}


@router.get("/batches")
async def batches_page(request: Request, _: SessionDep) -> HTMLResponse:
    store: BatchStore = request.app.state.batches
    listed, names = await asyncio.gather(asyncio.to_thread(store.recent, 100), _workspace_names(request))
    rows = [(batch, _progress(batch)) for batch in listed]
    return page(request, "batches.html", rows=rows, workspace_names=names, states=STATES)


async def _batch_or_404(request: Request, batch_id: str) -> Batch | HTMLResponse:
    store: BatchStore = request.app.state.batches
    batch = await asyncio.to_thread(store.find, batch_id)
    if batch is None:
        return page(
            request, "error.html", status_code=404, message=f"message_batch_id: no batch {batch_id!r}"
        )
    return batch


@router.get("/batches/{batch_id}")
async def batch_page(batch_id: str, request: Request, _: SessionDep) -> HTMLResponse:
    batch = await _batch_or_404(request, batch_id)
    if not isinstance(batch, Batch):
        return batch
    names = await _workspace_names(request)
    return page(
        request, "batch.html", batch=batch, progress=_progress(batch), workspace_names=names, states=STATES
    )


@router.post("/batches/{batch_id}/cancel")
async def cancel_batch(batch_id: str, request: Request, posted_form: PostedDep) -> Response:
    session, _ = posted_form
    batch = await _batch_or_404(request, batch_id)
    if not isinstance(batch, Batch):
        return batch
    store: BatchStore = request.app.state.batches
    await asyncio.to_thread(store.cancel, batch_id, batch.workspace, request.app.state.clock())
    await _audit(request, session, "batch.cancel", batch_id, f"{batch.request_count} requests")
    return redirect(request, f"/console/batches/{batch_id}")


@router.get("/batches/{batch_id}/results")
async def batch_results(batch_id: str, request: Request, session: SessionDep) -> Response:
    batch = await _batch_or_404(request, batch_id)
    if not isinstance(batch, Batch):
        return batch
    if batch.ended_at is None:
        message = f"message_batch_id: batch {batch_id} has not ended; its results are ready when it has"
        return page(request, "error.html", status_code=409, message=message)
    await _audit(request, session, "batch.download_results", batch_id, "")
    response = StreamingResponse(
        result_stream(request.app.state.batches, batch_id),
        media_type="application/x-jsonl",
        headers={"content-disposition": f'attachment; filename="{batch_id}_results.jsonl"'},
    )
    return secured(request, response)


@router.get("/audit")
async def audit_page(request: Request, _: SessionDep) -> HTMLResponse:
    entries = await asyncio.to_thread(request.app.state.audit.latest, 200)
    return page(request, "audit.html", entries=entries)


def install(app: Any) -> None:
    """The Console's routes, its static files, and what its two refusals answer."""
    app.state.console_sessions = Sessions()
    app.include_router(router)
    app.include_router(workbench.router)
    app.mount("/console/static", STATIC, name="console-static")

    async def to_sign_in(request: Request, _: Exception) -> Response:
        return redirect(request, "/console/sign-in")

    async def refuse(request: Request, _: Exception) -> Response:
        message = "This form is out of date or did not come from the Console: reload the page and try again."
        return secured(request, page(request, "error.html", status_code=403, message=message))

    app.add_exception_handler(SignInRequired, to_sign_in)
    app.add_exception_handler(BadToken, refuse)
