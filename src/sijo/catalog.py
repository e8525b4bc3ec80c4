"""The model catalogue: which ids (and aliases) are served, by which engine, and what each can do.

`ModelInfo.capabilities` tells the truth about what works today: text, tools, structured outputs,
thinking, effort, context editing (not compaction), batches, PDFs and citations on every model, and
images on a model whose engine has a projector; not yet server tools.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sijo.config import CLAUDE_MODELS, ModelConfig
from sijo.engines.base import Engine
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
    config: ModelConfig
    engine: Engine

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


def default_models(engines: Mapping[str, Engine]) -> list[ModelConfig]:
    """The local model under its own name, and the guide's Claude ids, all on the default engine."""
    local = engines["default"].info.name
    configs = [ModelConfig(id=local, display_name=local)]
    for model_id, display, aliases, max_output in CLAUDE_MODELS:
        name = f"{display} (served by {local})"
        configs.append(
            ModelConfig(id=model_id, aliases=list(aliases), display_name=name, max_output_tokens=max_output)
        )
    return configs


class Catalog:
    def __init__(self, models: list[ModelConfig], engines: Mapping[str, Engine]) -> None:
        self.engines = dict(engines)
        self._models: list[ServedModel] = []
        self._by_name: dict[str, ServedModel] = {}
        for config in models:
            if config.engine not in engines:
                raise ValueError(f"model {config.id!r} names unknown engine {config.engine!r}")
            served = ServedModel(config, engines[config.engine])
            self._models.append(served)
            for name in (config.id, *config.aliases):
                if name in self._by_name:
                    raise ValueError(f"model id {name!r} is configured twice")
                self._by_name[name] = served

    def resolve(self, model_id: str, *, field: str = "model") -> ServedModel:
        try:
            return self._by_name[model_id]
        except KeyError:
            raise NotFoundError(f"{field}: {shown(model_id)}") from None

    def list(self) -> list[ServedModel]:
        return list(self._models)
