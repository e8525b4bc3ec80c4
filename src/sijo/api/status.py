"""GET /sijo/status: what each engine is doing (slots, queue, KV cells, kept prefixes).

Not a Claude API route; for operators and tests.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from sijo.api.auth import Authenticated
from sijo.api.deps import ServiceDep
from sijo.prompt_cache import MemoryEntries

router = APIRouter()


@router.get("/sijo/status")
async def engine_status(_: Authenticated, service: ServiceDep) -> JSONResponse:
    entries = service.cache.entries
    held = len(entries) if isinstance(entries, MemoryEntries) else None  # Redis's: not counted
    return JSONResponse({"engines": service.catalog.stats(), "prompt_cache_entries": held})
