"""Citations: passages cut from documents, the grammar that allows only their references, and the
parser that turns `<cite>` markup into cited text blocks, however the stream is split."""

from __future__ import annotations

import llguidance
import pytest

from sijo.output.assembler import MessageAssembler
from sijo.output.citations import CitingParser, citations_grammar
from sijo.prompt.documents import Passage, sentences
from sijo.protocol.events import ContentBlockDeltaEvent, ContentBlockStartEvent, StreamEvent
from sijo.protocol.message import Usage
from tests.byte_vocab import TOKENIZER


def accepted(grammar: str, text: str) -> bool:
    matcher = llguidance.LLMatcher(TOKENIZER, llguidance.LLMatcher.grammar_from_lark(grammar), log_level=0)
    assert not matcher.is_error(), matcher.get_error()
    return all(matcher.consume_token(byte) for byte in text.encode()) and matcher.is_accepting()


def test_sentences_cover_the_text_and_end_at_sentence_ends() -> None:
    text = "First one. Second?  Third!\n\nFourth 문장。다섯"
    spans = sentences(text)
    assert [text[a:b] for a, b in spans] == [
        "First one. ",
        "Second?  ",
        "Third!\n\n",
        "Fourth 문장。",
        "다섯",
    ]
    assert spans[0][0] == 0 and spans[-1][1] == len(text)
    assert all(spans[i][1] == spans[i + 1][0] for i in range(len(spans) - 1))
    assert sentences("   ") == []


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("Plain words, even a < sign.", True),
        ('Says <cite ref="1.2">so</cite> and <cite ref="2.1">that</cite>.', True),
        ('<cite ref="1.3">no such passage</cite>', False),
        ('<cite ref="1.2">open', False),
        ('<cite ref="1.2">nested <cite ref="1.2">x</cite></cite>', False),
        ("", True),
    ],
)
def test_the_grammar_allows_only_existing_references(text: str, ok: bool) -> None:
    assert accepted(citations_grammar(["1.1", "1.2", "2.1"]), text) is ok


PASSAGE = Passage("1.2", 0, "Doc", None, "char_location", 10, 24, "Grass is blue.")


def parse(chunks: list[str], *, ended: bool = True) -> list[StreamEvent]:
    usage = Usage(input_tokens=1, output_tokens=0)
    parser = CitingParser(MessageAssembler(message_id="msg_x", model="m", usage=usage), {"1.2": PASSAGE})
    events = [event for chunk in chunks for event in parser.feed(chunk)]
    return events + parser.flush(ended=ended)


def blocks(events: list[StreamEvent]) -> list[tuple[str, list[str]]]:
    """(text, cited texts) of each block."""
    found: list[tuple[str, list[str]]] = []
    for event in events:
        if isinstance(event, ContentBlockStartEvent):
            found.append(("", []))
        elif isinstance(event, ContentBlockDeltaEvent):
            text, cited = found[-1]
            delta = event.delta
            if delta.type == "text_delta":
                found[-1] = (text + delta.text, cited)
            elif delta.type == "citations_delta":
                found[-1] = (text, [*cited, delta.citation.cited_text])
    return found


WHOLE = 'So: <cite ref="1.2">grass is blue</cite>. Done.'


@pytest.mark.parametrize("size", [1, 2, 3, 7, len(WHOLE)])
def test_cited_text_is_its_own_block_however_the_stream_is_split(size: int) -> None:
    chunks = [WHOLE[i : i + size] for i in range(0, len(WHOLE), size)]
    assert blocks(parse(chunks)) == [("So: ", []), ("grass is blue", ["Grass is blue."]), (". Done.", [])]


def test_a_claim_cut_short_keeps_its_citation_and_no_markup() -> None:
    assert blocks(parse(['<cite ref="1.2">grass is', " blue</ci"], ended=False)) == [
        ("grass is blue", ["Grass is blue."])
    ]


def test_a_tag_cut_short_is_dropped_but_a_final_bracket_is_text() -> None:
    assert blocks(parse(["Hi <cite re"], ended=False)) == [("Hi ", [])]
    assert blocks(parse(["a < b <"], ended=True)) == [("a < b <", [])]
