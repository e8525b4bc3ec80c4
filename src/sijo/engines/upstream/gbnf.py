"""Sijo's grammars (llguidance's Lark dialect) as GBNF, for upstreams without llguidance (llama-server).

vLLM and SGLang take the Lark grammars as they are. llama-server takes GBNF, so the grammars Sijo
writes (`output/grammar.py`, `output/citations.py`) are translated here: rules, string literals,
groups and `* + ?`, `%json` schemas (through llama.cpp's own JSON-schema converter), and the few
regular expressions those grammars use:
- `/(?s:.*)X/` in a lazy rule: any text up to and including the first `X`;
- `/(?s:.*)/ & ~/(?s:.*)X(?s:.*)/` (and `.+`): text that never contains `X`;
- a character class with a repetition (`/[^<]+/`).
Both text forms are a small automaton over `X` (as in KMP string search) written as GBNF rules.
Anything else raises `GrammarError` naming what could not be translated, so the request is refused
with a clear 400 rather than run unconstrained.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from sijo.engines.base import GrammarError

_TOKEN = re.compile(
    r"""\s*(?:
    %json\s+(?P<json>\{.*\})\s*$
  | (?P<string>"(?:[^"\\]|\\.)*")
  | (?P<regex>/(?:[^/\\]|\\.)*/)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>[|()*+?&~])
    )""",
    re.VERBOSE,
)
_RULE = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<lazy>\[lazy\])?\s*:\s*(?P<body>.*)$")
_ANY = "(?s:.*)"
_ANY1 = "(?s:.+)"
_CLASS = re.compile(r"^(\[\^?(?:[^\]\\]|\\.)+\])([*+?]?)$")
_REGEX_META = frozenset("\\.+*?()|[]{}^$#&-~/")


def to_gbnf(lark: str) -> str:
    """The GBNF grammar accepting what `lark` accepts (its `start` rule becomes `root`)."""
    return _Translator().translate(lark)


@dataclass
class _Translator:
    rules: dict[str, str] = field(default_factory=dict)
    schemas: int = 0

    def translate(self, lark: str) -> str:
        lines = [line for line in lark.splitlines() if line.strip()]
        names = set()
        for line in lines:
            match = _RULE.match(line.strip())
            if match is None:
                raise GrammarError(f"cannot translate grammar line for this upstream: {line!r}")
            names.add(match["name"])
        if "start" not in names:
            raise GrammarError("grammar has no start rule")
        for line in lines:
            match = _RULE.match(line.strip())
            assert match is not None
            self.rules[_rule_name(match["name"])] = self._body(match["body"], lazy=bool(match["lazy"]))
        self.rules["root"] = _rule_name("start")
        return "\n".join(f"{name} ::= {body}" for name, body in self.rules.items()) + "\n"

    def _body(self, body: str, *, lazy: bool) -> str:
        tokens = list(_tokens(body))
        if len(tokens) == 1 and tokens[0][0] == "json":
            return self._schema(tokens[0][1])
        if [kind for kind, _ in tokens] == ["regex", "op", "op", "regex"] and tokens[1][1] == "&":
            if tokens[2][1] != "~":
                raise GrammarError(f"cannot translate intersection for this upstream: {body!r}")
            return self._without(tokens[0][1], tokens[3][1])
        return " ".join(self._item(kind, text, lazy=lazy) for kind, text in tokens)

    def _item(self, kind: str, text: str, *, lazy: bool) -> str:
        if kind == "string":
            return _literal(json.loads(text))
        if kind == "name":
            return _rule_name(text)
        if kind == "op":
            if text in "&~":
                raise GrammarError(f"cannot translate {text!r} outside `A & ~B` for this upstream")
            return text
        if kind == "regex":
            return self._regex(text[1:-1], lazy=lazy)
        raise GrammarError(f"cannot translate {kind} here for this upstream: {text!r}")

    def _regex(self, pattern: str, *, lazy: bool) -> str:
        if pattern == _ANY:
            return ".*"
        if pattern == _ANY1:
            return ".+"
        if lazy and pattern.startswith(_ANY):
            return self._automaton(_unescape(pattern[len(_ANY) :]), until=True)
        match = _CLASS.match(pattern)
        if match:
            return match[1] + match[2]
        raise GrammarError(f"cannot translate regex /{pattern}/ for this upstream")

    def _without(self, text: str, banned: str) -> str:
        """`/(?s:.*)/ & ~/(?s:.*)X(?s:.*)/`: text that never contains X (non-empty with `.+`)."""
        inner = banned[1:-1]
        if not (inner.startswith(_ANY) and inner.endswith(_ANY)) or text[1:-1] not in (_ANY, _ANY1):
            raise GrammarError(f"cannot translate {text} & ~{banned} for this upstream")
        start = self._automaton(_unescape(inner[len(_ANY) : -len(_ANY)]), until=False)
        if text[1:-1] == _ANY:
            return start
        return f"{start}-first"

    def _automaton(self, word: str, *, until: bool) -> str:
        """Rules for text up to and including the first `word` (`until`), or never holding it."""
        if not word:
            raise GrammarError("cannot translate an empty search text for this upstream")
        prefix = f"{'until' if until else 'without'}-{len(self.rules)}"
        for state in range(len(word)):
            moves = {c: _move(word, state, c) for c in sorted(set(word))}
            moving = {c: target for c, target in moves.items() if target}
            alternatives = []
            for char, target in moving.items():
                if target < len(word):
                    alternatives.append(f"{_literal(char)} {prefix}-{target}")
                elif until:  # the word is complete: the text ends here
                    alternatives.append(_literal(char))
            alternatives.append("[^" + "".join(_class_char(c) for c in moving) + f"] {prefix}-0")
            body = " | ".join(alternatives)
            self.rules[f"{prefix}-{state}"] = body if until else f"({body})?"
            if not until and state == 0:
                self.rules[f"{prefix}-0-first"] = body
        return f"{prefix}-0"

    def _schema(self, text: str) -> str:
        try:
            schema = json.loads(text)
        except json.JSONDecodeError as exc:
            raise GrammarError(f"cannot read %json schema: {exc}") from None
        self.schemas += 1
        prefix = f"s{self.schemas}-"
        for name, body in _schema_rules(schema).items():
            self.rules[prefix + name] = _renamed(body, prefix)
        return prefix + "root"


def _schema_rules(schema: dict[str, Any]) -> dict[str, str]:
    from llama_cpp.llama_grammar import SchemaConverter  # llama.cpp's own converter, in Python

    schema = _plain_groups({k: v for k, v in schema.items() if k != "x-guidance"})
    converter = SchemaConverter(  # type: ignore[no-untyped-call]
        prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False
    )
    try:
        converter.visit(converter.resolve_refs(schema, ""), "")  # type: ignore[no-untyped-call]
    except (AssertionError, ValueError, KeyError, TypeError, NotImplementedError) as exc:
        raise GrammarError(f"cannot translate JSON schema for this upstream: {exc}") from None
    return dict(converter._rules)


def _plain_groups(node: Any) -> Any:
    """`(?:...)` groups as `(...)` in `pattern`s (the same language; the converter reads only these)."""
    if isinstance(node, list):
        return [_plain_groups(item) for item in node]
    if not isinstance(node, dict):
        return node
    return {
        key: re.sub(r"(?<!\\)\(\?:", "(", value)
        if key == "pattern" and isinstance(value, str)
        else _plain_groups(value)
        for key, value in node.items()
    }


def _renamed(body: str, prefix: str) -> str:
    """A GBNF rule body with every rule reference prefixed (literals and classes left alone)."""
    out = []
    for match in re.finditer(r'"(?:[^"\\]|\\.)*"|\[(?:[^\]\\]|\\.)*\]|[A-Za-z0-9-]+|.', body, re.S):
        piece = match.group(0)
        if piece[0].isalpha() or (piece[0].isdigit() and not piece.isdigit()):
            piece = prefix + piece
        out.append(piece)
    return "".join(out)


def _tokens(body: str) -> Iterator[tuple[str, str]]:
    pos = 0
    body = body.rstrip()
    while pos < len(body):
        match = _TOKEN.match(body, pos)
        if match is None or match.end() == pos:
            raise GrammarError(f"cannot translate grammar for this upstream near {body[pos : pos + 20]!r}")
        kind = match.lastgroup
        assert kind is not None
        yield kind, match[kind]
        pos = match.end()


def _move(word: str, state: int, char: str) -> int:
    """Where the search for `word` goes from `state` (characters matched) on reading `char`."""
    seen = word[:state] + char
    for length in range(min(len(seen), len(word)), 0, -1):
        if seen.endswith(word[:length]):
            return length
    return 0


def _unescape(pattern: str) -> str:
    out, escaped = [], False
    for char in pattern:
        if escaped:
            out.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char in _REGEX_META:
            raise GrammarError(f"cannot translate regex text {pattern!r} for this upstream")
        else:
            out.append(char)
    return "".join(out)


def _rule_name(name: str) -> str:
    return "root-start" if name == "start" else "g-" + name.replace("_", "-")


def _literal(text: str) -> str:
    return '"' + "".join(_literal_char(c) for c in text) + '"'


def _literal_char(char: str) -> str:
    if char in '"\\' or ord(char) < 0x20 or ord(char) == 0x7F:
        return f"\\x{ord(char):02X}"
    return char


def _class_char(char: str) -> str:
    return f"\\U{ord(char):08X}"
