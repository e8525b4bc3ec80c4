"""Thinking through a real server, the embedded model and the official SDK: blocks, budgets,
signatures, streaming order. The model has no reasoning markup of its own; Sijo prompts it to
think and ends the thinking when the budget runs out.
"""

from __future__ import annotations

import anthropic
import pytest

QUESTION = [{"role": "user", "content": "Please explain briefly why the sky looks blue during the day."}]
LOW = {"effort": "low"}  # adaptive at low effort: 256 thinking tokens at most (the model's default table)


def _think(sdk: anthropic.Anthropic, **extra: object) -> anthropic.types.Message:
    request: dict[str, object] = {"messages": QUESTION, **extra}
    return sdk.messages.create(
        model="claude-opus-4-7",
        max_tokens=400,
        thinking={"type": "adaptive"},
        output_config=LOW,  # type: ignore[arg-type]
        **request,  # type: ignore[arg-type]
    )


def test_thinking_comes_first_within_its_budget(sdk: anthropic.Anthropic) -> None:
    message = _think(sdk)
    thinking = message.content[0]
    assert thinking.type == "thinking" and thinking.thinking and thinking.signature
    assert all(block.type == "text" for block in message.content[1:])
    details = message.usage.output_tokens_details
    assert details is not None and 0 < details.thinking_tokens <= 256
    assert details.thinking_tokens <= message.usage.output_tokens <= 400


def test_enabled_thinking_honours_budget_tokens(sdk: anthropic.Anthropic) -> None:
    message = sdk.messages.create(
        model="claude-sonnet-4-6",
        max_tokens=1100,
        thinking={"type": "enabled", "budget_tokens": 1024},
        messages=QUESTION,  # type: ignore[arg-type]
    )
    assert message.content[0].type == "thinking"
    details = message.usage.output_tokens_details
    assert details is not None and 0 < details.thinking_tokens <= 1024


def test_signed_thinking_round_trips_and_tampering_is_refused(sdk: anthropic.Anthropic) -> None:
    first = _think(sdk)
    follow_up = [
        *QUESTION,
        {"role": "assistant", "content": first.content},
        {"role": "user", "content": "Thanks!"},
    ]
    again = sdk.messages.create(model="claude-opus-4-7", max_tokens=5, messages=follow_up)  # type: ignore[arg-type]
    assert again.stop_reason in {"end_turn", "max_tokens"}
    tampered = first.content[0].model_dump()
    tampered["thinking"] += " (edited)"
    altered = [*QUESTION, {"role": "assistant", "content": [tampered, *first.content[1:]]}, follow_up[-1]]
    with pytest.raises(anthropic.BadRequestError, match="Invalid `signature` in `thinking` block"):
        sdk.messages.create(model="claude-opus-4-7", max_tokens=5, messages=altered)  # type: ignore[arg-type]
    forged = {**first.content[0].model_dump(), "signature": "v1" + "A" * 60}
    with pytest.raises(anthropic.BadRequestError, match="Invalid `signature`"):
        sdk.messages.create(
            model="claude-opus-4-7",
            max_tokens=5,
            messages=[*QUESTION, {"role": "assistant", "content": [forged]}, follow_up[-1]],  # type: ignore[list-item]
        )


def test_omitted_display_keeps_a_signature_that_carries_the_thinking(sdk: anthropic.Anthropic) -> None:
    message = sdk.messages.create(
        model="claude-opus-4-7",
        max_tokens=400,
        thinking={"type": "adaptive", "display": "omitted"},
        output_config=LOW,  # type: ignore[arg-type]
        messages=QUESTION,  # type: ignore[arg-type]
    )
    thinking = message.content[0]
    assert thinking.type == "thinking" and thinking.thinking == "" and thinking.signature
    assert message.usage.output_tokens_details.thinking_tokens > 0  # type: ignore[union-attr]
    # The signature carries the thinking: sent back as redacted_thinking, it is put back in the prompt.
    redacted = {"type": "redacted_thinking", "data": thinking.signature}
    answer = [block for block in message.content[1:]] or [{"type": "text", "text": "."}]
    with_thinking = [*QUESTION, {"role": "assistant", "content": [redacted, *answer]}]
    without = [*QUESTION, {"role": "assistant", "content": answer}]
    counts = [
        sdk.messages.count_tokens(
            model="claude-opus-4-7",
            messages=[*history, {"role": "user", "content": "ok"}],  # type: ignore[list-item]
        ).input_tokens
        for history in (with_thinking, without)
    ]
    assert counts[0] - counts[1] >= message.usage.output_tokens_details.thinking_tokens // 2  # type: ignore[union-attr]


def test_thinking_streams_deltas_then_one_signature(sdk: anthropic.Anthropic) -> None:
    with sdk.messages.stream(
        model="claude-opus-4-7",
        max_tokens=300,
        thinking={"type": "adaptive"},
        output_config=LOW,  # type: ignore[arg-type]
        messages=QUESTION,  # type: ignore[arg-type]
    ) as stream:
        events = [
            (e.type, getattr(getattr(e, "delta", None), "type", None), getattr(e, "index", None))
            for e in stream
        ]
        final = stream.get_final_message()
    first_block = [kind for event, kind, index in events if event == "content_block_delta" and index == 0]
    assert first_block[0] == "thinking_delta" and first_block[-1] == "signature_delta"
    assert first_block.count("signature_delta") == 1
    assert set(first_block[:-1]) == {"thinking_delta"}
    assert final.content[0].type == "thinking" and final.content[0].signature


def test_count_tokens_counts_the_thinking_setup(sdk: anthropic.Anthropic) -> None:
    thinking = {"type": "adaptive"}
    counted = sdk.messages.count_tokens(
        model="claude-opus-4-7",
        messages=QUESTION,
        thinking=thinking,
        output_config=LOW,  # type: ignore[arg-type]
    )
    plain = sdk.messages.count_tokens(model="claude-opus-4-7", messages=QUESTION)  # type: ignore[arg-type]
    message = _think(sdk)
    assert counted.input_tokens == message.usage.input_tokens > plain.input_tokens


def test_forced_tool_choice_with_thinking_is_refused(sdk: anthropic.Anthropic) -> None:
    tool = {"name": "noop", "input_schema": {"type": "object"}}
    with pytest.raises(anthropic.BadRequestError, match="Thinking may not be enabled"):
        _think(sdk, tools=[tool], tool_choice={"type": "any"})


def test_thinking_interleaves_with_a_tool_loop(sdk: anthropic.Anthropic) -> None:
    """Thinking, a tool call, its result sent back with the signed thinking, and thinking again
    before the next answer: each turn of a tool loop thinks first."""
    tool = {
        "name": "get_weather",
        "description": "Get the current weather for a city.",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    }
    ask = [{"role": "user", "content": "What's the weather in Seoul right now, and do I need an umbrella?"}]
    first = _think(sdk, tools=[tool], messages=ask)
    assert first.content[0].type == "thinking"
    assert {block.type for block in first.content[1:]} <= {"text", "tool_use"}
    # Whether or not the small model chose to call, the loop carries its signed thinking forward.
    call = {"type": "tool_use", "id": "toolu_01A", "name": "get_weather", "input": {"city": "Seoul"}}
    turn = [block.model_dump() for block in first.content if block.type == "thinking"] + [call]
    result = {"type": "tool_result", "tool_use_id": "toolu_01A", "content": "Sunny, 21°C, no rain expected in Seoul today."}
    second = _think(
        sdk, tools=[tool], messages=[*ask, {"role": "assistant", "content": turn}, {"role": "user", "content": [result]}]
    )
    assert second.content[0].type == "thinking" and second.content[0].signature
    assert second.content[0].signature != first.content[0].signature
