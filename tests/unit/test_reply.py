"""The reply parser (markup → blocks), the thinking stream and thinking signatures."""

from __future__ import annotations

import jiter
import pytest

from sijo.output.accumulate import Accumulator
from sijo.output.assembler import MessageAssembler
from sijo.output.reply import ReplyParser, ThinkingStream
from sijo.prompt import markup
from sijo.protocol.events import (
    ContentBlockDeltaEvent,
    ContentBlockStartEvent,
    ContentBlockStopEvent,
    InputJsonDelta,
    StreamEvent,
    TextDelta,
)
from sijo.protocol.message import ToolUseBlock, Usage
from sijo.signing import BadSignatureError, ThinkingSigner

REPLY = (
    "Let me check.\n<tool_call>\n"
    '{"name": "get_weather", "arguments": {"location": "Seoul", "unit": "celsius"}}\n</tool_call>\n'
    '<tool_call>\n{"name": "calculate", "arguments": {"expression": "2+2"}}\n</tool_call>'
)


def _fold(pieces: list[str], *, calls: bool = True) -> tuple[Accumulator, ReplyParser]:
    assembler = MessageAssembler(message_id="msg_x", model="m", usage=Usage(input_tokens=1, output_tokens=0))
    parser = ReplyParser(assembler, calls=calls)
    accumulator = Accumulator()
    events = assembler.start()
    for piece in pieces:
        events += parser.feed(piece)
    events += parser.flush() + assembler.finish("tool_use", None, 10)
    for event in events:
        accumulator.apply(event)
    return accumulator, parser


@pytest.mark.parametrize("size", [1, 2, 3, 7, len(REPLY)])
def test_text_and_parallel_calls_whatever_the_chunking(size: int) -> None:
    accumulator, parser = _fold([REPLY[i : i + size] for i in range(0, len(REPLY), size)])
    message = accumulator.message
    assert message is not None and parser.tool_calls == 2
    text, weather, calc = message.content
    assert text.type == "text" and text.text == "Let me check."
    assert weather.type == "tool_use" and weather.name == "get_weather"
    assert weather.input == {"location": "Seoul", "unit": "celsius"} and weather.id.startswith("toolu_")
    assert calc.type == "tool_use" and calc.input == {"expression": "2+2"} and calc.id != weather.id


def test_a_reply_that_is_only_a_call_has_no_text_block() -> None:
    accumulator, _ = _fold(["\n\n", REPLY[REPLY.index("<tool_call>") :]])
    assert accumulator.message is not None
    assert [block.type for block in accumulator.message.content] == ["tool_use", "tool_use"]


def test_a_call_cut_short_keeps_what_was_generated() -> None:
    cut = REPLY[: REPLY.index('"unit"') + 3]
    accumulator, _ = _fold([cut])
    assert accumulator.message is not None
    assert accumulator.message.content[1].input == {"location": "Seoul"}  # type: ignore[union-attr]


def test_without_calls_markup_is_just_text() -> None:
    accumulator, parser = _fold([REPLY], calls=False)
    assert accumulator.message is not None and parser.tool_calls == 0
    assert [b.type for b in accumulator.message.content] == ["text"]
    assert accumulator.message.content[0].text == REPLY  # type: ignore[union-attr]


def test_thinking_stream_hides_the_end_tag_split_anywhere() -> None:
    generated = "Step one.\nStep two.\n</think>"
    for size in (1, 2, 5):
        stream = ThinkingStream()
        shown = "".join(stream.feed(generated[i : i + size]) for i in range(0, len(generated), size))
        shown += stream.flush()
        assert shown == stream.text == "Step one.\nStep two."


def test_signatures_carry_the_thinking_and_refuse_any_change() -> None:
    signer = ThinkingSigner(b"k" * 32)
    signature = signer.sign("Let me think: 생각 🙂")
    assert signer.open(signature) == "Let me think: 생각 🙂"
    other = ThinkingSigner(b"q" * 32)
    with pytest.raises(BadSignatureError):
        other.open(signature)
    flipped = signature[:-3] + ("A" if signature[-3] != "A" else "B") + signature[-2:]
    for bad in (flipped, "v1", "v1" + signature[2:], signature + "!!"):
        with pytest.raises(BadSignatureError):
            signer.open(bad)


# A forced reply (`tool_choice: any`): two parallel calls, as the grammar writes them.
CALLS = [
    ("get_weather", '{"location": "Seoul", "unit": {"c": [1, 2]}}'),
    ("calculate", '{"expression": "2+2"}'),
]
FORCED = markup.CALL_SEPARATOR.join(markup.call_prefix(n) + a + "}" + markup.CALL_CLOSE for n, a in CALLS)
LEAD = "Let me check."


def _events(pieces: list[str], *, ended: bool = False) -> list[StreamEvent]:
    assembler = MessageAssembler(message_id="msg_x", model="m", usage=Usage(input_tokens=1, output_tokens=0))
    parser = ReplyParser(assembler, calls=True)
    events = assembler.start()
    for piece in pieces:
        events += parser.feed(piece)
    return events + parser.flush(ended=ended) + assembler.finish("max_tokens", None, len(pieces))


def _blocks(events: list[StreamEvent]) -> list[tuple[str, str, str]]:
    """(type, name or "", text or the input's JSON as streamed) per block, checking the stream's shape:
    sequential indices, each block started, then its deltas, then stopped; input starts as `{}`."""
    blocks: list[tuple[str, str, str]] = []
    open_index: int | None = None
    for event in events:
        if isinstance(event, ContentBlockStartEvent):
            assert open_index is None and event.index == len(blocks)
            block = event.content_block
            assert block.type in {"text", "tool_use"}
            if block.type == "tool_use":
                assert block.input == {} and block.id.startswith("toolu_")
            blocks.append((block.type, getattr(block, "name", ""), ""))
            open_index = event.index
        elif isinstance(event, ContentBlockDeltaEvent):
            assert event.index == open_index
            kind, name, body = blocks[-1]
            delta = event.delta
            if isinstance(delta, TextDelta):
                assert kind == "text"
                blocks[-1] = (kind, name, body + delta.text)
            else:
                assert kind == "tool_use" and isinstance(delta, InputJsonDelta)
                blocks[-1] = (kind, name, body + delta.partial_json)
        elif isinstance(event, ContentBlockStopEvent):
            assert event.index == open_index
            open_index = None
    assert open_index is None
    return blocks


def _expected_calls(generated: str) -> list[tuple[str, str, str]]:
    """The calls in a prefix of FORCED: those whose name is whole, with their arguments so far."""
    expected, start = [], 0
    for name, arguments in CALLS:
        head = markup.call_prefix(name)
        if len(generated) >= start + head.index(name) + len(name) + 1:  # the name and its closing quote
            begin = start + len(head)
            expected.append(("tool_use", name, generated[begin : begin + len(arguments)]))
        start += len(head) + len(arguments) + len("}" + markup.CALL_CLOSE + markup.CALL_SEPARATOR)
    return expected


@pytest.mark.parametrize("size", [1, 3])
def test_a_forced_call_cut_anywhere_leaves_no_markup(size: int) -> None:
    """`max_tokens` can end a forced reply at any character: what was generated becomes tool_use
    blocks once named (input: the arguments so far, never the closing tags), else nothing."""
    for cut in range(len(FORCED) + 1):
        generated = FORCED[:cut]
        events = _events([generated[i : i + size] for i in range(0, len(generated), size)])
        blocks = _blocks(events)
        assert blocks == _expected_calls(generated), generated
        accumulator = Accumulator()
        for event in events:
            accumulator.apply(event)
        assert accumulator.message is not None
        for block, (_, _, arguments) in zip(accumulator.message.content, blocks, strict=True):
            assert isinstance(block, ToolUseBlock)
            # what the SDK's own accumulator makes of the same fragments (jiter, partial mode)
            assert block.input == (
                jiter.from_json(arguments.encode(), partial_mode=True) if arguments else {}
            )


def test_text_before_a_call_cut_short_stays_text_and_the_markup_goes() -> None:
    reply = LEAD + "\n" + FORCED
    for cut in range(len(reply) + 1):
        generated = reply[:cut]
        blocks = _blocks(_events(list(generated)))
        texts = [body for kind, _, body in blocks if kind == "text"]
        assert all("<" not in text for text in texts), generated
        if cut <= len(LEAD) + 1:  # up to the newline before the call: all text, as generated
            assert texts == ([generated] if generated else []), generated
        else:
            assert texts == [LEAD], generated
        calls = blocks[len(texts) :]
        assert [kind for kind, _, _ in calls] == ["tool_use"] * len(calls)
        after = generated[len(LEAD) + 1 :]
        assert calls == _expected_calls(after)


def test_a_reply_the_model_ended_keeps_a_trailing_tag_start_as_text() -> None:
    """`ended`: the model stopped by itself, so a trailing `<` was text, not a call cut short."""
    assert _blocks(_events(["Is 3 < 4? Yes: 3 <"], ended=True)) == [("text", "", "Is 3 < 4? Yes: 3 <")]
    assert _blocks(_events(["Is 3 < 4? Yes: 3 <"])) == [("text", "", "Is 3 < 4? Yes: 3")]
    assert _blocks(_events(["<tool_"], ended=True)) == [("text", "", "<tool_")]
    assert _blocks(_events(["<tool_"])) == []


def test_the_message_read_mid_stream_is_the_fold_so_far() -> None:
    """The service reads the blocks so far between phases (a server tool's result): the accumulator
    joins its pieces then, and goes on folding the same."""
    assembler = MessageAssembler(message_id="msg_x", model="m", usage=Usage(input_tokens=1, output_tokens=0))
    signer = ThinkingSigner(b"k" * 32)
    accumulator = Accumulator()
    seen: list[list[tuple[str, str]]] = []
    steps = [
        assembler.start(),
        assembler.thinking("Hm, "),
        assembler.thinking("let me see."),
        assembler.sign_thinking(signer.sign("Hm, let me see.")),
        assembler.text("Seoul "),
        assembler.text("is "),
        assembler.text("warm."),
        assembler.close(),
        assembler.text("Bye"),
        assembler.finish("end_turn", None, 9),
    ]
    for step in steps:
        for event in step:
            accumulator.apply(event)
        message = accumulator.message
        assert message is not None
        seen.append([(b.type, b.text if b.type == "text" else b.thinking) for b in message.content])  # type: ignore[union-attr]
    assert seen[2] == [("thinking", "Hm, let me see.")]
    assert seen[5] == [("thinking", "Hm, let me see."), ("text", "Seoul is ")]
    assert seen[-1] == [("thinking", "Hm, let me see."), ("text", "Seoul is warm."), ("text", "Bye")]
    final = accumulator.message
    assert final is not None and final.stop_reason == "end_turn" and final.usage.output_tokens == 9
    thinking = final.content[0]
    assert thinking.type == "thinking" and signer.open(thinking.signature) == "Hm, let me see."
