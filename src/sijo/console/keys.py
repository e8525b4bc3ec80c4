"""The Console's API keys page: list (name, workspace, hint, status, created, last used), create
(the secret shown once, on the page the creation redirects to, and never again), rename,
deactivate and activate; the workspaces with their key counts. Every change is audited."""

from __future__ import annotations

import asyncio
import re

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from sijo.console.access import PostedDep, SessionDep
from sijo.console.audit import audited
from sijo.console.pages import ConsoleError, page, redirect
from sijo.console.sessions import Sessions
from sijo.store.keys import KeyStatus, KeyStore
from sijo.store.ledger import UsageLedger

router = APIRouter(prefix="/console", include_in_schema=False)

ID = re.compile(r"[A-Za-z0-9_]{1,64}")
MAX_NAME, MAX_WORKSPACE = 500, 200


@router.get("/keys")
async def keys_page(request: Request, session: SessionDep) -> HTMLResponse:
    sessions: Sessions = request.app.state.console_sessions
    shown = sessions.take_secret(session)  # a key just made: its secret, once
    keys: KeyStore = request.app.state.keys
    ledger: UsageLedger = request.app.state.ledger
    await ledger.flush()
    listed, used, spaces = await asyncio.gather(
        asyncio.to_thread(keys.list, kind="api"),
        asyncio.to_thread(ledger.last_used),
        asyncio.to_thread(keys.workspaces),
    )
    created = next((key for key in listed if shown and key.id == shown[0]), None)
    return page(
        request,
        "keys.html",
        keys=listed,
        last_used=used,
        workspace_names={space.id: space.name for space in spaces},
        workspaces=spaces,
        created=created,
        secret=shown[1] if shown and created else None,
    )


def _name(fields: dict[str, str]) -> str:
    name = fields.get("name", "").strip()
    if not 1 <= len(name) <= MAX_NAME:
        raise ConsoleError(400, f"name: a key's name is 1 to {MAX_NAME} characters")
    return name


def _workspace(fields: dict[str, str]) -> str | None:
    """A workspace name, or None for the default workspace (which has no name to create)."""
    workspace = fields.get("workspace", "").strip()
    if not workspace or workspace.lower() == "default":
        return None
    if len(workspace) > MAX_WORKSPACE:
        raise ConsoleError(400, f"workspace: a workspace's name is {MAX_WORKSPACE} characters at most")
    return workspace


@router.post("/keys")
async def create_key(request: Request, posted_form: PostedDep) -> Response:
    session, fields = posted_form
    name, workspace = _name(fields), _workspace(fields)
    keys: KeyStore = request.app.state.keys
    created, secret = await asyncio.to_thread(keys.create, name, workspace=workspace)
    await audited(
        request, session, "api_key.create", created.id, f"name {name!r}, workspace {workspace or 'default'}"
    )
    sessions: Sessions = request.app.state.console_sessions
    if session.open:
        # The first key closes the open Console to newcomers (access.py); whoever made it, from this
        # browser on loopback, goes on in a session of their own until it expires or they sign out.
        sessions.end(session.token)
        session = sessions.start("loopback (made the first key)")
        request.state.console_started = session
    # Post/redirect/get: a reload cannot make a second key, and the secret is shown by the next page only.
    sessions.hold_secret(session, created.id, secret)
    return redirect(request, "/console/keys")


@router.post("/keys/{key_id}")
async def change_key(key_id: str, request: Request, posted_form: PostedDep) -> Response:
    session, fields = posted_form
    keys: KeyStore = request.app.state.keys
    key = await asyncio.to_thread(keys.get, key_id) if ID.fullmatch(key_id) else None
    if key is None or key.kind != "api":
        raise ConsoleError(404, f"api_key_id: no API key {key_id!r}")
    action = fields.get("action", "")
    if action == "rename":
        name = _name(fields)
        await asyncio.to_thread(keys.update, key_id, name=name)
        await audited(request, session, "api_key.rename", key_id, f"{key.name!r} → {name!r}")
    elif action in ("deactivate", "activate"):
        if key.status == "archived":
            raise ConsoleError(409, f"api_key_id: key {key_id} is archived; it cannot change any more")
        status: KeyStatus = "inactive" if action == "deactivate" else "active"
        await asyncio.to_thread(keys.update, key_id, status=status)
        await audited(request, session, f"api_key.{action}", key_id, f"{key.status} → {status}")
    else:
        raise ConsoleError(400, "action: rename, activate or deactivate")
    return redirect(request, "/console/keys")
