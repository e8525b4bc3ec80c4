"""The Console's routes: sign-in and sign-out, the overview (engines, slots, queue, cached
prefixes, upstream health), usage and cost, the audit log; `install` adds them with the pages of
keys.py, batches.py and workbench.py, the static files, and the handlers of the Console's refusals.

Every page needs a session (access.py); every POST but sign-in carries the session's CSRF token,
and every change is written to the audit log before the page answers.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

from sijo.api.auth import Authenticator
from sijo.api.errors import render
from sijo.config import ModelPrice
from sijo.console import batches, keys, usage, workbench
from sijo.console.access import Attempts, BadToken, PostedDep, SessionDep, SignInRequired
from sijo.console.audit import audited
from sijo.console.pages import ConsoleError, form, page, redirect, secured
from sijo.console.sessions import COOKIE, Sessions
from sijo.errors import AuthenticationError, PermissionDeniedError
from sijo.prompt_cache import MemoryEntries
from sijo.service import MessagesService
from sijo.store.audit import AuditLog
from sijo.store.keys import KeyStore
from sijo.store.ledger import UsageLedger

router = APIRouter(prefix="/console", include_in_schema=False)
SCRIPT_PATHS = ("/console/workbench/messages",)  # answered in the API's error shape, not with pages


# Signing in and out


@router.get("/sign-in")
async def sign_in_form(request: Request) -> HTMLResponse:
    return page(request, "sign_in.html", error=None)


@router.post("/sign-in")
async def sign_in(request: Request) -> Response:
    attempts: Attempts = request.app.state.console_attempts
    address = request.client.host if request.client else "unknown"
    if attempts.blocked(address):
        error = "Too many failed sign-ins from this address: wait a minute and try again."
        return page(request, "sign_in.html", status_code=429, error=error)
    presented = (await form(request)).get("admin_key", "").strip()
    if not presented:
        return page(request, "sign_in.html", status_code=400, error="admin_key: enter an admin key")
    authenticator: Authenticator = request.app.state.authenticator
    audit: AuditLog = request.app.state.audit
    try:
        actor, key_id = await authenticator.admin_identity(presented)
    except (AuthenticationError, PermissionDeniedError):
        attempts.failed(address)
        await asyncio.to_thread(audit.record, f"address {address}", "console.sign_in_failed", None, "")
        return page(request, "sign_in.html", status_code=401, error="admin_key: not an active admin key")
    session = request.app.state.console_sessions.start(actor, key_id=key_id)
    request.state.console_started = session
    await asyncio.to_thread(audit.record, session.actor, "console.sign_in", None, f"from {address}")
    return redirect(request, "/console")


@router.post("/sign-out")
async def sign_out(request: Request, posted_form: PostedDep) -> Response:
    session, _ = posted_form
    request.app.state.console_sessions.end(session.token)
    await audited(request, session, "console.sign_out", None, "")
    response = redirect(request, "/console/sign-in")
    response.delete_cookie(COOKIE, path="/console")
    return response


# The overview, usage and the audit log


@router.get("")
async def overview(request: Request, _: SessionDep) -> HTMLResponse:
    service: MessagesService = request.app.state.service
    engines: dict[str, dict[str, int | float]] = service.catalog.stats()
    models = [info.id for info in service.catalog.infos()]
    entries = service.cache.entries
    held = len(entries) if isinstance(entries, MemoryEntries) else None
    return page(request, "overview.html", engines=engines, models=models, cache_entries=held)


@router.get("/usage")
async def usage_page(request: Request, _: SessionDep) -> HTMLResponse:
    range_name = request.query_params.get("range", "7d")
    group = request.query_params.get("group", "model")
    if range_name not in usage.RANGES or group not in usage.GROUPS:
        raise ConsoleError(
            400, f"range: one of {', '.join(usage.RANGES)}; group: one of {', '.join(usage.GROUPS)}"
        )
    key_store: KeyStore = request.app.state.keys
    ledger: UsageLedger = request.app.state.ledger
    query = usage.query_for(range_name, request.app.state.clock())
    await ledger.flush()
    records, listed, spaces = await asyncio.gather(
        asyncio.to_thread(ledger.records, *query.fetch_range),
        asyncio.to_thread(key_store.list, kind="api"),
        asyncio.to_thread(key_store.workspaces),
    )
    names: dict[str, dict[str | None, str]] = {
        "model": {},
        "api_key_id": {None: "no key, or a key from the config file"}
        | {key.id: f"{key.name} ({key.hint})" for key in listed},
        "workspace_id": {None: "default"} | {space.id: space.name for space in spaces},
    }

    def label(dimension: str, value: str | None) -> str:
        return names[dimension].get(value, value or "—")

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


@router.get("/audit")
async def audit_page(request: Request, _: SessionDep) -> HTMLResponse:
    audit: AuditLog = request.app.state.audit
    entries = await asyncio.to_thread(audit.latest, 200)
    return page(request, "audit.html", entries=entries)


# Installing it all


def install(app: FastAPI) -> None:
    """The Console's routes, its static files, and what its refusals answer: a page for a page,
    the API's error shape for a script's request (the Workbench's)."""
    app.state.console_sessions = Sessions()
    app.state.console_attempts = Attempts()
    for module in (router, keys.router, batches.router, workbench.router):
        app.include_router(module)
    app.mount("/console/static", StaticFiles(packages=[("sijo.console", "static")]), name="console-static")

    def scripted(request: Request) -> bool:
        return request.url.path in SCRIPT_PATHS

    async def to_sign_in(request: Request, _: Exception) -> Response:
        if scripted(request):
            return secured(request, render(request, AuthenticationError("sign in to the Console again")))
        return redirect(request, "/console/sign-in")

    async def refuse(request: Request, _: Exception) -> Response:
        if scripted(request):
            error = PermissionDeniedError("x-csrf-token: missing or out of date; reload the Workbench")
            return secured(request, render(request, error))
        message = "This form is out of date or did not come from the Console: reload the page and try again."
        return page(request, "error.html", status_code=403, message=message)

    async def console_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ConsoleError)
        return page(request, "error.html", status_code=exc.status_code, message=exc.message)

    app.add_exception_handler(SignInRequired, to_sign_in)
    app.add_exception_handler(BadToken, refuse)
    app.add_exception_handler(ConsoleError, console_error)
