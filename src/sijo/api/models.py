"""GET /v1/models and GET /v1/models/{model_id} (reference §9), paged as the API's "Page" style.

A client that sends no `anthropic-version` (the Anthropic SDKs always send it) is taken for an
OpenAI SDK and answered in OpenAI's shape, `{"object": "list", "data": [{"id", "object": "model",
"created", "owned_by"}]}` (`openai.py`), as the Claude API's OpenAI compatibility layer serves them.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response

from sijo.api.auth import authenticate
from sijo.api.deps import ServiceDep
from sijo.api.openai import openai_client, openai_models
from sijo.api.openapi import answers
from sijo.api.pagination import select_page
from sijo.catalog import available
from sijo.protocol.models import ModelInfo, ModelPage

router = APIRouter()


async def _speaks_openai(request: Request) -> bool:
    """Whether the caller is an OpenAI client; an Anthropic one is authenticated here, before its
    parameters are checked, as everywhere else (an OpenAI one by `openai_models`, so that its
    errors take OpenAI's shape too)."""
    if openai_client(request):
        return True
    await authenticate(request)
    return False


SpeaksOpenAI = Annotated[bool, Depends(_speaks_openai)]


@router.get("/v1/models", responses=answers(ModelPage))
async def list_models(
    request: Request,
    openai: SpeaksOpenAI,
    service: ServiceDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
    after_id: str | None = None,
    before_id: str | None = None,
) -> Response:
    if openai:
        return await openai_models(request, service, None)
    infos = {info.id: info for info in service.catalog.infos()}
    ids, has_more = select_page(list(infos), limit, after_id, before_id, "model id")
    page = ModelPage(
        data=[infos[i] for i in ids],
        has_more=has_more,
        first_id=ids[0] if ids else None,
        last_id=ids[-1] if ids else None,
    )
    return JSONResponse(page.model_dump(mode="json"))


@router.get("/v1/models/{model_id:path}", responses=answers(ModelInfo))
async def retrieve_model(
    model_id: str, request: Request, openai: SpeaksOpenAI, service: ServiceDep
) -> Response:
    if openai:
        return await openai_models(request, service, model_id)
    info = available(service.catalog.resolve(model_id, field="model")).info()
    return JSONResponse(info.model_dump(mode="json"))
