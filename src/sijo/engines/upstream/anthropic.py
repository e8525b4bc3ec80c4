"""A model served by a Messages API upstream: the Claude API, or another Sijo (`kind = "anthropic"`).

The request goes up as the client sent it (its model id replaced by `upstream_model` where one is
set), with the operator's key from the environment; the reply's events come back one by one and are
passed on as they are. An error answer is mapped 1:1 onto Sijo's error of the same type; a failure to
connect, a 5xx or a 529 is `UpstreamUnavailableError`, which lets the router fail over to the next
route while nothing has been sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import TypeAdapter, ValidationError

from sijo.errors import (
    ApiError,
    AuthenticationError,
    GatewayTimeoutError,
    InternalServerError,
    InvalidRequestError,
    NotFoundError,
    OverloadedError,
    PermissionDeniedError,
    RateLimitError,
    RequestTooLargeError,
    UpstreamUnavailableError,
)
from sijo.protocol.events import StreamEvent

log = logging.getLogger(__name__)

_EVENTS: TypeAdapter[StreamEvent] = TypeAdapter(StreamEvent)
_ERRORS: dict[str, type[ApiError]] = {
    "invalid_request_error": InvalidRequestError,
    "authentication_error": AuthenticationError,
    "permission_error": PermissionDeniedError,
    "not_found_error": NotFoundError,
    "request_too_large": RequestTooLargeError,
    "rate_limit_error": RateLimitError,
    "timeout_error": GatewayTimeoutError,
    "api_error": InternalServerError,
    "overloaded_error": OverloadedError,
}
# Headers a client sends that the upstream should see too (betas change what a request may hold).
FORWARDED_HEADERS = ("anthropic-beta",)


@dataclass(frozen=True, slots=True)
class AnthropicSettings:
    name: str
    url: str = "https://api.anthropic.com"
    api_key: str | None = None
    model: str | None = None
    timeout: float = 600.0
    connect_timeout: float = 5.0
    health_interval: float = 5.0


class AnthropicUpstream:
    def __init__(
        self, settings: AnthropicSettings, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.settings = settings
        self.healthy = True
        self.requests = 0
        self.failures = 0
        self.in_flight = 0
        self._client = httpx.AsyncClient(
            base_url=settings.url.rstrip("/"),
            timeout=httpx.Timeout(settings.timeout, connect=settings.connect_timeout),
            trust_env=False,
            transport=transport,  # tests pass httpx.MockTransport
        )
        self._recheck: asyncio.Task[None] | None = None

    async def stream(
        self, body: dict[str, Any], headers: dict[str, str]
    ) -> AsyncGenerator[StreamEvent, None]:
        """The upstream's reply to `body`, event by event (`ping`s included)."""
        body = {**body, "stream": True}
        if self.settings.model is not None:
            body["model"] = self.settings.model
        sent = {"anthropic-version": "2023-06-01", "content-type": "application/json"}
        sent.update({k: v for k, v in headers.items() if k in FORWARDED_HEADERS})
        if self.settings.api_key:
            sent["x-api-key"] = self.settings.api_key
        self.in_flight += 1
        try:
            async with contextlib.AsyncExitStack() as stack:
                try:
                    response = await stack.enter_async_context(
                        self._client.stream("POST", "/v1/messages", json=body, headers=sent)
                    )
                except httpx.TransportError as exc:
                    raise self._down(exc) from exc
                if response.status_code != 200:
                    raise self._refused(
                        response.status_code, (await response.aread()).decode(errors="replace")
                    )
                self.requests += 1
                async for event in self._events(response):
                    yield event
        finally:
            self.in_flight -= 1

    async def count_tokens(self, body: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
        if self.settings.model is not None:
            body = {**body, "model": self.settings.model}
        sent = {
            "anthropic-version": "2023-06-01",
            **{k: v for k, v in headers.items() if k in FORWARDED_HEADERS},
        }
        if self.settings.api_key:
            sent["x-api-key"] = self.settings.api_key
        try:
            response = await self._client.post("/v1/messages/count_tokens", json=body, headers=sent)
        except httpx.TransportError as exc:
            raise self._down(exc) from exc
        if response.status_code != 200:
            raise self._refused(response.status_code, response.text)
        answer: dict[str, Any] = response.json()
        return answer

    async def _events(self, response: httpx.Response) -> AsyncGenerator[StreamEvent, None]:
        data: list[str] = []
        started: dict[str, Any] = {}  # message_start's usage: what message_delta leaves out stays
        try:
            async for line in response.aiter_lines():
                if line.startswith("data:"):
                    data.append(line[5:].lstrip())
                elif not line and data:
                    try:
                        payload = json.loads("\n".join(data))
                    except json.JSONDecodeError as exc:
                        raise UpstreamUnavailableError(
                            f"upstream {self.settings.name} sent an unreadable event"
                        ) from exc
                    data = []
                    if payload.get("type") == "error":
                        raise _mapped(payload.get("error") or {}, self.settings.name)
                    _complete_usage(payload, started)
                    try:
                        yield _EVENTS.validate_python(payload)
                    except ValidationError as exc:
                        reason = exc.errors()[0]["msg"]
                        raise InternalServerError(
                            f"upstream {self.settings.name} sent an event Sijo cannot read: {reason}"
                        ) from None
        except httpx.TransportError as exc:
            raise self._down(exc) from exc

    def _refused(self, status: int, text: str) -> ApiError:
        """The client's own mistakes map 1:1; the upstream failing (5xx, 529) or limiting the
        operator's key (429) lets the next route try; the operator's key refused (401, 403) is the
        operator's problem, not the client's: an `api_error`, logged."""
        try:
            error = json.loads(text).get("error") or {}
        except (json.JSONDecodeError, AttributeError):
            error = {"message": text[:500]}
        message = f"upstream {self.settings.name} answered {status}: {error.get('message', '')}"
        if status >= 500 or status == 429:
            return UpstreamUnavailableError(message)
        if status in (401, 403):
            log.error("upstream %s refused the operator's key: %s", self.settings.name, error.get("message"))
            return InternalServerError(f"upstream {self.settings.name} refused this server's credentials")
        return _mapped(error, self.settings.name)

    def _down(self, exc: Exception) -> UpstreamUnavailableError:
        self._mark_down(str(exc) or type(exc).__name__)
        return UpstreamUnavailableError(
            f"upstream {self.settings.name} is unavailable: {exc or type(exc).__name__}"
        )

    def _mark_down(self, reason: str) -> None:
        self.failures += 1
        if self.healthy:
            log.warning("upstream %s failed: %s", self.settings.name, reason)
        self.healthy = False
        if self._recheck is None or self._recheck.done():
            self._recheck = asyncio.ensure_future(self._until_healthy())

    async def _until_healthy(self) -> None:
        """While down, ask the upstream's model list now and then (the API has no health route)."""
        while not self.healthy:
            await asyncio.sleep(self.settings.health_interval)
            headers = {"anthropic-version": "2023-06-01"}
            if self.settings.api_key:
                headers["x-api-key"] = self.settings.api_key
            try:
                response = await self._client.get(
                    "/v1/models", headers=headers, timeout=self.settings.connect_timeout
                )
            except httpx.HTTPError:
                continue
            if response.status_code < 500:
                log.warning("upstream %s is healthy again", self.settings.name)
                self.healthy = True

    def stats(self) -> dict[str, int | float]:
        return {
            "running": self.in_flight,
            "requests": self.requests,
            "upstream_failures": self.failures,
            "upstreams": 1,
            "upstreams_healthy": int(self.healthy),
        }

    async def aclose(self) -> None:
        if self._recheck is not None:
            self._recheck.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._recheck
        await self._client.aclose()


def _complete_usage(payload: dict[str, Any], started: dict[str, Any]) -> None:
    """Fill a `message_delta`'s missing (or null) usage counts from `message_start`'s: older APIs
    send only `output_tokens` there, and a client overwrites its totals with what is sent."""
    if payload.get("type") == "message_start":
        started.update(payload.get("message", {}).get("usage") or {})
    elif payload.get("type") == "message_delta":
        usage = payload.setdefault("usage", {})
        for key in (
            "input_tokens",
            "cache_creation_input_tokens",
            "cache_read_input_tokens",
            "output_tokens",
        ):
            if usage.get(key) is None:
                usage[key] = started.get(key) or 0


def _mapped(error: dict[str, Any], name: str) -> ApiError:
    kind = _ERRORS.get(str(error.get("type")), InternalServerError)
    if kind is OverloadedError:
        kind = UpstreamUnavailableError
    return kind(f"upstream {name}: {error.get('message', '')}")
