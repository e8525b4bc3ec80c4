"""The Workbench: a page to try a request (model, system prompt, messages, max_tokens,
temperature, tools, thinking, structured output) and watch its reply stream in, block by block,
as the SSE events arrive; "view as code" shows the same request for the Python SDK, the
TypeScript SDK and cURL (static/workbench.js builds the request and draws the events).

The page's script posts to `POST /console/workbench/messages`: the Messages API's own pipeline
(the same parsing, errors, stream and usage record as `POST /v1/messages`), called as the Console
(the default workspace, no key) by a signed-in session whose CSRF header is checked.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, StreamingResponse

from sijo.api.auth import Authenticator
from sijo.api.body import parse_body
from sijo.api.delivery import streamed
from sijo.console.access import ScriptDep, SessionDep
from sijo.console.audit import audited
from sijo.console.pages import page, secured
from sijo.protocol.params import MessageCreateParams
from sijo.ratelimit import RateLimiter
from sijo.service import MessagesService

router = APIRouter(prefix="/console", include_in_schema=False)


@router.get("/workbench")
async def workbench_page(request: Request, _: SessionDep) -> HTMLResponse:
    service: MessagesService = request.app.state.service
    models = [info.id for info in service.catalog.infos()]
    base_url = (request.app.state.settings.public_url or str(request.base_url)).rstrip("/")
    return page(request, "workbench.html", models=models, base_url=base_url)


@router.post("/workbench/messages")
async def workbench_messages(request: Request, session: ScriptDep) -> StreamingResponse:
    service: MessagesService = request.app.state.service
    limiter: RateLimiter = request.app.state.limiter
    authenticator: Authenticator = request.app.state.authenticator
    caller = authenticator.keyless("console")
    params = await parse_body(request, MessageCreateParams, request.app.state.settings.max_request_bytes)
    params = params.model_copy(update={"stream": True})
    prepared = await service.prepare(params, caller.workspace, account=caller.account)
    detail = f"max_tokens {params.max_tokens}, {prepared.input_tokens} input tokens"
    await limiter.admit(caller.rate_key, caller.limits, prepared.input_tokens)
    await audited(request, session, "workbench.run", params.model, detail)
    response = await streamed(
        request, service, prepared, limiter, caller, request.app.state.settings.ping_interval
    )
    return secured(request, response)
