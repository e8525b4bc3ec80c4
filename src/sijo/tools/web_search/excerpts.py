"""The part of a long document a search result carries: the whole text when it is short, otherwise
the passage that best matches the query first, then the document's beginning, within a budget of
characters (a search result is read by a model; a 300-page manual is not).

A passage scores the query words it contains, each weighted by how rare it is in the document
(a word in every passage, "the", counts for little), so no stop-word list is needed.
"""

from __future__ import annotations

import math
import re

MAX_TEXT_CHARS = 8_000
PASSAGE_CHARS = 800
GAP = "\n\n[…]\n\n"
_WORD = re.compile(r"\w+")


def excerpt(text: str, query: str, limit: int = MAX_TEXT_CHARS) -> str:
    """`text` if it fits in `limit` characters, else its best passage for `query` then its start."""
    if len(text) <= limit:
        return text
    spans = passages(text)
    weights = word_weights(text, spans, query_words(query))
    start, end = spans[best_passage(text, spans, weights)]
    if end <= limit:
        return _cut(text, limit)
    focus = _cut(text[_focus_start(text, start, end, weights) :], limit // 2).strip()
    head = _cut(text, limit - len(focus) - len(GAP)).rstrip()
    return focus + GAP + head


def query_words(query: str) -> list[str]:
    return list(dict.fromkeys(word.casefold() for word in _WORD.findall(query)))


def passages(text: str, size: int = PASSAGE_CHARS) -> list[tuple[int, int]]:
    """(start, end) spans of about `size` characters covering `text`, cut at a line end or space."""
    spans: list[tuple[int, int]] = []
    start = 0
    while start < len(text):
        end = min(len(text), start + size)
        if end < len(text):
            cut = max(text.rfind("\n", start + size // 2, end), text.rfind(" ", start + size // 2, end))
            end = cut + 1 if cut != -1 else end
        spans.append((start, end))
        start = end
    return spans


def word_weights(text: str, spans: list[tuple[int, int]], words: list[str]) -> dict[str, float]:
    """Each query word found in the text, weighted by its rarity among the passages."""
    folded = [text[start:end].casefold() for start, end in spans]
    weights = {}
    for word in words:
        holding = sum(1 for passage in folded if word in passage)
        if holding:
            weights[word] = math.log(1 + len(folded) / holding)
    return weights


def best_passage(text: str, spans: list[tuple[int, int]], weights: dict[str, float]) -> int:
    """The index of the span whose words weigh most (the first among equals)."""
    scores = [
        sum(weight for word, weight in weights.items() if word in text[start:end].casefold())
        for start, end in spans
    ]
    return max(range(len(scores)), key=lambda index: (scores[index], -index))


def _focus_start(text: str, start: int, end: int, weights: dict[str, float]) -> int:
    """Where the passage's matching part begins: the line or sentence holding the rarest query word
    it contains, not the span's arbitrary cut."""
    present = [word for word in weights if word in text[start:end].casefold()]
    if not present:
        return start
    rarest = max(present, key=lambda word: (weights[word], len(word)))
    found = re.search(re.escape(rarest), text[start:end], re.IGNORECASE)
    position = start + found.start() if found else start
    boundary = max(text.rfind("\n", start, position), text.rfind(". ", start, position))
    return boundary + 1 if boundary != -1 else start


def _cut(text: str, limit: int) -> str:
    """At most `limit` characters of `text`, ending at a space when one is near."""
    if len(text) <= limit:
        return text
    space = text.rfind(" ", max(0, limit - 200), limit)
    return text[: space if space > 0 else limit]
