"""Context editing on tiny conversations: which thinking and tool results each edit clears, its
trigger, `keep`, `exclude_tools`, `clear_tool_inputs`, `clear_at_least`, and the API's rules."""

from __future__ import annotations

import json
from typing import Any

import pydantic
import pytest

from sijo.errors import InvalidRequestError
from sijo.prompt.context_edits import (
    CLEARED_TOOL_RESULT,
    apply_edits,
    checked_edits,
    clear_thinking,
    clear_tool_uses,
)
from sijo.protocol.context_management import (
    ClearThinkingApplied,
    ClearThinkingEdit,
    ClearToolUsesApplied,
    ClearToolUsesEdit,
    ContextManagementConfig,
)
from sijo.protocol.params import MessageParam


def messages(*raw: dict[str, Any]) -> list[MessageParam]:
    return [MessageParam.model_validate(message) for message in raw]


def thinking_edit(**fields: Any) -> ClearThinkingEdit:
    return ClearThinkingEdit.model_validate({"type": "clear_thinking_20251015", **fields})


def tools_edit(**fields: Any) -> ClearToolUsesEdit:
    return ClearToolUsesEdit.model_validate({"type": "clear_tool_uses_20250919", **fields})


def thought(text: str) -> dict[str, Any]:
    return {"type": "thinking", "thinking": text, "signature": f"sig-{text}"}


def thinking_turns(count: int) -> list[MessageParam]:
    """`count` question-and-answer rounds, each answer opening with its thinking."""
    raw: list[dict[str, Any]] = []
    for i in range(count):
        raw.append({"role": "user", "content": f"question {i}"})
        raw.append({"role": "assistant", "content": [thought(f"t{i}"), {"type": "text", "text": f"a{i}"}]})
    raw.append({"role": "user", "content": "last question"})
    return messages(*raw)


def tool_loop(*names: str, result: str = "result") -> list[MessageParam]:
    """One user question, then a call of each tool in `names` answered with `result`."""
    raw: list[dict[str, Any]] = [{"role": "user", "content": "go"}]
    for i, name in enumerate(names):
        raw.append(
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": f"toolu_{i}", "name": name, "input": {"n": i}}],
            }
        )
        raw.append(
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": f"toolu_{i}", "content": f"{result} {i}"}],
            }
        )
    return messages(*raw)


def kinds(conversation: list[MessageParam]) -> list[list[str]]:
    return [
        [block.type for block in m.content] if not isinstance(m.content, str) else ["str"]
        for m in conversation
    ]


def results(conversation: list[MessageParam]) -> list[Any]:
    return [
        block.content
        for message in conversation
        if not isinstance(message.content, str)
        for block in message.content
        if block.type == "tool_result"
    ]


def inputs(conversation: list[MessageParam]) -> list[Any]:
    return [
        block.input
        for message in conversation
        if not isinstance(message.content, str)
        for block in message.content
        if block.type == "tool_use"
    ]


def test_clear_thinking_keeps_only_the_last_turns_thinking_by_default() -> None:
    conversation = thinking_turns(3)
    clearing = clear_thinking(conversation, thinking_edit())
    assert clearing.cleared == 2
    assert kinds(clearing.messages) == [
        ["str"],
        ["text"],
        ["str"],
        ["text"],
        ["str"],
        ["thinking", "text"],
        ["str"],
    ]
    assert kinds(conversation)[1] == ["thinking", "text"]  # the request's own messages are left as they were


@pytest.mark.parametrize("keep", ["all", {"type": "all"}])
def test_clear_thinking_keep_all_clears_nothing(keep: Any) -> None:
    conversation = thinking_turns(3)
    clearing = clear_thinking(conversation, thinking_edit(keep=keep))
    assert clearing.cleared == 0 and clearing.messages == conversation


def test_clear_thinking_keeps_the_last_n_thinking_turns() -> None:
    clearing = clear_thinking(thinking_turns(4), thinking_edit(keep={"type": "thinking_turns", "value": 2}))
    assert clearing.cleared == 2
    assert [k for k in kinds(clearing.messages) if k != ["str"]] == [
        ["text"],
        ["text"],
        ["thinking", "text"],
        ["thinking", "text"],
    ]


def test_clear_thinking_counts_only_turns_with_thinking_and_drops_a_turn_of_only_thinking() -> None:
    conversation = messages(
        {"role": "user", "content": "q0"},
        {"role": "assistant", "content": [thought("only")]},
        {"role": "user", "content": "q1"},
        {"role": "assistant", "content": "no thinking here"},
        {"role": "user", "content": "q2"},
        {
            "role": "assistant",
            "content": [{"type": "redacted_thinking", "data": "x"}, {"type": "text", "text": "a"}],
        },
        {"role": "user", "content": "q3"},
    )
    clearing = clear_thinking(conversation, thinking_edit())
    assert clearing.cleared == 1
    assert kinds(clearing.messages) == [
        ["str"],
        ["str"],
        ["str"],
        ["str"],
        ["redacted_thinking", "text"],
        ["str"],
    ]


def test_clear_tool_uses_waits_for_its_trigger() -> None:
    conversation = tool_loop("a", "b", "c", "d", "e")
    edit = tools_edit(trigger={"type": "input_tokens", "value": 500})
    assert clear_tool_uses(conversation, edit, 500).cleared == 0
    assert clear_tool_uses(conversation, edit, 501).cleared == 2
    assert clear_tool_uses(conversation, tools_edit(), 100_000).cleared == 0  # the default: 100,000
    assert clear_tool_uses(conversation, tools_edit(), 100_001).cleared == 2


def test_clear_tool_uses_clears_the_oldest_results_and_keeps_three_by_default() -> None:
    clearing = clear_tool_uses(tool_loop("a", "b", "c", "d", "e"), tools_edit(), 200_000)
    assert clearing.cleared == 2
    assert results(clearing.messages) == [
        CLEARED_TOOL_RESULT,
        CLEARED_TOOL_RESULT,
        "result 2",
        "result 3",
        "result 4",
    ]
    assert inputs(clearing.messages) == [{"n": 0}, {"n": 1}, {"n": 2}, {"n": 3}, {"n": 4}]  # calls stay whole


def test_clear_tool_uses_trigger_by_tool_uses_and_keep() -> None:
    conversation = tool_loop("a", "b", "c", "d")
    edit = tools_edit(trigger={"type": "tool_uses", "value": 4}, keep={"type": "tool_uses", "value": 1})
    assert clear_tool_uses(conversation, edit, 0).cleared == 0  # four uses do not exceed four
    more = tool_loop("a", "b", "c", "d", "e")
    clearing = clear_tool_uses(more, edit, 0)
    assert clearing.cleared == 4
    assert results(clearing.messages)[-1] == "result 4"
    everything = tools_edit(trigger={"type": "tool_uses", "value": 1}, keep={"type": "tool_uses", "value": 0})
    assert results(clear_tool_uses(more, everything, 0).messages) == [CLEARED_TOOL_RESULT] * 5


def test_excluded_tools_keep_their_results_and_keep_counts_every_use() -> None:
    conversation = tool_loop("memory", "read", "memory", "read", "read")
    edit = tools_edit(keep={"type": "tool_uses", "value": 2}, exclude_tools=["memory"])
    clearing = clear_tool_uses(conversation, edit, 200_000)
    assert clearing.cleared == 1  # of the three oldest, only the `read` one
    assert results(clearing.messages) == ["result 0", CLEARED_TOOL_RESULT, "result 2", "result 3", "result 4"]


@pytest.mark.parametrize(
    ("clear_tool_inputs", "expected"),
    [
        (True, [{}, {}, {"n": 2}, {"n": 3}, {"n": 4}]),
        (["bash"], [{}, {"n": 1}, {"n": 2}, {"n": 3}, {"n": 4}]),
        (False, [{"n": 0}, {"n": 1}, {"n": 2}, {"n": 3}, {"n": 4}]),
    ],
)
def test_clear_tool_inputs_clears_the_inputs_of_cleared_uses(
    clear_tool_inputs: Any, expected: list[Any]
) -> None:
    conversation = tool_loop("bash", "read", "bash", "read", "bash")
    clearing = clear_tool_uses(conversation, tools_edit(clear_tool_inputs=clear_tool_inputs), 200_000)
    assert inputs(clearing.messages) == expected
    assert results(clearing.messages)[:2] == [CLEARED_TOOL_RESULT] * 2


def test_a_result_is_cleared_only_in_the_message_after_its_call() -> None:
    """Tool use ids need only be unique within a message: a repeated id later on is another use."""
    conversation = tool_loop("a", "b", "c", "d")
    raw = [m.model_dump(exclude_none=True) for m in conversation]
    for message in raw[3:]:  # every later use and result reuses toolu_0
        for block in message["content"]:
            block["id" if block["type"] == "tool_use" else "tool_use_id"] = "toolu_0"
    clearing = clear_tool_uses(messages(*raw), tools_edit(), 200_000)
    assert results(clearing.messages) == [CLEARED_TOOL_RESULT, "result 1", "result 2", "result 3"]


def tokens_of(conversation: list[MessageParam]) -> int:
    """A stand-in for the model's tokenizer: one token per character of the JSON."""
    return len(json.dumps([m.model_dump(mode="json") for m in conversation]))


async def render(conversation: list[MessageParam]) -> list[MessageParam]:
    return conversation


async def test_apply_edits_reports_what_each_edit_freed_and_returns_the_edited_prompt() -> None:
    raw = [m.model_dump(exclude_none=True) for m in tool_loop("a", "b", "c", "d", "e", result="x" * 300)]
    raw[1]["content"].insert(0, thought("old"))
    raw[-2]["content"].insert(0, thought("new"))
    conversation = messages(*raw)
    edits = [thinking_edit(), tools_edit(trigger={"type": "input_tokens", "value": 1000})]
    edited = await apply_edits(conversation, edits, render=render, size=tokens_of)
    assert edited.original_tokens == tokens_of(conversation)
    after_thinking = clear_thinking(conversation, edits[0]).messages
    assert edited.applied == [
        ClearThinkingApplied(
            cleared_thinking_turns=1, cleared_input_tokens=tokens_of(conversation) - tokens_of(after_thinking)
        ),
        ClearToolUsesApplied(
            cleared_tool_uses=2, cleared_input_tokens=tokens_of(after_thinking) - tokens_of(edited.rendered)
        ),
    ]
    assert results(edited.rendered)[:2] == [CLEARED_TOOL_RESULT] * 2 and kinds(edited.rendered)[1] == [
        "tool_use"
    ]


async def test_apply_edits_reads_the_trigger_after_the_edits_before() -> None:
    raw = [m.model_dump(exclude_none=True) for m in tool_loop("a", "b", "c", "d")]
    raw[1]["content"].insert(0, thought("x" * 2000))
    raw[-2]["content"].insert(0, thought("y"))
    conversation = messages(*raw)
    trigger = tokens_of(conversation) - 100  # exceeded before thinking is cleared, not after
    edits = [thinking_edit(), tools_edit(trigger={"type": "input_tokens", "value": trigger})]
    edited = await apply_edits(conversation, edits, render=render, size=tokens_of)
    assert [edit.type for edit in edited.applied] == ["clear_thinking_20251015"]


async def test_clear_at_least_leaves_everything_when_the_clearing_frees_too_little() -> None:
    conversation = tool_loop("a", "b", "c", "d", "e", result="x" * 300)
    freed = tokens_of(conversation) - tokens_of(clear_tool_uses(conversation, tools_edit(), 10**6).messages)
    low = {"trigger": {"type": "input_tokens", "value": 1}}
    enough = tools_edit(**low, clear_at_least={"type": "input_tokens", "value": freed})
    too_much = tools_edit(**low, clear_at_least={"type": "input_tokens", "value": freed + 1})
    applied = await apply_edits(conversation, [enough], render=render, size=tokens_of)
    assert applied.applied == [ClearToolUsesApplied(cleared_tool_uses=2, cleared_input_tokens=freed)]
    untouched = await apply_edits(conversation, [too_much], render=render, size=tokens_of)
    assert untouched.applied == [] and untouched.rendered == conversation


async def test_no_edit_that_clears_nothing_is_reported() -> None:
    conversation = thinking_turns(2)
    edited = await apply_edits(
        conversation, [thinking_edit(keep="all"), tools_edit()], render=render, size=tokens_of
    )
    assert edited.applied == [] and edited.rendered is conversation
    assert edited.original_tokens == tokens_of(conversation)


def config(*edits: dict[str, Any]) -> ContextManagementConfig:
    return ContextManagementConfig.model_validate({"edits": list(edits)})


def test_checked_edits_follows_the_apis_rules() -> None:
    thinking = {"type": "clear_thinking_20251015"}
    tools = {"type": "clear_tool_uses_20250919"}
    assert len(checked_edits(config(thinking, tools), thinking=True)) == 2
    assert checked_edits(config(), thinking=False) == []
    with pytest.raises(InvalidRequestError, match="`clear_thinking_20251015` must be the first strategy"):
        checked_edits(config(tools, thinking), thinking=True)
    with pytest.raises(InvalidRequestError, match="requires `thinking` to be enabled or adaptive"):
        checked_edits(config(thinking), thinking=False)
    with pytest.raises(InvalidRequestError, match=r"edits\.1\.type: the `compact_20260112` strategy"):
        checked_edits(
            config(tools, {"type": "compact_20260112", "trigger": {"type": "input_tokens", "value": 1}}),
            thinking=False,
        )


@pytest.mark.parametrize(
    "edit",
    [
        {"type": "clear_tool_uses_20250919", "trigger": {"type": "input_tokens", "value": 0}},
        {"type": "clear_tool_uses_20250919", "keep": {"type": "tool_uses", "value": -1}},
        {"type": "clear_tool_uses_20250919", "keep": {"type": "input_tokens", "value": 3}},
        {"type": "clear_tool_uses_20250919", "surprise": True},
        {"type": "clear_thinking_20251015", "keep": {"type": "thinking_turns", "value": 0}},
        {"type": "clear_thinking_20251015", "keep": "some"},
        {"type": "clear_everything_20990101"},
    ],
)
def test_edits_outside_the_apis_shapes_are_invalid(edit: dict[str, Any]) -> None:
    with pytest.raises(pydantic.ValidationError):
        config(edit)
