"""Citations: the grammar that lets a reply cite only passages that exist, and the parser that turns
`<cite ref="N.M">claim</cite>` into a text block carrying that passage's citation.

The model sees each citable passage with its reference (`prompt/documents.py`). Its reply is free
text in which `<cite ref="` may only be followed by one of those references, then the claim, then
`</cite>`: a citation can never point outside the documents. What a citation quotes (`cited_text`)
and where (`start_char_index`, pages, blocks) come from the passage, not from the model, and the
quote is not part of the reply's text (the API does not bill it as output).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence

from sijo.output.assembler import MessageAssembler
from sijo.output.reply import partial_suffix
from sijo.prompt.documents import Passage
from sijo.protocol.events import StreamEvent
from sijo.protocol.message import (
    CitationCharLocation,
    CitationContentBlockLocation,
    CitationPageLocation,
    CitationWebSearchResultLocation,
    TextCitation,
)

OPEN = '<cite ref="'
REF_END = '">'
CLOSE = "</cite>"


def citations_grammar(refs: Sequence[str]) -> str:
    """Free text and citations of `refs` (none inside another; claims hold no `<`)."""
    alternatives = " | ".join(json.dumps(ref) for ref in refs)
    return (
        "start: part* TEXT?\n"
        f"part: lead REF {json.dumps(REF_END)} CLAIM {json.dumps(CLOSE)}\n"
        f'lead[lazy]: /(?s:.*)<cite ref="/\n'
        f"REF: {alternatives}\n"
        "CLAIM: /[^<]+/\n"
        "TEXT: /(?s:.+)/ & ~/(?s:.*)<cite(?s:.*)/\n"
    )


def citation_of(passage: Passage) -> TextCitation:
    text, index, title, file_id = (
        passage.cited_text,
        passage.document_index,
        passage.document_title,
        passage.file_id,
    )
    if passage.kind == "web_search_result_location":
        # Opaque to clients (not signed: Sijo never reads it back): which result, and where in it.
        where = json.dumps([passage.document_index, passage.start, passage.end]).encode()
        return CitationWebSearchResultLocation(
            cited_text=text,
            url=passage.url or "",
            title=title,
            encrypted_index=base64.urlsafe_b64encode(where).decode("ascii").rstrip("="),
        )
    if passage.kind == "char_location":
        return CitationCharLocation(
            cited_text=text,
            document_index=index,
            document_title=title,
            start_char_index=passage.start,
            end_char_index=passage.end,
            file_id=file_id,
        )
    if passage.kind == "page_location":
        return CitationPageLocation(
            cited_text=text,
            document_index=index,
            document_title=title,
            start_page_number=passage.start,
            end_page_number=passage.end,
            file_id=file_id,
        )
    return CitationContentBlockLocation(
        cited_text=text,
        document_index=index,
        document_title=title,
        start_block_index=passage.start,
        end_block_index=passage.end,
        file_id=file_id,
    )


class CitingParser:
    """A text reply with citations → text blocks, a claim's block carrying its citation. The same
    two methods as `ReplyParser` (it never sees tool calls: citing replies have none)."""

    tool_calls = 0

    def __init__(self, assembler: MessageAssembler, passages: Mapping[str, Passage]) -> None:
        self._assembler = assembler
        self._passages = passages
        self._buffer = ""
        self._in_claim = False
        self._started = False  # text has been sent (leading whitespace is dropped, as ReplyParser does)

    def feed(self, text: str) -> list[StreamEvent]:
        self._buffer += text
        events: list[StreamEvent] = []
        while True:
            step = self._claim() if self._in_claim else self._plain()
            if step is None:
                return events
            events += step

    def flush(self, *, ended: bool = False) -> list[StreamEvent]:
        """The end of generation. A claim cut short keeps its citation (what is held back of it can
        only be the start of `</cite>`); text held back as a possible tag is text if the model ended
        its turn there (the grammar allows a bare `<`), and dropped if a budget cut a tag short."""
        rest, self._buffer = self._buffer, ""
        if self._in_claim:
            self._in_claim = False
            return self._assembler.close()
        if not ended and rest.startswith("<"):
            rest = ""
        return self._text(rest) + self._assembler.close()

    def _plain(self) -> list[StreamEvent] | None:
        buffer = self._buffer
        start = buffer.find(OPEN)
        if start < 0:
            keep = partial_suffix(buffer, OPEN)
            self._buffer = buffer[len(buffer) - keep :]
            return self._text(buffer[: len(buffer) - keep]) or None
        end = buffer.find(REF_END, start + len(OPEN))
        if end < 0:  # the reference is still being written
            self._buffer = buffer[start:]
            return self._text(buffer[:start]) or None
        passage = self._passages.get(buffer[start + len(OPEN) : end])
        self._buffer = buffer[end + len(REF_END) :]
        events = self._text(buffer[:start])
        if passage is None:  # the grammar allows none: only an engine without grammars gets here
            return events
        self._in_claim = True
        self._started = True
        return events + self._assembler.cited_text([citation_of(passage)])

    def _claim(self) -> list[StreamEvent] | None:
        buffer = self._buffer
        end = buffer.find(CLOSE)
        if end < 0:
            keep = partial_suffix(buffer, CLOSE)
            self._buffer = buffer[len(buffer) - keep :]
            return self._assembler.text(buffer[: len(buffer) - keep]) or None
        self._buffer = buffer[end + len(CLOSE) :]
        self._in_claim = False
        return self._assembler.text(buffer[:end]) + self._assembler.close()

    def _text(self, text: str) -> list[StreamEvent]:
        if not self._started:
            text = text.lstrip()
            self._started = bool(text)
        return self._assembler.text(text)
