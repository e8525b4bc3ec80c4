"""A model's `force_tool_use`: under tool_choice auto, a fresh user turn must call a tool and the reply
to tool results must answer in text; an explicit tool_choice is never overridden."""

from __future__ import annotations

from typing import Any

from sijo.config import DEFAULT_THINKING_BUDGETS
from sijo.protocol.params import MessageCreateParams
from sijo.reply_plan import ReplyPlan, custom_tools, plan_reply

WEATHER = {
    "name": "get_weather",
    "description": "Current weather in a city.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
ASK: list[dict[str, Any]] = [{"role": "user", "content": "Weather in Seoul?"}]
CALL = {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Seoul"}}
ANSWERED: list[dict[str, Any]] = [
    *ASK,
    {"role": "assistant", "content": [CALL]},
    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01", "content": "Sunny."}]},
]


def plan(messages: list[dict[str, Any]], force: bool, **body: Any) -> ReplyPlan:
    params = MessageCreateParams.model_validate(
        {"model": "m", "max_tokens": 2048, "tools": [WEATHER], "messages": messages, **body}
    )
    return plan_reply(
        params,
        custom_tools(params),
        budgets=DEFAULT_THINKING_BUDGETS,
        last_user_text="Weather in Seoul?",
        has_prefill=False,
        force_tool_use=force,
    )


def test_a_fresh_turn_must_call_as_under_any() -> None:
    forced_like_any = plan(ASK, False, tool_choice={"type": "any"})
    assert plan(ASK, True).grammar == forced_like_any.grammar
    assert plan(ASK, True, tool_choice={"type": "auto"}).grammar == forced_like_any.grammar
    assert plan(ASK, False).grammar != forced_like_any.grammar  # off: auto stays auto
    one = plan(ASK, False, tool_choice={"type": "any", "disable_parallel_tool_use": True})
    auto_one = plan(ASK, True, tool_choice={"type": "auto", "disable_parallel_tool_use": True})
    assert auto_one.grammar == one.grammar


def test_the_reply_to_tool_results_answers_in_text() -> None:
    answered = plan(ANSWERED, True)
    assert not answered.calls and answered.grammar is None
    assert plan(ANSWERED, False).calls  # off: the model may call again


def test_an_explicit_choice_is_kept() -> None:
    assert plan(ASK, True, tool_choice={"type": "none"}) == plan(ASK, False, tool_choice={"type": "none"})
    named = {"type": "tool", "name": "get_weather"}
    assert plan(ANSWERED, True, tool_choice=named) == plan(ANSWERED, False, tool_choice=named)


def test_thinking_may_come_first() -> None:
    """Claude Code thinks on every turn: the forced call follows the thinking, without the 400 an
    explicit forced tool_choice with thinking gets."""
    thought = plan(ASK, True, thinking={"type": "enabled", "budget_tokens": 1024})
    assert thought.thinking is not None and thought.grammar == plan(ASK, True).grammar
