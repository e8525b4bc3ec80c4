"""An engine served by another process: vLLM, SGLang or llama-server, over OpenAI-style `/v1/completions`.

Sijo keeps what makes it exact (chat templating, the prompt's tokens, stop sequences, the reply
parser, thinking phases, billing) and sends the upstream token ids, sampling, `max_tokens` and the
reply's grammar; the text comes back as a stream. Several URLs are replicas of one model: a request
goes to the least loaded healthy one, and to the next if that one fails before its first token.
Once a token has arrived, a failure ends the reply with an error (never a reply spliced from two).

Dialects differ in a few fields:
- `vllm`: grammars as Lark (`structured_outputs.grammar`, llguidance), `cache_salt` per namespace
  (so one workspace's prefix cache never serves another's), `return_token_ids`;
- `sglang`: grammars as Lark (`ebnf`, which `--grammar-backend llguidance` reads as Lark);
- `llama-server`: grammars translated to GBNF (`gbnf.py`), the chat template read from `/props`.
Tokens come from the upstream's `/tokenize`, so they are the upstream model's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

from sijo.engines.base import (
    Admission,
    Bitmap,
    EngineInfo,
    FinishReason,
    GenerationChunk,
    GenerationRequest,
    ImageInputUnsupportedError,
    ImageTokens,
)
from sijo.engines.upstream.gbnf import to_gbnf
from sijo.errors import InvalidRequestError, OverloadedError, UpstreamUnavailableError

log = logging.getLogger(__name__)

Dialect = Literal["vllm", "sglang", "llama-server"]
_GRAMMARS_KEPT = 256  # GBNF translations kept (grammars hold each request's schemas)


@dataclass(frozen=True, slots=True)
class UpstreamSettings:
    """What one upstream engine needs (from `EngineConfig`, kind `completions`)."""

    name: str
    urls: tuple[str, ...]
    dialect: Dialect = "vllm"
    model: str | None = None  # the upstream's model name; None: its first
    api_key: str | None = None
    chat_template: str | None = None  # None: the upstream's own (llama-server's /props)
    context_window: int | None = None
    bos_token: str | None = None
    eos_token: str | None = None
    max_in_flight: int = 64
    timeout: float = 600.0
    connect_timeout: float = 5.0
    health_interval: float = 5.0


@dataclass(eq=False)
class Replica:
    url: str
    client: httpx.AsyncClient
    in_flight: int = 0
    healthy: bool = True
    failures: int = 0
    requests: int = 0


@dataclass
class _Stream:
    """What one upstream completion has produced so far."""

    tokens: int = 0
    finish: str | None = None
    usage_tokens: int | None = None
    chunks: list[GenerationChunk] = field(default_factory=list)


class CompletionsEngine:
    def __init__(self, settings: UpstreamSettings, info: EngineInfo, model: str) -> None:
        self.settings = settings
        self._info = info
        self._model = model
        headers = {"authorization": f"Bearer {settings.api_key}"} if settings.api_key else {}
        timeout = httpx.Timeout(settings.timeout, connect=settings.connect_timeout)
        self.replicas = [
            Replica(url.rstrip("/"), httpx.AsyncClient(headers=headers, timeout=timeout, trust_env=False))
            for url in settings.urls
        ]
        self._admitted = 0
        self._grammars: dict[str, str] = {}
        self._health: asyncio.Task[None] | None = None

    @classmethod
    async def connect(cls, settings: UpstreamSettings, *, wait: float = 120.0) -> CompletionsEngine:
        """The engine, once an upstream has told what it serves (waiting up to `wait` seconds for
        one to answer: a Compose file starts Sijo and the engine together)."""
        deadline = asyncio.get_running_loop().time() + wait
        engine = cls(settings, _placeholder_info(settings), settings.model or "")
        while True:
            try:
                engine._info, engine._model = await engine._describe()
                break
            except (httpx.HTTPError, UpstreamUnavailableError) as exc:
                if asyncio.get_running_loop().time() > deadline:
                    await engine.aclose()
                    raise RuntimeError(f"engine {settings.name}: no upstream answered: {exc}") from exc
                await asyncio.sleep(1.0)
        for replica in engine.replicas:  # refusals while it started say nothing now: the watch decides
            replica.healthy, replica.failures = True, 0
        engine._health = asyncio.create_task(engine._watch_health())
        if settings.dialect != "llama-server":
            log.warning(
                "engine %s: %s tokenizes control tokens in user text as control tokens (its /tokenize "
                "has no switch for it): a message can forge a turn of the chat template",
                settings.name,
                settings.dialect,
            )
        return engine

    @property
    def info(self) -> EngineInfo:
        return self._info

    @property
    def healthy(self) -> bool:
        return any(replica.healthy for replica in self.replicas)

    async def tokenize(self, text: str, *, special: bool) -> list[int]:
        if self.settings.dialect == "llama-server":
            body: dict[str, Any] = {"content": text, "add_special": False, "parse_special": special}
        else:  # vLLM and SGLang parse special tokens in text always
            body = {"model": self._model, "prompt": text, "add_special_tokens": False}
        data = await self._call("POST", "/tokenize", body)
        return [int(t) if not isinstance(t, dict) else int(t["id"]) for t in data["tokens"]]

    async def image_tokens(self, bitmap: Bitmap) -> ImageTokens:  # noqa: ARG002
        raise ImageInputUnsupportedError(f"engine {self.settings.name} (an upstream) reads no images")

    def admit(self) -> Admission:
        if not self.healthy:
            raise UpstreamUnavailableError(f"engine {self.settings.name}: no upstream is healthy")
        if self._admitted >= self.settings.max_in_flight:
            raise OverloadedError("Overloaded", headers={"retry-after": "1"})
        self._admitted += 1
        return Admission(self._release)

    def _release(self) -> None:
        self._admitted -= 1

    def check_grammar(self, grammar: str) -> None:
        if self.settings.dialect == "llama-server":
            self._gbnf(grammar)

    def _gbnf(self, grammar: str) -> str:
        """`grammar` as GBNF (raises GrammarError if it cannot be), the latest translations kept."""
        translated = self._grammars.pop(grammar, None) or to_gbnf(grammar)
        self._grammars[grammar] = translated  # most recent last
        while len(self._grammars) > _GRAMMARS_KEPT:
            del self._grammars[next(iter(self._grammars))]
        return translated

    def stats(self) -> dict[str, int | float]:
        return {
            "admitted": self._admitted,
            "running": sum(r.in_flight for r in self.replicas),
            "requests": sum(r.requests for r in self.replicas),
            "upstream_failures": sum(r.failures for r in self.replicas),
            "upstreams": len(self.replicas),
            "upstreams_healthy": sum(r.healthy for r in self.replicas),
        }

    async def generate(self, request: GenerationRequest) -> AsyncGenerator[GenerationChunk, None]:
        if request.images:
            raise ImageInputUnsupportedError(f"engine {self.settings.name} (an upstream) reads no images")
        room = self._info.context_window - len(request.tokens)
        if room <= 0:
            yield GenerationChunk("", 0, "context_full")
            return
        budget = min(request.max_tokens, room)
        body = self._body(request, budget)
        tried: set[int] = set()
        while True:
            async with contextlib.AsyncExitStack() as stack:
                replica, lines = await self._open(body, stack, tried)
                state = _Stream()
                try:
                    async with aclosing(self._read(replica, lines, state)) as chunks:
                        async for chunk in chunks:
                            yield chunk
                except UpstreamUnavailableError:
                    if state.tokens:  # output was sent: never splice another replica's reply onto it
                        raise
                    tried.add(id(replica))
                    continue
            if state.finish not in ("stop", "length"):  # e.g. vLLM's "abort": the reply was cut
                raise UpstreamUnavailableError(
                    f"engine {self.settings.name}: the upstream ended the reply ({state.finish})"
                )
            finish: FinishReason = "eos" if state.finish == "stop" else "length"
            if finish == "length" and budget < request.max_tokens:
                finish = "context_full"
            rest = max(0, (state.usage_tokens or state.tokens) - state.tokens)
            yield GenerationChunk("", rest, finish)
            return

    async def _open(
        self, body: dict[str, Any], stack: contextlib.AsyncExitStack, tried: set[int]
    ) -> tuple[Replica, AsyncIterator[str]]:
        """A streaming completion from the least loaded healthy replica, or the next one if it fails
        before answering (`tried`: replicas that already failed this request)."""
        failures = []
        for replica in self._candidates():
            if id(replica) in tried:
                continue
            replica.in_flight += 1
            attempt = contextlib.AsyncExitStack()
            attempt.callback(_leave, replica)
            try:
                response = await attempt.enter_async_context(
                    replica.client.stream("POST", f"{replica.url}/v1/completions", json=body)
                )
                await _check(response, self.settings.name)
            except httpx.TransportError as exc:  # not reached: the next replica may be
                await attempt.aclose()
                self._failed(replica, exc)
                failures.append(f"replica {self.replicas.index(replica)}: {type(exc).__name__}")
                continue
            except BaseException:  # an answer (a 5xx too) is this request's: not tried again elsewhere
                await attempt.aclose()
                raise
            stack.push_async_exit(attempt)
            replica.requests += 1
            return replica, response.aiter_lines()
        raise UpstreamUnavailableError(
            f"engine {self.settings.name}: no upstream answered ({'; '.join(failures) or 'none is healthy'})"
        )

    def _candidates(self) -> list[Replica]:
        healthy = [r for r in self.replicas if r.healthy]
        return sorted(healthy or self.replicas, key=lambda r: r.in_flight)

    async def _read(
        self, replica: Replica, lines: AsyncIterator[str], state: _Stream
    ) -> AsyncGenerator[GenerationChunk, None]:
        try:
            async for line in lines:
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    return
                for chunk in _chunks(json.loads(data), state):
                    yield chunk
        except (httpx.TransportError, json.JSONDecodeError) as exc:
            self._failed(replica, exc)
            raise UpstreamUnavailableError(
                f"engine {self.settings.name}: the upstream went away: {exc}"
            ) from exc
        if state.finish is None:
            self._failed(replica, "stream ended early")
            raise UpstreamUnavailableError(f"engine {self.settings.name}: the upstream stream ended early")

    def _body(self, request: GenerationRequest, budget: int) -> dict[str, Any]:
        sampling = request.sampling
        body: dict[str, Any] = {
            "model": self._model,
            "prompt": list(request.tokens),
            "max_tokens": budget,
            "temperature": sampling.temperature,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if sampling.top_p is not None:
            body["top_p"] = sampling.top_p
        if sampling.top_k is not None:
            body["top_k"] = sampling.top_k
        if sampling.seed is not None:
            body["seed"] = sampling.seed
        dialect = self.settings.dialect
        if dialect == "vllm":
            body["return_token_ids"] = True
            body["cache_salt"] = hashlib.sha256(f"sijo:{request.namespace}".encode()).hexdigest()[:32]
            if request.grammar is not None:
                body["structured_outputs"] = {"grammar": request.grammar}
        elif dialect == "sglang":
            if request.grammar is not None:
                body["ebnf"] = request.grammar
        else:
            body["cache_prompt"] = True
            if request.grammar is not None:
                body["grammar"] = self._gbnf(request.grammar)
        return body

    async def _describe(self) -> tuple[EngineInfo, str]:
        """The model's name, window and chat template, from the upstream where config leaves them out."""
        settings = self.settings
        models = await self._call("GET", "/v1/models", None)
        entries = models.get("data") or [{}]
        model = settings.model or str(entries[0].get("id", ""))
        entry = next((e for e in entries if e.get("id") == model), entries[0])
        props: dict[str, Any] = {}
        if settings.dialect == "llama-server":
            props = await self._call("GET", "/props", None)
        generation = props.get("default_generation_settings", {})
        window = settings.context_window or entry.get("max_model_len") or generation.get("n_ctx")
        template = settings.chat_template or props.get("chat_template")
        if not window or not template:
            raise RuntimeError(
                f"engine {settings.name}: set context_window and chat_template "
                "(the upstream does not say them)"
            )
        bos = await self._bos()
        info = EngineInfo(
            name=model,
            context_window=int(window),
            chat_template=str(template),
            bos_token=settings.bos_token
            if settings.bos_token is not None
            else str(props.get("bos_token", "")),
            eos_token=settings.eos_token
            if settings.eos_token is not None
            else str(props.get("eos_token", "")),
            bos_token_id=bos if bos is not None else -1,
            add_bos=bos is not None,
            remote=True,
        )
        return info, model

    async def _bos(self) -> int | None:
        """The token the upstream's tokenizer puts first when asked for special tokens, if any."""
        if self.settings.dialect == "llama-server":
            body: dict[str, Any] = {"content": "", "add_special": True}
        else:
            body = {"model": self._model, "prompt": "", "add_special_tokens": True}
        tokens = (await self._call("POST", "/tokenize", body))["tokens"]
        return int(tokens[0]) if tokens else None

    async def _call(self, method: str, path: str, body: dict[str, Any] | None) -> dict[str, Any]:
        for replica in self._candidates():
            try:
                response = await replica.client.request(method, f"{replica.url}{path}", json=body)
            except httpx.TransportError as exc:
                self._failed(replica, exc)
                continue
            await _check(response, self.settings.name)
            data: dict[str, Any] = response.json()
            return data
        raise UpstreamUnavailableError(f"engine {self.settings.name}: no upstream answered {path}")

    def _failed(self, replica: Replica, reason: object) -> None:
        replica.failures += 1
        if replica.healthy:
            log.warning("upstream %s of engine %s failed: %s", replica.url, self.settings.name, reason)
        replica.healthy = False

    async def _watch_health(self) -> None:
        while True:
            await asyncio.sleep(self.settings.health_interval)
            await asyncio.gather(*(self._probe(replica) for replica in self.replicas))

    async def _probe(self, replica: Replica) -> None:
        try:
            response = await replica.client.get(
                f"{replica.url}/health", timeout=self.settings.connect_timeout
            )
            ok = response.status_code == 200
        except httpx.HTTPError:
            ok = False
        if ok and not replica.healthy:
            log.warning("upstream %s of engine %s is healthy again", replica.url, self.settings.name)
        replica.healthy = ok

    async def aclose(self) -> None:
        if self._health is not None:
            self._health.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._health
        for replica in self.replicas:
            await replica.client.aclose()


def _chunks(data: dict[str, Any], state: _Stream) -> list[GenerationChunk]:
    usage = data.get("usage")
    if isinstance(usage, dict) and usage.get("completion_tokens") is not None:
        state.usage_tokens = int(usage["completion_tokens"])
    chunks = []
    for choice in data.get("choices") or ():
        text = str(choice.get("text") or "")
        ids = choice.get("token_ids")
        count = len(ids) if isinstance(ids, list) else (1 if text else 0)
        if choice.get("finish_reason"):
            state.finish = str(choice["finish_reason"])
        if text or count:
            state.tokens += count
            chunks.append(GenerationChunk(text, count))
    return chunks


async def _check(response: httpx.Response, name: str) -> None:
    """Raise for an upstream's error answer: its 4xx names a request Sijo cannot make of it (a 400
    the client can act on); anything else is the upstream failing (the router tries another)."""
    if response.status_code == 200:
        return
    text = (await response.aread()).decode(errors="replace")
    try:
        error = json.loads(text).get("error", text)
        message = error.get("message", text) if isinstance(error, dict) else str(error)
    except (json.JSONDecodeError, AttributeError):
        message = text
    if response.status_code in (400, 422):
        raise InvalidRequestError(f"the upstream engine {name} refused the request: {message[:500]}")
    raise UpstreamUnavailableError(
        f"engine {name}: upstream answered {response.status_code}: {message[:500]}"
    )


def _leave(replica: Replica) -> None:
    replica.in_flight -= 1


def _placeholder_info(settings: UpstreamSettings) -> EngineInfo:
    return EngineInfo(settings.name, settings.context_window or 0, "", "", "", -1, False, remote=True)
