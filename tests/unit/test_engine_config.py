"""Engine and model configuration for upstreams and routes: what a config file may say, and what it
may not (refused at start with the field's reason, never at a request)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from sijo.catalog import Catalog, RemoteModel, ServedModel
from sijo.config import EngineConfig, ModelConfig
from sijo.engines.fake import FakeEngine
from sijo.engines.upstream.anthropic import AnthropicSettings, AnthropicUpstream


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"kind": "completions"}, "needs url"),
        ({"url": "http://127.0.0.1:8080"}, "url is for upstream engines"),
        ({"kind": "anthropic", "url": ["http://a", "http://b"]}, "has one url"),
        ({"kind": "completions", "url": "http://x", "dialect": "ollama"}, "dialect"),
    ],
)
def test_engine_configs_that_cannot_work_are_refused(fields: dict[str, Any], reason: str) -> None:
    with pytest.raises(ValidationError, match=reason):
        EngineConfig(**fields)


def test_a_url_or_a_list_of_replicas() -> None:
    assert EngineConfig(kind="completions", url="http://a").urls == ("http://a",)
    assert EngineConfig(kind="completions", url=["http://a", "http://b"]).urls == ("http://a", "http://b")
    assert EngineConfig().urls == ()


async def test_a_model_with_a_list_of_engines_is_a_chain_of_routes() -> None:
    local = FakeEngine()
    claude = AnthropicUpstream(AnthropicSettings(name="claude", url="http://127.0.0.1:9"))
    try:
        catalog = Catalog(
            [ModelConfig(id="claude-sonnet-4-6", engine=["claude", "default"]), ModelConfig(id="local")],
            {"default": local},
            {"claude": claude},
        )
        route = catalog.resolve("claude-sonnet-4-6")
        assert isinstance(route, RemoteModel) and route.upstream is claude
        assert isinstance(route.fallback, ServedModel) and route.fallback.engine is local
        assert route.fallback.fallback is None
        assert isinstance(catalog.resolve("local"), ServedModel)
        assert set(catalog.stats()) == {"default", "claude"}
        with pytest.raises(ValueError, match="unknown engine 'gpu'"):
            Catalog([ModelConfig(id="x", engine=["claude", "gpu"])], {"default": local}, {"claude": claude})
    finally:
        await claude.aclose()
