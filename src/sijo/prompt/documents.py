"""Images and documents as the model reads them: text with image marks, and citable passages.

A `document` block is written in tags, as Claude is shown documents:
`<document index="N"><source>title</source><context>…</context><document_content>…</document_content>`.
A PDF's pages are each its image (when the model reads images) and its text, as the API sends them.

With `citations: {enabled: true}` the document's text is cut into passages — sentences of a text
document or of a PDF page, the text blocks of a content document — and each is shown with its
reference, `[N.M]`. The reply grammar lets the model cite only those references
(`output/citations.py`), and what a citation quotes is taken from the document, never from the model.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from sijo.engines.base import Bitmap
from sijo.errors import InvalidRequestError
from sijo.prompt import markup
from sijo.prompt.attachments import Attachments, LoadedDocument
from sijo.protocol.content import DocumentBlockParam, FileDocumentSource, ImageBlockParam

LocationKind = Literal[
    "char_location", "page_location", "content_block_location", "web_search_result_location"
]
MAX_CITED_CHARS = 150  # a web search citation's `cited_text` (reference §12)
# Maps a sentence's character span to the location its citation reports.
_Span = Callable[[int, int], tuple[int, int]]


@dataclass(frozen=True, slots=True)
class Passage:
    """A citable span of one document: `start`/`end` are characters, pages (1-based) or block
    indices, end exclusive, as the citation of `kind` reports them."""

    ref: str  # as the model sees and writes it: "document.passage"
    document_index: int
    document_title: str | None
    file_id: str | None
    kind: LocationKind
    start: int
    end: int
    cited_text: str
    url: str | None = None  # web search results: the page's


def web_search_passages(text: str, number: int, title: str, url: str, passages: list[Passage]) -> str:
    """A web search result's text with each sentence's reference (`w<number>.<sentence>`), its
    passages appended to `passages`: web search citations are always on (reference §12)."""
    shown: list[str] = []
    for j, (start, end) in enumerate(sentences(text)):
        ref = f"w{number}.{j + 1}"
        cited = text[start:end].strip()[:MAX_CITED_CHARS]
        passages.append(
            Passage(ref, number - 1, title, None, "web_search_result_location", start, end, cited, url)
        )
        shown.append(f"[{ref}] {text[start:end].strip()}")
    return "\n".join(shown)


# A sentence ends at . ! ? (or their CJK forms) followed by space, or at a blank line.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|(?<=[\u3002\uff01\uff1f])\s*|\n\s*\n")


def sentences(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence of `text`; the spaces after a sentence belong to it, so the
    spans cover the text whole."""
    spans: list[tuple[int, int]] = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        if match.end() > start and text[start : match.start()].strip():
            spans.append((start, match.end()))
            start = match.end()
    if text[start:].strip():
        spans.append((start, len(text)))
    return spans


@dataclass(slots=True)
class Documents:
    """Reads a request's image and document blocks in prompt order, numbering the documents."""

    attachments: Attachments
    cite: bool = True  # False: citations on or not, documents are shown without references
    count: int = 0
    passages: list[Passage] = field(default_factory=list)
    citing: bool | None = None  # whether the request's documents have citations on (all or none)

    def read(self, block: ImageBlockParam | DocumentBlockParam, where: str) -> tuple[str, tuple[Bitmap, ...]]:
        """The block's text for the model, with an image mark for each of its images."""
        if isinstance(block, ImageBlockParam):
            return markup.IMAGE, (self.attachments.image(block.source, where),)
        index = self.count
        self.count += 1
        loaded = self.attachments.document(block, where)
        cite = bool(block.citations and block.citations.enabled)
        self._check_citing(cite, where)
        cite = cite and self.cite
        file_id = block.source.file_id if isinstance(block.source, FileDocumentSource) else None
        body, images = _Writer(self, index, block.title, file_id, cite).write(loaded)
        head = f'<document index="{index + 1}">\n'
        if block.title:
            head += f"<source>{block.title}</source>\n"
        if block.context:
            head += f"<context>{block.context}</context>\n"
        return f"{head}<document_content>\n{body}\n</document_content>\n</document>", images

    def _check_citing(self, cite: bool, where: str) -> None:
        if self.citing is not None and self.citing != cite:
            raise InvalidRequestError(
                f"{where}.citations: Citations must be enabled on all documents or on none"
            )
        self.citing = cite


@dataclass(slots=True)
class _Writer:
    documents: Documents
    index: int
    title: str | None
    file_id: str | None
    cite: bool
    images: list[Bitmap] = field(default_factory=list)
    made: int = 0  # passages of this document so far

    def write(self, loaded: LoadedDocument) -> tuple[str, tuple[Bitmap, ...]]:
        if loaded.kind == "text":
            text = self._cited(loaded.text, "char_location", lambda s, e: (s, e))
        elif loaded.kind == "pdf":
            text = "\n".join(self._page(page.number, page.text, page.image) for page in loaded.pages)
        else:
            text = "\n".join(self._block(j, piece) for j, piece in enumerate(loaded.blocks))
        return text, tuple(self.images)

    def _page(self, number: int, text: str, image: Bitmap | None) -> str:
        shown = ""
        if image is not None:
            self.images.append(image)
            shown = markup.IMAGE + "\n"
        body = self._cited(text, "page_location", lambda _s, _e: (number, number + 1))
        return f'<page number="{number}">\n{shown}{body}\n</page>'

    def _block(self, j: int, piece: str | Bitmap) -> str:
        if isinstance(piece, Bitmap):
            self.images.append(piece)
            return markup.IMAGE
        if not self.cite:
            return piece
        ref = self._passage("content_block_location", j, j + 1, piece)
        return f"[{ref}] {piece}"

    def _cited(self, text: str, kind: LocationKind, where: _Span) -> str:
        if not self.cite:
            return text
        shown: list[str] = []
        for start, end in sentences(text):
            first, last = where(start, end)
            ref = self._passage(kind, first, last, text[start:end])
            shown.append(f"[{ref}] {text[start:end].strip()}")
        return "\n".join(shown)

    def _passage(self, kind: LocationKind, start: int, end: int, cited: str) -> str:
        self.made += 1
        ref = f"{self.index + 1}.{self.made}"
        self.documents.passages.append(
            Passage(ref, self.index, self.title, self.file_id, kind, start, end, cited)
        )
        return ref
