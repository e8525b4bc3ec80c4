"""Rendering every failure as the Claude API's error body, in one place (reference §4)."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from sijo.api.body import ClientDisconnected
from sijo.errors import ApiError, InvalidRequestError, NotFoundError, shown
from sijo.protocol.validation import describe_errors

logger = logging.getLogger("sijo.api")


def request_id(request: Request) -> str | None:
    return getattr(request.state, "request_id", None)


def render(request: Request, error: ApiError) -> JSONResponse:
    headers = {"x-should-retry": "true" if error.status_code >= 500 or error.status_code == 429 else "false"}
    headers |= error.headers
    return JSONResponse(error.body(request_id(request)), status_code=error.status_code, headers=headers)


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return render(request, exc)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return render(request, NotFoundError(_not_found(request)))
    error = InvalidRequestError(str(exc.detail))
    response = render(request, error)
    response.status_code = exc.status_code
    response.headers.update(exc.headers or {})
    return response


def _not_found(request: Request) -> str:
    """Names the path, so a doubled prefix (a base URL that already ends in /v1) shows."""
    path = request.url.path
    message = f"Not found: {request.method} {shown(path, 200)}"
    if path.startswith("/v1/v1/"):
        message += " (the base URL already ends in /v1: drop it, clients add /v1 themselves)"
    return message


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return render(request, InvalidRequestError(describe_errors(list(exc.errors()), None)))


async def _client_disconnected(request: Request, exc: Exception) -> Response:
    """Nobody is left to answer: one log line, no traceback (499 is nginx's "client closed")."""
    logger.info("%s %s: the client disconnected %s", request.method, request.url.path, exc)
    return Response(status_code=499)


def install(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(ClientDisconnected, _client_disconnected)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
