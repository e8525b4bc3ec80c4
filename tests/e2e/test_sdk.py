"""The official Python SDK against a real `sijo serve` with the embedded model.

Assertions are about structure and invariants, never about what a 135M model says.
"""

from __future__ import annotations

import anthropic
import pytest

HELLO = [{"role": "user", "content": "안녕하세요!"}]
STORY = [{"role": "user", "content": "Write a long story about a dragon."}]


def test_create_returns_a_complete_message(sdk: anthropic.Anthropic) -> None:
    message = sdk.messages.create(model="claude-sonnet-4-6", max_tokens=8, messages=HELLO)
    assert message.id.startswith("msg_") and message.type == "message" and message.role == "assistant"
    assert message.model == "claude-sonnet-4-6"
    assert message.stop_reason in {"end_turn", "max_tokens"}
    assert 1 <= message.usage.output_tokens <= 8
    assert message.usage.cache_creation_input_tokens == 0 and message.usage.cache_read_input_tokens == 0
    assert message.usage.service_tier == "standard"
    assert all(block.type == "text" and block.text for block in message.content)
    raw = sdk.messages.with_raw_response.create(model="claude-opus-4-7", max_tokens=1, messages=HELLO)
    assert raw.headers["request-id"].startswith("req_")


def test_usage_input_tokens_equal_count_tokens(sdk: anthropic.Anthropic) -> None:
    params = {"model": "claude-haiku-4-5", "messages": HELLO, "system": "Be brief."}
    counted = sdk.messages.count_tokens(**params)  # type: ignore[arg-type]
    message = sdk.messages.create(max_tokens=1, **params)  # type: ignore[arg-type]
    assert counted.input_tokens == message.usage.input_tokens > 0


def test_text_stream_matches_the_final_message(sdk: anthropic.Anthropic) -> None:
    with sdk.messages.stream(model="claude-sonnet-4-6", max_tokens=16, messages=STORY) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert pieces and "".join(pieces) == final.content[0].text  # type: ignore[union-attr]
    assert final.usage.output_tokens <= 16 and final.stop_reason in {"end_turn", "max_tokens"}


def test_stream_events_arrive_in_protocol_order(sdk: anthropic.Anthropic) -> None:
    with sdk.messages.stream(model="claude-sonnet-4-6", max_tokens=8, messages=HELLO) as stream:
        types = [event.type for event in stream]
    assert types[0] == "message_start" and types[-1] == "message_stop"
    assert types[-2] == "message_delta"
    if "content_block_start" in types:
        start, stop = types.index("content_block_start"), types.index("content_block_stop")
        assert start < stop and set(types[start + 1 : stop]) <= {"content_block_delta", "text"}


def test_korean_and_emoji_stream_whole_characters(sdk: anthropic.Anthropic) -> None:
    # Two greedy runs of one prompt may part ways at a near-tie (llama.cpp's kernels are not
    # batch-invariant, and a reused prefix is computed in a different batch), so the stream is
    # checked against its own final message, and both paths for broken characters.
    messages = [{"role": "user", "content": "한국어로 짧은 시를 써 주세요. 🌸 中文也可以。"}]
    created = sdk.messages.create(
        model="claude-sonnet-4-6", max_tokens=24, messages=messages, extra_body={"temperature": 0}
    )
    with sdk.messages.stream(
        model="claude-sonnet-4-6", max_tokens=24, messages=messages, extra_body={"temperature": 0}
    ) as stream:
        deltas = list(stream.text_stream)
        final = stream.get_final_message()
    assert "".join(deltas) == final.content[0].text  # type: ignore[union-attr]
    assert not any("\ufffd" in delta for delta in deltas[:-1]), deltas
    assert "\ufffd" not in created.content[0].text[:-1]  # type: ignore[union-attr]


def test_stop_sequence_is_reported_and_excluded(sdk: anthropic.Anthropic) -> None:
    greedy = {"temperature": 0}
    first = sdk.messages.create(model="claude-sonnet-4-6", max_tokens=12, messages=STORY, extra_body=greedy)
    text = first.content[0].text  # type: ignore[union-attr]
    words = text.split()
    assert len(words) >= 3, text
    stop = " " + words[2]
    second = sdk.messages.create(
        model="claude-sonnet-4-6",
        max_tokens=12,
        messages=STORY,
        stop_sequences=[stop],
        extra_body=greedy,
    )
    assert second.stop_reason == "stop_sequence" and second.stop_sequence == stop
    assert second.content[0].text == text[: text.index(stop)]  # type: ignore[union-attr]


def test_max_tokens_zero_generates_nothing(sdk: anthropic.Anthropic) -> None:
    message = sdk.messages.create(model="claude-sonnet-4-6", max_tokens=0, messages=HELLO)
    assert message.content == [] and message.stop_reason == "max_tokens"
    assert message.usage.output_tokens == 0 and message.usage.input_tokens > 0


def test_prefill_is_continued_not_repeated(sdk: anthropic.Anthropic) -> None:
    messages = [*STORY, {"role": "assistant", "content": "Once upon a time"}]
    counted = sdk.messages.count_tokens(model="claude-sonnet-4-6", messages=messages)  # type: ignore[arg-type]
    message = sdk.messages.create(model="claude-sonnet-4-6", max_tokens=6, messages=messages)  # type: ignore[arg-type]
    assert message.usage.input_tokens == counted.input_tokens
    assert message.stop_reason in {"end_turn", "max_tokens"}


def test_models_list_and_retrieve(sdk: anthropic.Anthropic) -> None:
    ids = [model.id for model in sdk.models.list()]
    assert {"claude-opus-4-7", "claude-sonnet-4-6", "claude-haiku-4-5-20251001"} <= set(ids)
    alias = sdk.models.retrieve("claude-haiku-4-5")
    assert alias.id == "claude-haiku-4-5-20251001" and alias.type == "model"
    # the window is the local model's; max_tokens is Haiku 4.5's own limit (a longer reply stops at the window)
    assert alias.max_input_tokens == 8192 and alias.max_tokens == 64_000
    local = sdk.models.retrieve("smollm2-135m-instruct")
    assert local.max_input_tokens == local.max_tokens == 8192
    page = sdk.models.list(limit=2)
    assert len(page.data) == 2 and page.has_more and page.last_id == page.data[1].id


@pytest.mark.parametrize(
    ("kwargs", "error", "fragment"),
    [
        ({"model": "no-such-model"}, anthropic.NotFoundError, "model: no-such-model"),
        ({"messages": []}, anthropic.BadRequestError, "messages: at least one message"),
        (
            {"model": "smollm2-135m-instruct", "max_tokens": 20_000},
            anthropic.BadRequestError,
            "max_tokens: 20000 > 8192",
        ),
        ({"extra_body": {"temperature": 3}}, anthropic.BadRequestError, "temperature:"),
        (
            {"tools": [{"type": "memory_20250818", "name": "memory"}]},
            anthropic.BadRequestError,
            "tools.0.type: 'memory_20250818' tools are not supported",
        ),
        (
            {"messages": [{"role": "user", "content": "word " * 9000}]},
            anthropic.BadRequestError,
            "prompt is too long",
        ),
    ],
)
def test_bad_requests_raise_the_sdk_error_class(
    sdk: anthropic.Anthropic, kwargs: dict[str, object], error: type[Exception], fragment: str
) -> None:
    params: dict[str, object] = {
        "model": "claude-sonnet-4-6",
        "max_tokens": 4,
        "messages": HELLO,
        **kwargs,
    }
    with pytest.raises(error) as info:
        sdk.messages.create(**params)  # type: ignore[call-overload]
    assert isinstance(info.value, anthropic.APIStatusError)
    assert fragment in info.value.message
    assert info.value.body["request_id"].startswith("req_")  # type: ignore[index]


def test_request_over_32mb_is_413(sdk: anthropic.Anthropic) -> None:
    huge = [{"role": "user", "content": "x" * (33 * 1024 * 1024)}]
    with pytest.raises(anthropic.RequestTooLargeError):
        sdk.messages.create(model="claude-sonnet-4-6", max_tokens=1, messages=huge)  # type: ignore[arg-type]
