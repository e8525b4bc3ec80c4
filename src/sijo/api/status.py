"""GET /sijo/status: what each engine is doing (slots, queue, KV cells, kept prefixes).

Not a Claude API route; for operators and tests.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from sijo.api.auth import Authenticated
from sijo.api.deps import ServiceDep

router = APIRouter()


@router.get("/sijo/status")
async def engine_status(_: Authenticated, service: ServiceDep) -> JSONResponse:
    engines = {name: engine.stats() for name, engine in service.catalog.engines.items()}
    return JSONResponse({"engines": engines, "prompt_cache_entries": len(service.cache)})
