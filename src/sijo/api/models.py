"""GET /v1/models and GET /v1/models/{model_id} (reference §9), paged as the API's "Page" style."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from sijo.api.auth import Authenticated
from sijo.api.deps import ServiceDep
from sijo.errors import InvalidRequestError
from sijo.protocol.models import ModelInfo, ModelPage

router = APIRouter()


@router.get("/v1/models")
async def list_models(
    _: Authenticated,
    service: ServiceDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
    after_id: str | None = None,
    before_id: str | None = None,
) -> JSONResponse:
    infos = [served.info() for served in service.catalog.list()]
    page = _page(infos, limit, after_id, before_id)
    return JSONResponse(page.model_dump(mode="json"))


@router.get("/v1/models/{model_id:path}")
async def retrieve_model(model_id: str, _: Authenticated, service: ServiceDep) -> JSONResponse:
    info = service.catalog.resolve(model_id, field="model").info()
    return JSONResponse(info.model_dump(mode="json"))


def _page(infos: list[ModelInfo], limit: int, after_id: str | None, before_id: str | None) -> ModelPage:
    if after_id is not None and before_id is not None:
        raise InvalidRequestError("after_id: cannot be combined with before_id")
    ids = [info.id for info in infos]
    start, stop = 0, len(infos)
    if after_id is not None:
        start = _position(ids, after_id, "after_id") + 1
    if before_id is not None:
        stop = _position(ids, before_id, "before_id")
        start = max(0, stop - limit)
    window = infos[start:stop]
    chunk = window[:limit]
    has_more = (start + len(chunk) < len(infos)) if before_id is None else start > 0
    return ModelPage(
        data=chunk,
        has_more=has_more,
        first_id=chunk[0].id if chunk else None,
        last_id=chunk[-1].id if chunk else None,
    )


def _position(ids: list[str], model_id: str, field: str) -> int:
    try:
        return ids.index(model_id)
    except ValueError:
        raise InvalidRequestError(f"{field}: unknown model id {model_id}") from None
