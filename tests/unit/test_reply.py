"""The reply parser (markup → blocks), the thinking stream and thinking signatures."""

from __future__ import annotations

import pytest

from sijo.output.accumulate import Accumulator
from sijo.output.assembler import MessageAssembler
from sijo.output.reply import ReplyParser, ThinkingStream
from sijo.protocol.message import Usage
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
    for bad in (flipped, "v1", "v2" + signature[2:], signature + "!!"):
        with pytest.raises(BadSignatureError):
            signer.open(bad)
