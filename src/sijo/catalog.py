"""The model catalogue: which ids (and aliases) are served, by which engine, and what each can do.

`ModelInfo.capabilities` tells the truth about what works today: text, tools, structured outputs,
thinking, effort, context editing (not compaction), batches, PDFs and citations on every model, and
images on a model whose engine has a projector; not yet server tools. A model id may be served by a
chain of routes (`ModelConfig.engine` as a list): token engines and Messages API upstreams.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from dataclasses import dataclass

from sijo.config import CLAUDE_MODELS, ModelConfig
from sijo.engines.base import Engine
from sijo.engines.upstream.anthropic import AnthropicUpstream
from sijo.errors import NotFoundError, shown
from sijo.protocol.models import (
    ContextManagementCapability,
    EffortCapability,
    ModelCapabilities,
    ModelInfo,
    Support,
    ThinkingCapability,
    ThinkingTypes,
)

_NO = Support(supported=False)
_YES = Support(supported=True)
CAPABILITIES = ModelCapabilities(
    batch=_YES,
    citations=_YES,
    code_execution=_NO,
    context_management=ContextManagementCapability(
        supported=True, clear_thinking_20251015=_YES, clear_tool_uses_20250919=_YES, compact_20260112=_NO
    ),
    effort=EffortCapability(supported=True, low=_YES, medium=_YES, high=_YES, max=_YES, xhigh=_YES),
    image_input=_NO,
    pdf_input=_YES,
    structured_outputs=_YES,
    thinking=ThinkingCapability(supported=True, types=ThinkingTypes(adaptive=_YES, enabled=_YES)),
)


@dataclass(frozen=True, slots=True)
class ServedModel:
    """A model id served by a token engine (here, or an upstream engine server); `fallback` is the
    route that takes a request over when this one is down or fails before any output."""

    config: ModelConfig
    engine: Engine
    fallback: Route | None = None

    @property
    def healthy(self) -> bool:
        return self.engine.healthy

    @property
    def max_output_tokens(self) -> int:
        return self.config.max_output_tokens or self.engine.info.context_window

    def info(self) -> ModelInfo:
        return ModelInfo(
            id=self.config.id,
            display_name=self.config.display_name or self.config.id,
            created_at=self.config.created_at,
            max_input_tokens=self.engine.info.context_window,
            max_tokens=self.max_output_tokens,
            capabilities=CAPABILITIES.model_copy(
                update={"image_input": Support(supported=self.engine.info.image_input)}
            ),
        )


@dataclass(frozen=True, slots=True)
class RemoteModel:
    """A model id served by a Messages API upstream (the Claude API, another Sijo)."""

    config: ModelConfig
    upstream: AnthropicUpstream
    fallback: Route | None = None

    @property
    def healthy(self) -> bool:
        return self.upstream.healthy

    @property
    def max_output_tokens(self) -> int:
        return self.config.max_output_tokens or REMOTE_MAX_TOKENS

    def info(self) -> ModelInfo:
        """What the upstream model can do (the Claude API's models: everything listed, images too)."""
        return ModelInfo(
            id=self.config.id,
            display_name=self.config.display_name or self.config.id,
            created_at=self.config.created_at,
            max_input_tokens=REMOTE_CONTEXT_WINDOW,
            max_tokens=self.max_output_tokens,
            capabilities=CAPABILITIES.model_copy(update={"image_input": _YES, "code_execution": _YES}),
        )


Route = ServedModel | RemoteModel
REMOTE_MAX_TOKENS = 64_000
REMOTE_CONTEXT_WINDOW = 200_000


def default_models(engines: Mapping[str, Engine]) -> list[ModelConfig]:
    """The local model under its own name, and the guide's Claude ids, all on the default engine."""
    if "default" not in engines:
        raise ValueError(
            "no engine is named default: list the models it serves ([[models]], each naming its engine)"
        )
    local = engines["default"].info.name
    configs = [ModelConfig(id=local, display_name=local)]
    for model_id, display, aliases, max_output in CLAUDE_MODELS:
        name = f"{display} (served by {local})"
        configs.append(
            ModelConfig(id=model_id, aliases=list(aliases), display_name=name, max_output_tokens=max_output)
        )
    return configs


class Catalog:
    def __init__(
        self,
        models: list[ModelConfig],
        engines: Mapping[str, Engine],
        upstreams: Mapping[str, AnthropicUpstream] | None = None,
    ) -> None:
        self.engines = dict(engines)
        self.upstreams = dict(upstreams or {})
        self._models: list[Route] = []
        self._by_name: dict[str, Route] = {}
        for config in models:
            served = self._route(config)
            self._models.append(served)
            for name in (config.id, *config.aliases):
                if name in self._by_name:
                    raise ValueError(f"model id {name!r} is configured twice")
                self._by_name[name] = served

    def _route(self, config: ModelConfig) -> Route:
        """The chain of routes for `config`: its engines in order, each falling back to the next."""
        names = [config.engine] if isinstance(config.engine, str) else list(config.engine)
        if not names:
            raise ValueError(f"model {config.id!r} names no engine")
        route: Route | None = None
        for name in reversed(names):
            if name in self.engines:
                route = ServedModel(config, self.engines[name], route)
            elif name in self.upstreams:
                route = RemoteModel(config, self.upstreams[name], route)
            else:
                raise ValueError(f"model {config.id!r} names unknown engine {name!r}")
        assert route is not None
        return route

    def resolve(self, model_id: str, *, field: str = "model") -> Route:
        try:
            return self._by_name[model_id]
        except KeyError:
            raise NotFoundError(f"{field}: {shown(model_id)}") from None

    def list(self) -> list[Route]:
        return list(self._models)

    def infos(self) -> builtins.list[ModelInfo]:
        """What each model reports (its first healthy route's info), in the configured order."""
        return [available(served).info() for served in self._models]

    def stats(self) -> dict[str, dict[str, int | float]]:
        """Each engine's and upstream's counters, by name."""
        counters = {name: engine.stats() for name, engine in self.engines.items()}
        counters.update({name: upstream.stats() for name, upstream in self.upstreams.items()})
        return counters


def available(route: Route) -> Route:
    """The first healthy route of the chain (the first one if none is: its error says why)."""
    candidate: Route | None = route
    while candidate is not None:
        if candidate.healthy:
            return candidate
        candidate = candidate.fallback
    return route
