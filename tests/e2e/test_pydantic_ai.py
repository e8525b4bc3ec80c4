"""pydantic-ai (pydantic-ai-slim[anthropic], pinned in pyproject.toml) against a real server: an
agent that must call its tool and then return a structured result, and a result through the API's
structured outputs (`NativeOutput`). Structure is asserted, never what the model says."""

from __future__ import annotations

from pydantic import BaseModel
from pydantic_ai import Agent, NativeOutput, RunContext
from pydantic_ai.messages import ModelResponse, ToolCallPart
from pydantic_ai.models.anthropic import AnthropicModel
from pydantic_ai.providers.anthropic import AnthropicProvider
from pydantic_ai.settings import ModelSettings

from tests.conftest import Server


class Weather(BaseModel):
    city: str
    summary: str


def model(server: Server) -> AnthropicModel:
    # base_url as pydantic-ai documents it (or ANTHROPIC_BASE_URL): the server's root, no /v1
    provider = AnthropicProvider(base_url=server.base_url, api_key=server.api_key)
    return AnthropicModel("claude-sonnet-4-6", provider=provider)


def forced_steps(ctx: RunContext[None]) -> ModelSettings:
    """The first step must call the tool, the next must return the result (pydantic-ai's output tool):
    the way pydantic-ai documents forcing a tool on the first step only."""
    tool = "get_weather" if ctx.run_step <= 1 else "final_result"
    return {"max_tokens": 60, "tool_choice": [tool]}


def test_an_agent_calls_its_tool_and_returns_a_structured_result(server: Server) -> None:
    cities: list[str] = []
    agent = Agent(model(server), output_type=Weather, model_settings=forced_steps)

    @agent.tool_plain
    def get_weather(city: str) -> str:
        """Current weather in a city."""
        cities.append(city)
        return "Sunny, 21 °C."

    result = agent.run_sync("What is the weather in Seoul?")
    assert isinstance(result.output, Weather)
    assert len(cities) == 1 and isinstance(cities[0], str)
    calls = [
        part.tool_name
        for message in result.all_messages()
        if isinstance(message, ModelResponse)
        for part in message.parts
        if isinstance(part, ToolCallPart)
    ]
    assert calls == ["get_weather", "final_result"]
    assert result.usage.requests == 2 and result.usage.output_tokens >= 2


def test_native_structured_output(server: Server) -> None:
    agent = Agent(model(server), output_type=NativeOutput(Weather), model_settings={"max_tokens": 60})
    result = agent.run_sync("What is the weather in Seoul?")
    assert isinstance(result.output, Weather)
