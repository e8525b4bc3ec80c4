"""The Admin API (reference §14), behind admin keys: API keys, the usage report and the cost report."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from sijo.api.auth import AdminAuthenticated
from sijo.api.body import parse_body
from sijo.api.deps import ClockDep, KeysDep, LedgerDep, SettingsDep
from sijo.api.pagination import select_page
from sijo.errors import NotFoundError, shown
from sijo.protocol.base import WireModel, rfc3339
from sijo.reports import cost_report, parse_cost_query, parse_usage_query, usage_report
from sijo.store.keys import ApiKey, KeyStore

router = APIRouter()


class ApiKeyUpdate(WireModel):
    name: str | None = None
    status: Literal["active", "inactive", "archived"] | None = None


def _api_key(key: ApiKey) -> dict[str, Any]:
    return {
        "id": key.id,
        "type": "api_key",
        "name": key.name,
        "created_at": rfc3339(key.created_at),
        "created_by": {"id": "user_sijo_cli", "type": "user"},
        "partial_key_hint": key.hint,
        "status": key.status,
        "workspace_id": key.workspace_id,
        "expires_at": None,
    }


@router.get("/v1/organizations/api_keys")
async def list_api_keys(
    _: AdminAuthenticated,
    keys: KeysDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
    after_id: str | None = None,
    before_id: str | None = None,
    status: Literal["active", "inactive", "archived"] | None = None,
    workspace_id: str | None = None,
) -> JSONResponse:
    found = {
        key.id: key
        for key in await asyncio.to_thread(keys.list, kind="api", status=status, workspace_id=workspace_id)
    }
    ids, has_more = select_page(list(found), limit, after_id, before_id, "API key id")
    return JSONResponse(
        {
            "data": [_api_key(found[i]) for i in ids],
            "has_more": has_more,
            "first_id": ids[0] if ids else None,
            "last_id": ids[-1] if ids else None,
        }
    )


async def _found(keys: KeyStore, key_id: str) -> ApiKey:
    key = await asyncio.to_thread(keys.get, key_id)
    if key is None or key.kind != "api":
        raise NotFoundError(f"api_key_id: no API key {shown(key_id)}")
    return key


@router.get("/v1/organizations/api_keys/{key_id}")
async def retrieve_api_key(key_id: str, _: AdminAuthenticated, keys: KeysDep) -> JSONResponse:
    return JSONResponse(_api_key(await _found(keys, key_id)))


@router.post("/v1/organizations/api_keys/{key_id}")
async def update_api_key(
    key_id: str, request: Request, _: AdminAuthenticated, keys: KeysDep, settings: SettingsDep
) -> JSONResponse:
    await _found(keys, key_id)
    change = await parse_body(request, ApiKeyUpdate, settings.max_request_bytes)
    updated = await asyncio.to_thread(keys.update, key_id, name=change.name, status=change.status)
    assert updated is not None
    return JSONResponse(_api_key(updated))


@router.get("/v1/organizations/usage_report/messages")
async def messages_usage_report(
    request: Request, _: AdminAuthenticated, ledger: LedgerDep, clock: ClockDep
) -> JSONResponse:
    query = parse_usage_query(list(request.query_params.multi_items()), clock())
    await ledger.flush()
    records = await asyncio.to_thread(ledger.records, *query.fetch_range)
    return JSONResponse(usage_report(records, query))


@router.get("/v1/organizations/cost_report")
async def organization_cost_report(
    request: Request, _: AdminAuthenticated, ledger: LedgerDep, clock: ClockDep, settings: SettingsDep
) -> JSONResponse:
    query = parse_cost_query(list(request.query_params.multi_items()), clock())
    await ledger.flush()
    records = await asyncio.to_thread(ledger.records, *query.fetch_range)
    return JSONResponse(cost_report(records, settings.prices, query))
