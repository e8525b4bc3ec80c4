"""create_app(settings): engines, catalogue, service, routes, error rendering and the request-id header."""

from __future__ import annotations

import asyncio
import logging
import mimetypes
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sijo.api import admin, batches, errors, files, messages, models, openai, openapi, probes, status
from sijo.api.auth import Authenticator
from sijo.api.browser import BrowserAccessMiddleware
from sijo.api.hosts import HostCheckMiddleware
from sijo.api.probes import RequestCountMiddleware
from sijo.api.timeouts import BodyTimeoutMiddleware
from sijo.batch_worker import BatchWorker
from sijo.catalog import Catalog, default_models
from sijo.config import Settings
from sijo.console import routes as console
from sijo.engines.base import Engine
from sijo.engines.registry import load_engines
from sijo.engines.upstream.anthropic import AnthropicUpstream
from sijo.errors import InternalServerError
from sijo.ids import new_id
from sijo.media.fetch import FetchPolicy
from sijo.metrics import Metrics
from sijo.prompt.attachments import StoredBytes
from sijo.prompt_cache import PromptCache, RedisEntries
from sijo.ratelimit import RateLimiter, rate_limiter
from sijo.service import FileSource, MessagesService
from sijo.signing import SEALING, ThinkingSigner, load_or_create_secret
from sijo.store.audit import AuditLog
from sijo.store.batches import BatchStore
from sijo.store.db import connect, migrate
from sijo.store.files import FileStore
from sijo.store.keys import KeyStore
from sijo.store.ledger import UsageLedger
from sijo.tools.code_execution.containers import Containers
from sijo.tools.code_execution.sandbox import Sandbox
from sijo.tools.runner import ServerTools
from sijo.tools.web_search.backends import search_backend

logger = logging.getLogger("sijo.api")


class RequestIdMiddleware:
    """Gives every request a `req_…` id: in `request.state`, and as the `request-id` response header.

    It also puts the caller's `anthropic-ratelimit-*` headers, which authentication (or the route
    that took from the buckets) leaves in `request.state`, on every response to a caller it knows,
    errors included; a route's own headers win."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = new_id("req")
        state = scope.setdefault("state", {})
        state["request_id"] = request_id

        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = list(message.get("headers", []))
                present = {name.decode("latin-1").lower() for name, _ in headers}
                limits: dict[str, str] = state.get("ratelimit_headers") or {}
                headers += [(k.encode(), v.encode()) for k, v in limits.items() if k not in present]
                headers.append((b"request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            # Starlette renders unexpected errors outside this middleware; render them here so a
            # 500 carries its request id too.
            logger.exception("unhandled error in %s %s", scope["method"], scope["path"])
            if started:
                raise
            error = InternalServerError("Internal server error")
            response = JSONResponse(error.body(request_id), status_code=error.status_code)
            response.headers["x-should-retry"] = "true"
            await response(scope, receive, send_with_id)


def _now() -> datetime:
    return datetime.now(UTC)


def create_app(
    settings: Settings,
    engines: Mapping[str, Engine] | None = None,
    cache: PromptCache | None = None,
    clock: Callable[[], datetime] = _now,
    limiter: RateLimiter | None = None,
) -> FastAPI:
    """Build the app; `engines` replaces the configured ones (tests pass a fake), `cache` the prompt
    cache and `limiter` the rate limiter (tests pass them with fake clocks), `clock` the time batches
    are created and expire by."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        database = connect(settings.database)
        await asyncio.to_thread(migrate, database)
        if engines is not None:
            loaded, upstreams = dict(engines), dict[str, AnthropicUpstream]()
        else:
            loaded, upstreams = await load_engines(settings)
        catalog = Catalog(settings.models or default_models(loaded), loaded, upstreams)
        secret = load_or_create_secret(settings.data_dir / "thinking-signing.key")
        signer = ThinkingSigner(secret)
        state = app.state
        state.database = database
        state.keys = KeyStore(database)
        state.audit = AuditLog(database)
        state.ledger = UsageLedger(database)
        state.batches = BatchStore(database)
        state.files = FileStore(database, settings.data_dir / "files", clock)
        state.authenticator = Authenticator(
            state.keys, settings.api_keys, settings.admin_keys, settings.rate_limits, secret
        )
        state.limiter = limiter or rate_limiter(settings.redis_url)
        prompt_cache = cache or shared_prompt_cache(settings.redis_url)
        state.service = MessagesService(
            catalog,
            signer,
            prompt_cache,
            state.ledger,
            files=_file_source(state.files),
            fetch_policy=FetchPolicy.from_config(settings.media),
            server_tools=_server_tools(settings, signer, state.files),
            max_tool_iterations=settings.server_tools.max_iterations,
            metrics=app.state.metrics,
        )
        state.clock = clock
        state.batch_worker = BatchWorker(
            state.batches, state.service, concurrency=_batch_concurrency(settings, loaded), clock=clock
        )
        state.batch_worker.start()
        try:
            yield
        finally:
            await state.batch_worker.stop()
            await state.ledger.flush()
            await state.limiter.aclose()
            if cache is None:
                await prompt_cache.entries.aclose()
            if engines is None:
                for engine in loaded.values():
                    await engine.aclose()
                for upstream in upstreams.values():
                    await upstream.aclose()
            database.dispose()

    # The schema at /openapi.json (api/openapi.py); no docs pages, which would load JavaScript from a CDN.
    app = FastAPI(title="Sijo", lifespan=lifespan, docs_url=None, redoc_url=None)
    openapi.install(app)
    app.state.settings = settings
    app.state.metrics = Metrics(lambda: _engine_stats(app))
    # The last added runs first: request ids, then the Host check, browser access, body timeouts.
    app.add_middleware(BodyTimeoutMiddleware, seconds=settings.body_timeout)
    app.add_middleware(BrowserAccessMiddleware)
    app.add_middleware(HostCheckMiddleware, settings=settings)
    app.add_middleware(RequestIdMiddleware)
    app.add_middleware(RequestCountMiddleware, metrics=app.state.metrics)
    errors.install(app)
    app.include_router(messages.router)
    app.include_router(batches.router)
    app.include_router(files.router)
    app.include_router(models.router)
    app.include_router(openai.router)
    app.include_router(admin.router)
    app.include_router(status.router)
    app.include_router(probes.router)
    console.install(app)
    return app


def _engine_stats(app: FastAPI) -> dict[str, dict[str, int | float]]:
    service: MessagesService | None = getattr(app.state, "service", None)
    if service is None:
        return {}
    return service.catalog.stats()


def shared_prompt_cache(redis_url: str | None) -> PromptCache:
    """Entries in Redis when a URL is given (shared by a fleet's processes), else in memory."""
    return PromptCache(entries=RedisEntries(redis_url)) if redis_url else PromptCache()


def _batch_concurrency(settings: Settings, engines: Mapping[str, Engine]) -> int:
    """Batches leave one slot of the default engine to interactive requests."""
    if settings.batches.concurrency is not None:
        return settings.batches.concurrency
    config = settings.engines.get("default")
    slots = config.slots if config is not None and "default" in engines else 2
    return max(1, slots - 1)


OUTPUT_FILE_TTL = timedelta(days=30)  # files code wrote, as the API keeps container data


def _server_tools(settings: Settings, signer: ThinkingSigner, files: FileStore) -> ServerTools:
    """web_search over the configured backend, web_fetch under the media fetch rules, code execution
    in bubblewrap with containers under the data directory and its output files in the Files API."""
    config = settings.server_tools

    async def read_upload(workspace: str, file_id: str) -> tuple[str, bytes] | None:
        stored = await files.read(workspace, file_id)
        return None if stored is None else (stored.filename, stored.data)

    async def save_output(workspace: str, filename: str, data: bytes) -> str:
        mime_type = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        record = await files.add(workspace, filename, mime_type, data, expires_in=OUTPUT_FILE_TTL)
        return record.id

    return ServerTools(
        search=search_backend(config.search, settings.data_dir),
        fetch_policy=replace(FetchPolicy.from_config(settings.media), max_bytes=config.fetch_max_bytes),
        sandbox=Sandbox(
            config.sandbox,
            workspace_bytes=config.sandbox.workspace_mb * 1024 * 1024,
            tmp_bytes=config.sandbox.tmp_mb * 1024 * 1024,
        ),
        containers=Containers(settings.data_dir / "containers", config.sandbox.container_ttl),
        sealer=signer.derived(SEALING),
        read_upload=read_upload,
        save_output=save_output,
        max_output_file_bytes=config.sandbox.max_file_bytes,
        max_results=config.search.max_results,
    )


def _file_source(files: FileStore) -> FileSource:
    """Message sources read Files API files through the store, in the request's workspace."""

    async def read(workspace: str, file_id: str, max_bytes: int) -> StoredBytes | None:
        record = await files.get(workspace, file_id)
        if record is None or record.size_bytes > max_bytes:  # too large: not read at all
            return None if record is None else StoredBytes(record.mime_type, record.size_bytes, None)
        stored = await files.read(workspace, file_id)
        return None if stored is None else StoredBytes(stored.mime_type, stored.size_bytes, stored.data)

    return read
