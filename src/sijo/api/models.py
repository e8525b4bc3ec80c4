"""GET /v1/models and GET /v1/models/{model_id} (reference §9), paged as the API's "Page" style."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from sijo.api.auth import Authenticated
from sijo.api.deps import ServiceDep
from sijo.api.openapi import answers
from sijo.api.pagination import select_page
from sijo.protocol.models import ModelInfo, ModelPage

router = APIRouter()


@router.get("/v1/models", responses=answers(ModelPage))
async def list_models(
    _: Authenticated,
    service: ServiceDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
    after_id: str | None = None,
    before_id: str | None = None,
) -> JSONResponse:
    infos = {info.id: info for info in (served.info() for served in service.catalog.list())}
    ids, has_more = select_page(list(infos), limit, after_id, before_id, "model id")
    page = ModelPage(
        data=[infos[i] for i in ids],
        has_more=has_more,
        first_id=ids[0] if ids else None,
        last_id=ids[-1] if ids else None,
    )
    return JSONResponse(page.model_dump(mode="json"))


@router.get("/v1/models/{model_id:path}", responses=answers(ModelInfo))
async def retrieve_model(model_id: str, _: Authenticated, service: ServiceDep) -> JSONResponse:
    info = service.catalog.resolve(model_id, field="model").info()
    return JSONResponse(info.model_dump(mode="json"))
