"""HTML to the plain text a model reads: the `<title>`, and the body's text with block elements on
lines of their own and scripts, styles and other non-content left out. The standard library's
tolerant `html.parser` is enough for indexing pages and cleaning service snippets (`<strong>`
highlights, entities); no DOM is built.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from html.parser import HTMLParser

# Elements whose content is never page text.
_SKIPPED = frozenset({"script", "style", "noscript", "template", "svg", "canvas", "iframe", "object"})
# Elements that start a new line (the rest flow inline).
_BLOCKS = frozenset(
    {
        "address", "article", "aside", "blockquote", "br", "dd", "div", "dl", "dt", "figcaption",
        "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li", "main",
        "nav", "ol", "p", "pre", "section", "table", "tr", "td", "th", "ul", "body", "html",
    }
)  # fmt: skip
_SPACES = re.compile(r"[ \t\f\v\u00a0]+")
_BLANK_LINES = re.compile(r"\n\s*\n+")


@dataclass(frozen=True, slots=True)
class PageText:
    title: str
    text: str


def html_text(markup: str) -> PageText:
    """The page's title (empty if it has none) and its readable text."""
    parser = _TextParser()
    parser.feed(markup)
    parser.close()
    text = _BLANK_LINES.sub("\n", tidy(parser.text()))  # blocks open and close lines: no blank ones
    return PageText(title=_tidy_line(parser.title), text=text)


def tidy(text: str) -> str:
    """Runs of spaces made one, no spaces around lines, at most one blank line in a row."""
    lines = (_SPACES.sub(" ", line).strip() for line in text.replace("\r\n", "\n").split("\n"))
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def _tidy_line(text: str) -> str:
    return _SPACES.sub(" ", " ".join(text.split())).strip()


class _TextParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.title = ""
        self._parts: list[str] = []
        self._skipping: list[str] = []
        self._in_title = False

    def text(self) -> str:
        return "".join(self._parts)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:  # noqa: ARG002
        if tag == "title":
            self._in_title = True
        elif tag in _SKIPPED:
            self._skipping.append(tag)
        elif tag in _BLOCKS:
            self._parts.append("\n")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:  # noqa: ARG002
        if tag in _BLOCKS:
            self._parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        elif self._skipping and tag == self._skipping[-1]:
            self._skipping.pop()
        elif tag in _BLOCKS and not self._skipping:
            self._parts.append("\n")

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
        elif not self._skipping:
            self._parts.append(data)
