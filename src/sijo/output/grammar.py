"""Grammars (llguidance's Lark dialect) that force a reply's shape: tool calls, JSON, thinking.

The engine applies them token by token, so what they describe is what the model can write:
- a forced tool choice (`any`/`tool`) → one or more calls, each naming a tool and carrying arguments
  valid against that tool's schema;
- `auto` → free text, optionally followed by calls; once the text writes `<tool_call>`, the call is
  constrained exactly as above;
- `output_config.format` → one JSON value valid against the schema;
- thinking → free text up to and including `</think>` (its budget is `max_tokens`).
JSON is written compactly (no free whitespace), so a small model cannot pad it forever.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sijo.prompt import markup

_JSON_STYLE = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}


@dataclass(frozen=True, slots=True)
class CallSpec:
    name: str
    schema: dict[str, Any]


def thinking_grammar() -> str:
    """The thinking phase: the prompt already ends with `<think>\\n`; stop right after `</think>`."""
    return "start: thought\nthought[lazy]: /(?s:.*)<\\/think>/\n"


def json_grammar(schema: dict[str, Any]) -> str:
    return f"start: answer\nanswer: {_json(schema)}\n"


def calls_grammar(
    calls: Sequence[CallSpec], *, forced: bool, parallel: bool, answer_schema: dict[str, Any] | None = None
) -> str:
    """Tool calls; with `forced` false the reply may instead be text (or JSON, with `answer_schema`)."""
    lines = [
        "calls: call" + ("(SEP call)*" if parallel else ""),
        f"SEP: {_lit(markup.CALL_SEPARATOR + markup.CALL_OPEN)}",
    ]
    lines.append("call: " + " | ".join(f"call_{i}" for i in range(len(calls))))
    for i, spec in enumerate(calls):
        lines.append(
            f"call_{i}: {_lit(markup.call_prefix(spec.name)[len(markup.CALL_OPEN) :])} args_{i} "
            f"{_lit('}' + markup.CALL_CLOSE)}"
        )
        lines.append(f"args_{i}: {_json(spec.schema)}")
    if forced:
        start = [f"start: {_lit(markup.CALL_OPEN)} calls"]
    elif answer_schema is not None:
        start = [f"start: answer | {_lit(markup.CALL_OPEN)} calls", f"answer: {_json(answer_schema)}"]
    else:
        open_tag = markup.CALL_OPEN.rstrip("\n")
        start = [
            f"start: TEXT | lead {_lit(markup.CALL_OPEN[len(open_tag) :])} calls",
            f"lead[lazy]: /(?s:.*){_regex_escape(open_tag)}/",
            f"TEXT: /(?s:.*)/ & ~/(?s:.*){_regex_escape(open_tag)}(?s:.*)/",
        ]
    return "\n".join(start + lines) + "\n"


def _json(schema: dict[str, Any]) -> str:
    return "%json " + json.dumps({**_closed(schema), "x-guidance": _JSON_STYLE})


# Calendar-exact dates (RFC 3339 full-date, years 0001-9999, February 29 in leap years only), for
# `format: date` and `date-time`: llguidance's own regexes allow year 0000 and February 29 in any year,
# which date parsers (and `jsonschema`) reject.
_YEAR = r"(?:[1-9][0-9]{3}|0[1-9][0-9]{2}|00[1-9][0-9]|000[1-9])"
_MONTH_DAY = (
    r"(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)"
    r"|02-(?:0[1-9]|1[0-9]|2[0-8]))"
)
_MULTIPLE_OF_4 = r"(?:0[48]|[2468][048]|[13579][26])"
_LEAP_YEAR = rf"(?:[0-9]{{2}}{_MULTIPLE_OF_4}|{_MULTIPLE_OF_4}00)"
_DATE = rf"(?:{_YEAR}-{_MONTH_DAY}|{_LEAP_YEAR}-02-29)"
_TIME = (
    r"(?:[01][0-9]|2[0-3]):[0-5][0-9]:(?:[0-5][0-9]|60)(?:\.[0-9]+)?"
    r"(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"
)
_FORMAT_PATTERNS = {"date": f"^{_DATE}$", "date-time": f"^{_DATE}T{_TIME}$"}


def _closed(node: Any) -> Any:
    """Objects without `additionalProperties` get `false`: only the declared properties are written
    (still valid against the schema), as the API's strict mode and the SDKs' transform require.
    Dates are held to the calendar (`_FORMAT_PATTERNS`)."""
    if not isinstance(node, dict):
        return node
    closed = dict(node)
    if isinstance(node.get("format"), str) and node["format"] in _FORMAT_PATTERNS and "pattern" not in node:
        closed["pattern"] = _FORMAT_PATTERNS[closed.pop("format")]
    for key in ("properties", "$defs", "definitions"):
        if isinstance(node.get(key), dict):
            closed[key] = {name: _closed(sub) for name, sub in node[key].items()}
    for key in ("anyOf", "allOf", "oneOf"):
        if isinstance(node.get(key), list):
            closed[key] = [_closed(sub) for sub in node[key]]
    if "items" in node:
        closed["items"] = _closed(node["items"])
    if ("properties" in node or node.get("type") == "object") and "additionalProperties" not in node:
        closed["additionalProperties"] = False
    return closed


def _lit(text: str) -> str:
    return json.dumps(text)


_REGEX_SPECIAL = frozenset("\\.+*?()|[]{}^$#&-~/")


def _regex_escape(text: str) -> str:
    return "".join("\\" + ch if ch in _REGEX_SPECIAL else ch for ch in text)
