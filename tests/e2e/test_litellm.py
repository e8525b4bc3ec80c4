"""LiteLLM as a client (pinned in pyproject.toml) against a real server: `litellm.completion` with the
`anthropic/` provider, non-streaming and streaming, and the 404 a user gets who puts `/v1` in
api_base. Structure is asserted, never what the model says."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from types import ModuleType

import pytest

from tests.conftest import Server

# LiteLLM's own types trip a pydantic warning (its bug, not Sijo's); the suite turns warnings into errors.
pytestmark = pytest.mark.filterwarnings("ignore:Item .* is using the `ReadOnly` qualifier:UserWarning")
MESSAGES = [{"role": "user", "content": "Say hello."}]


@pytest.fixture(scope="module")
def litellm() -> Iterator[ModuleType]:
    """LiteLLM fetches its model price list from GitHub on import unless told not to: the suite
    runs offline."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        patch.setenv("LITELLM_OFFLINE_MODE", "true")
        module = importlib.import_module("litellm")
        module.suppress_debug_info = True
        yield module


def test_completion(litellm: ModuleType, server: Server) -> None:
    # api_base as LiteLLM documents it for Anthropic: the server's root (LiteLLM adds /v1/messages)
    reply = litellm.completion(
        model="anthropic/claude-sonnet-4-6",
        api_base=server.base_url,
        api_key=server.api_key,
        messages=MESSAGES,
        max_tokens=8,
    )
    choice = reply.choices[0]
    assert choice.finish_reason in {"stop", "length"} and isinstance(choice.message.content, str)
    assert choice.message.role == "assistant" and reply.model == "claude-sonnet-4-6"
    assert 1 <= reply.usage.completion_tokens <= 8 and reply.usage.prompt_tokens >= 1


def test_streaming_completion(litellm: ModuleType, server: Server) -> None:
    chunks = list(
        litellm.completion(
            model="anthropic/claude-sonnet-4-6",
            api_base=server.base_url,
            api_key=server.api_key,
            messages=MESSAGES,
            max_tokens=8,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    finishes = [chunk.choices[0].finish_reason for chunk in chunks if chunk.choices]
    assert [reason for reason in finishes if reason] in (["stop"], ["length"])
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert isinstance(text, str)
    usage = chunks[-1].usage
    assert 1 <= usage.completion_tokens <= 8 and usage.prompt_tokens >= 1


def test_a_doubled_v1_is_a_404_naming_the_path(litellm: ModuleType, server: Server) -> None:
    with pytest.raises(litellm.NotFoundError) as raised:
        litellm.completion(
            model="anthropic/claude-sonnet-4-6",
            api_base=f"{server.base_url}/v1",
            api_key=server.api_key,
            messages=MESSAGES,
            max_tokens=8,
        )
    assert "not_found_error" in str(raised.value) and "/v1/v1/messages" in str(raised.value)
