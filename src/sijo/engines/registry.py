"""Building the configured engines by kind: llama.cpp here, upstream engine servers, Messages APIs."""

from __future__ import annotations

import os

from sijo.config import EngineConfig, Settings
from sijo.engines.base import Engine
from sijo.engines.upstream.anthropic import AnthropicSettings, AnthropicUpstream
from sijo.engines.upstream.completions import CompletionsEngine, UpstreamSettings


async def load_engines(settings: Settings) -> tuple[dict[str, Engine], dict[str, AnthropicUpstream]]:
    """The configured engines: token engines (here or upstream engine servers) and Messages API
    upstreams."""
    engines: dict[str, Engine] = {}
    upstreams: dict[str, AnthropicUpstream] = {}
    for name, config in settings.engines.items():
        if config.kind == "anthropic":
            upstreams[name] = AnthropicUpstream(anthropic_settings(name, config))
        elif config.kind == "completions":
            engines[name] = await CompletionsEngine.connect(upstream_settings(name, config))
        else:
            from sijo.engines.llama_cpp import LlamaCppEngine  # heavy: only when serving for real

            engines[name] = LlamaCppEngine.load(config)
    return engines, upstreams


def upstream_settings(name: str, config: EngineConfig) -> UpstreamSettings:
    return UpstreamSettings(
        name=name,
        urls=config.urls,
        dialect=config.dialect,
        model=config.upstream_model,
        api_key=os.environ.get(config.api_key_env) if config.api_key_env else None,
        chat_template=config.chat_template.read_text() if config.chat_template is not None else None,
        context_window=config.context_window,
        bos_token=config.bos_token,
        eos_token=config.eos_token,
        max_in_flight=config.slots + config.max_queue,
        timeout=config.timeout,
        connect_timeout=config.connect_timeout,
        health_interval=config.health_interval,
    )


def anthropic_settings(name: str, config: EngineConfig) -> AnthropicSettings:
    key_env = config.api_key_env or "ANTHROPIC_API_KEY"
    if config.api_key_env is not None and key_env not in os.environ:
        raise ValueError(f"engine {name}: api_key_env names {key_env}, which is not set")
    return AnthropicSettings(
        name=name,
        url=config.urls[0] if config.urls else "https://api.anthropic.com",
        api_key=os.environ.get(key_env),
        model=config.upstream_model,
        timeout=config.timeout,
        connect_timeout=config.connect_timeout,
        health_interval=config.health_interval,
    )
