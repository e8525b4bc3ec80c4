"""For load balancers and monitoring, not Claude API routes: `GET /healthz` (the process answers),
`GET /readyz` (it can serve: started, its database reachable), `GET /metrics` (Prometheus text,
`metrics.py`), and the middleware that counts every request by its route template.

/healthz and /readyz carry no data and need no key, as a load balancer calls them; /metrics needs
one wherever keys are set (request counts and token totals are the operator's business).
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import Engine, text
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sijo.api.auth import Authenticator, presented_keys
from sijo.catalog import available
from sijo.metrics import CONTENT_TYPE, Metrics

router = APIRouter()


@router.get("/healthz", include_in_schema=False)
async def healthz() -> JSONResponse:
    return JSONResponse({"status": "ok"})


@router.get("/readyz", include_in_schema=False)
async def readyz(request: Request) -> JSONResponse:
    state = request.app.state
    problems: list[str] = []
    if getattr(state, "service", None) is None:
        problems.append("starting")
    else:
        try:
            await asyncio.to_thread(_ping, state.database)
        except Exception as exc:
            problems.append(f"database: {type(exc).__name__}")
        routes = state.service.catalog.list()
        if routes and not any(available(route).healthy for route in routes):
            problems.append("engines: no model has a healthy engine")
    if problems:
        return JSONResponse({"status": "unavailable", "problems": problems}, status_code=503)
    return JSONResponse({"status": "ok"})


def _ping(database: Engine) -> None:
    with database.connect() as connection:
        connection.execute(text("SELECT 1"))


async def _key_holder(request: Request) -> None:
    """A valid API key where keys are set (a scraper sends it as `Authorization: Bearer`); no
    `anthropic-version` asked, which scrapers do not send."""
    authenticator: Authenticator = request.app.state.authenticator
    await authenticator.caller(presented_keys(request))


@router.get("/metrics", include_in_schema=False, dependencies=[Depends(_key_holder)])
async def metrics(request: Request) -> Response:
    exposition: Metrics = request.app.state.metrics
    return Response(await asyncio.to_thread(exposition.exposition), media_type=CONTENT_TYPE)


class RequestCountMiddleware:
    """Counts each HTTP request by method, route template (never the raw path: ids would make a
    series per file or batch) and status."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = getattr(scope.get("route"), "path", None) or "other"
            self.metrics.requests.labels(scope["method"], route, str(status)).inc()
