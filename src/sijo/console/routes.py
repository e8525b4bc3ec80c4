"""The Console's pages: sign-in and sign-out, the overview (engines, slots, queue, cached
prefixes), API keys (list, create with the secret shown once, rename, deactivate) and workspaces.

Every page needs a session (sessions.py); every POST but sign-in carries the session's CSRF
token, and every change is written to the audit log before the page answers.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

from sijo.api.auth import Authenticator
from sijo.api.hosts import is_loopback_name, normal_name
from sijo.config import ModelPrice
from sijo.console import usage
from sijo.console.pages import form, page, redirect, secured
from sijo.console.sessions import COOKIE, Session, Sessions
from sijo.errors import AuthenticationError, PermissionDeniedError
from sijo.store.audit import AuditLog
from sijo.store.keys import ApiKey, KeyStatus, KeyStore
from sijo.store.ledger import UsageLedger

router = APIRouter(prefix="/console", include_in_schema=False)
STATIC = StaticFiles(packages=[("sijo.console", "static")])

KEY_STATUSES = ("active", "inactive")


class SignInRequired(Exception):
    """No session: the page answers with a redirect to the sign-in form."""


class BadToken(Exception):
    """A form without its session's CSRF token: refused."""


async def _open_to(request: Request) -> bool:
    """Without any key the Console is open, as the API is, to loopback callers only."""
    authenticator: Authenticator = request.app.state.authenticator
    client = request.client
    if client is None or not is_loopback_name(normal_name(client.host)):
        return False
    return not await authenticator.keys_exist()


async def signed_in(request: Request) -> Session:
    sessions: Sessions = request.app.state.console_sessions
    session = sessions.find(request.cookies.get(COOKIE, ""))
    if session is None and await _open_to(request):
        session = sessions.start("loopback (no keys exist)")
        request.state.console_started = session
    if session is None:
        raise SignInRequired
    request.state.console_session = session
    return session


SessionDep = Annotated[Session, Depends(signed_in)]


async def posted(request: Request, session: SessionDep) -> tuple[Session, dict[str, str]]:
    """The form of a state-changing POST, once its CSRF token is checked."""
    fields = await form(request)
    if not session.accepts(fields.get("csrf_token", "")):
        raise BadToken
    return session, fields


PostedDep = Annotated[tuple[Session, dict[str, str]], Depends(posted)]


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
    service = request.app.state.service
    engines: dict[str, dict[str, Any]] = service.catalog.stats()
    return page(request, "overview.html", engines=engines)


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


@router.get("/audit")
async def audit_page(request: Request, _: SessionDep) -> HTMLResponse:
    entries = await asyncio.to_thread(request.app.state.audit.latest, 200)
    return page(request, "audit.html", entries=entries)


def install(app: Any) -> None:
    """The Console's routes, its static files, and what its two refusals answer."""
    app.state.console_sessions = Sessions()
    app.include_router(router)
    app.mount("/console/static", STATIC, name="console-static")

    async def to_sign_in(request: Request, _: Exception) -> Response:
        return redirect(request, "/console/sign-in")

    async def refuse(request: Request, _: Exception) -> Response:
        message = "This form is out of date or did not come from the Console: reload the page and try again."
        return secured(request, page(request, "error.html", status_code=403, message=message))

    app.add_exception_handler(SignInRequired, to_sign_in)
    app.add_exception_handler(BadToken, refuse)
