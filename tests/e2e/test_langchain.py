"""LangChain's `ChatAnthropic` (langchain-anthropic, pinned in pyproject.toml) against a real server:
invoke, stream, a forced tool call through `bind_tools` and `with_structured_output`. Structure is
asserted, never what the model says."""

from __future__ import annotations

from typing import Literal

import pytest
from langchain_anthropic import ChatAnthropic
from langchain_core.messages import AIMessage, AIMessageChunk
from pydantic import BaseModel, Field

from tests.conftest import Server


class GetWeather(BaseModel):
    """Current weather in a city."""

    # An enum, so that a sampled call ends well within the budget (a free string can run on).
    location: Literal["Seoul", "Busan", "Jeju"] = Field(description="City name")


class Person(BaseModel):
    name: str
    age: int


def chat(server: Server, max_tokens: int) -> ChatAnthropic:
    # base_url as LangChain documents it (or ANTHROPIC_BASE_URL): the server's root, no /v1
    return ChatAnthropic(
        model="claude-sonnet-4-6",
        base_url=server.base_url,
        api_key=server.api_key,
        max_tokens=max_tokens,
        max_retries=0,
        timeout=60,
    )


def test_invoke(server: Server) -> None:
    reply = chat(server, 8).invoke("Say hello.")
    assert isinstance(reply, AIMessage) and isinstance(reply.text, str)
    assert reply.response_metadata["stop_reason"] in {"end_turn", "max_tokens"}
    assert reply.response_metadata["model_name"] == "claude-sonnet-4-6"
    assert reply.usage_metadata is not None and 1 <= reply.usage_metadata["output_tokens"] <= 8
    assert reply.usage_metadata["input_tokens"] >= 1


def test_stream(server: Server) -> None:
    chunks = list(chat(server, 8).stream("Say hello."))
    assert chunks and all(isinstance(chunk, AIMessageChunk) for chunk in chunks)
    whole = chunks[0]
    for chunk in chunks[1:]:
        whole += chunk
    assert isinstance(whole.text, str)
    assert whole.usage_metadata is not None and 1 <= whole.usage_metadata["output_tokens"] <= 8


def test_bind_tools_with_a_forced_tool(server: Server) -> None:
    model = chat(server, 60).bind_tools([GetWeather], tool_choice="GetWeather", parallel_tool_calls=False)
    reply = model.invoke("What is the weather in Seoul?")
    assert isinstance(reply, AIMessage) and len(reply.tool_calls) == 1
    call = reply.tool_calls[0]
    assert call["name"] == "GetWeather" and call["id"] is not None and call["id"].startswith("toolu_")
    GetWeather.model_validate(call["args"])
    assert reply.response_metadata["stop_reason"] == "tool_use"


@pytest.mark.parametrize("method", ["function_calling", "json_schema"])
def test_with_structured_output(server: Server, method: Literal["function_calling", "json_schema"]) -> None:
    person = chat(server, 60).with_structured_output(Person, method=method).invoke("Invent a person.")
    assert isinstance(person, Person)
