"""Hypothesis strategies for the fuzz test (`test_fuzz.py`): request bodies shaped like
`MessageCreateParams` / `CountTokensParams` (src/sijo/protocol/params.py, content.py, tools.py),
mostly valid so that they get past the first check, and `mutated` to break them at random places.
"""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

from hypothesis import strategies as st

MODEL = "claude-sonnet-4-6"


def _mostly(usual: st.SearchStrategy[Any], *odd: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`usual` three times in four, else one of `odd`: most bodies get past the first check."""
    return st.integers(0, 3).flatmap(lambda i: usual if i else st.one_of(*odd))


NAMES = st.from_regex(r"[a-zA-Z0-9_-]{1,12}", fullmatch=True)
TEXT = st.text(min_size=1, max_size=24)
NUMBERS = st.one_of(
    st.integers(-(2**64), 2**64),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0, -1, 10**30, 2**63, -(2**63) - 1, 1e308]),
)
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, TEXT)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(TEXT, inner, max_size=3)),
    max_leaves=8,
)
CACHE = st.one_of(st.just({"type": "ephemeral"}), st.just({"type": "ephemeral", "ttl": "1h"}))
B64 = st.one_of(st.binary(max_size=24).map(lambda b: base64.b64encode(b).decode()), TEXT)


def _schemas(children: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """JSON-schema-like objects whose keywords hold good values, or now and then bad ones."""
    keywords = {
        "description": TEXT,
        "enum": _mostly(st.lists(SCALARS, min_size=1, max_size=3), SCALARS),
        "const": SCALARS,
        "anyOf": _mostly(st.lists(children, min_size=1, max_size=2), SCALARS, st.just([])),
        "$defs": _mostly(st.dictionaries(NAMES, children, max_size=2), st.lists(SCALARS, max_size=2)),
        "format": _mostly(st.sampled_from(["date", "email", "uuid", "date-time"]), st.just([]), TEXT),
        "required": _mostly(st.lists(NAMES, max_size=2), st.just(5), st.just([["a"]])),
        "items": _mostly(children, SCALARS),
        "additionalProperties": _mostly(st.booleans(), children, SCALARS),
        "properties": _mostly(st.dictionaries(NAMES, children, max_size=3), st.lists(SCALARS, max_size=2)),
    }
    # keywords strict mode refuses (a 400 that would hide the rest of the schema): now and then
    rarer = {
        "$ref": st.sampled_from(["#/$defs/a", "#/nope", "#", "http://127.0.0.1:9/x", 5]),
        "pattern": st.sampled_from(["^a+$", "[0-9]{3}", "(", "[", "\\", "a{99999}"]),
        "minLength": _mostly(st.integers(0, 5), NUMBERS),
        "maxItems": _mostly(st.integers(0, 5), NUMBERS),
        "minimum": NUMBERS,
    }
    types = _mostly(
        st.sampled_from(["string", "integer", "number", "boolean", "null", "object", "array"]),
        st.just("nope"),
        st.just({}),
        st.just([[]]),
        st.lists(st.sampled_from(["string", "null"]), max_size=2),
    )
    return _mostly(
        st.fixed_dictionaries({"type": types}, optional=keywords),
        st.fixed_dictionaries({"type": types}, optional=keywords | rarer),
    )


SCHEMAS = st.recursive(st.just({"type": "string"}), _schemas, max_leaves=6)
OBJECT_SCHEMAS = st.fixed_dictionaries(
    {"type": st.just("object")},
    optional={
        "properties": st.dictionaries(NAMES, SCHEMAS, max_size=3),
        "required": st.lists(NAMES, max_size=2),
        "additionalProperties": st.booleans(),
        "$defs": st.dictionaries(NAMES, SCHEMAS, max_size=2),
    },
)
SOURCES = st.one_of(
    st.fixed_dictionaries(
        {
            "type": st.just("base64"),
            "media_type": st.sampled_from(["image/png", "application/pdf"]),
            "data": B64,
        }
    ),
    st.fixed_dictionaries({"type": st.just("text"), "media_type": st.just("text/plain"), "data": TEXT}),
    st.fixed_dictionaries(
        {"type": st.just("url"), "url": st.sampled_from(["file:///etc/passwd", "ftp://x/y"])}
    ),
)


def _block(kind: str, **fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({"type": st.just(kind), **fields}, optional={"cache_control": CACHE})


TEXT_BLOCK = _block("text", text=TEXT)
IMAGE = _block("image", source=SOURCES)
USER_BLOCKS = _mostly(
    TEXT_BLOCK,
    IMAGE,
    _block("document", source=SOURCES),
    _block("search_result", source=TEXT, title=TEXT, content=st.lists(TEXT_BLOCK, max_size=2)),
)
ASSISTANT_EXTRAS = _mostly(
    TEXT_BLOCK,
    _block("thinking", thinking=TEXT, signature=st.one_of(TEXT, st.just("v2AAAA"), st.just("v1AAAA"))),
    _block("redacted_thinking", data=st.one_of(TEXT, B64.map(lambda b: "v2" + b))),
)
RESULT_CONTENT = st.one_of(TEXT, st.lists(_mostly(TEXT_BLOCK, IMAGE), max_size=2))


@st.composite
def conversations(draw: st.DrawFn) -> list[dict[str, Any]]:
    """A user turn; maybe a tool call and its result; maybe an assistant prefill."""
    messages = [
        {"role": "user", "content": draw(st.one_of(TEXT, st.lists(USER_BLOCKS, min_size=1, max_size=3)))}
    ]
    if draw(st.booleans()):
        call_id = draw(NAMES)
        call = {
            "type": "tool_use",
            "id": call_id,
            "name": draw(NAMES),
            "input": draw(st.dictionaries(TEXT, JSON_VALUES, max_size=3)),
        }
        result = draw(_block("tool_result", tool_use_id=st.just(call_id), content=RESULT_CONTENT))
        extras = draw(st.lists(ASSISTANT_EXTRAS, max_size=1))
        messages += [{"role": "assistant", "content": [*extras, call]}, {"role": "user", "content": [result]}]
    if draw(_mostly(st.just(False), st.just(True))):
        messages.append({"role": "assistant", "content": draw(TEXT)})
    return messages


TOOLS = st.lists(
    _mostly(
        st.fixed_dictionaries(
            {"name": NAMES, "input_schema": OBJECT_SCHEMAS, "strict": st.booleans()},
            optional={"description": TEXT, "type": st.just("custom")},
        ),
        st.fixed_dictionaries({"type": st.just("bash_20250124"), "name": st.just("bash")}),
    ),
    max_size=2,
)
TOOL_CHOICES = st.one_of(
    st.fixed_dictionaries({"type": st.sampled_from(["auto", "any", "none"])}),
    st.fixed_dictionaries({"type": st.just("tool"), "name": NAMES}),
)
THINKING = st.one_of(
    st.fixed_dictionaries({"type": st.just("enabled"), "budget_tokens": NUMBERS}),
    st.fixed_dictionaries({"type": st.just("adaptive")}, optional={"effort": st.just("low")}),
    st.just({"type": "disabled"}),
)
OUTPUT_CONFIG = st.fixed_dictionaries(
    {},
    optional={
        "effort": st.sampled_from(["low", "max"]),
        "format": st.fixed_dictionaries({"type": st.just("json_schema"), "schema": OBJECT_SCHEMAS}),
    },
)
SHARED: dict[str, st.SearchStrategy[Any]] = {
    "system": st.one_of(TEXT, st.lists(TEXT_BLOCK, max_size=2)),
    "tools": TOOLS,
    "tool_choice": TOOL_CHOICES,
    "thinking": THINKING,
    "output_config": OUTPUT_CONFIG,
    "cache_control": CACHE,
}
CREATE_ONLY: dict[str, st.SearchStrategy[Any]] = {
    "temperature": st.floats(0, 1),
    "top_k": st.integers(0, 50),
    "stop_sequences": st.lists(TEXT, max_size=2),
    "metadata": st.fixed_dictionaries({"user_id": TEXT}),
}
MODELS = _mostly(st.just(MODEL), st.just("claude-nope"), st.just(""))
# max_tokens 0 answers without generating; 1-token replies, streamed or not, keep the others short.
BUDGETS = st.sampled_from(
    [{"max_tokens": 0}, {"max_tokens": 0}, {"max_tokens": 1}, {"max_tokens": 1, "stream": True}]
)
CREATE = st.tuples(
    BUDGETS,
    st.fixed_dictionaries({"model": MODELS, "messages": conversations()}, optional={**SHARED, **CREATE_ONLY}),
).map(lambda pair: {**pair[1], **pair[0]})
COUNTING = st.fixed_dictionaries({"model": MODELS, "messages": conversations()}, optional=SHARED)

ODD_VALUES = st.one_of(
    SCALARS,
    st.sampled_from([[], {}, [1], {"a": 1}, "\ud800", "a\udc00b", "\x00", "\u202e\ufeff", 10**400]),
)


def _places(value: Any) -> list[tuple[Any, Any]]:
    """Every (container, key-or-index) in a JSON tree: the places a mutation can go."""
    places: list[tuple[Any, Any]] = []
    stack = [value]
    while stack:
        node = stack.pop()
        keys = list(node) if isinstance(node, dict) else range(len(node)) if isinstance(node, list) else []
        for key in keys:
            places.append((node, key))
            stack.append(node[key])
    return places


@st.composite
def mutated(draw: st.DrawFn, bodies: st.SearchStrategy[dict[str, Any]]) -> dict[str, Any]:
    """A drawn body, then up to three mutations at random places in it."""
    body = copy.deepcopy(draw(bodies))  # strategies share their constants; never mutate those
    for _ in range(draw(st.sampled_from([0, 1, 1, 2, 3]))):
        places = _places(body)
        if not places:
            break
        container, key = places[draw(st.integers(0, len(places) - 1))]
        kind = draw(st.sampled_from(["replace", "delete", "extra", "empty", "surrogate", "nul"]))
        if kind == "replace":
            container[key] = draw(ODD_VALUES)
        elif kind == "delete":
            container.pop(key)
        elif kind == "extra" and isinstance(container[key], dict):
            container[key][draw(TEXT)] = draw(ODD_VALUES)
        elif kind == "empty" and isinstance(container[key], list | dict | str):
            container[key] = type(container[key])()
        elif kind in ("surrogate", "nul") and isinstance(container[key], str):
            container[key] += "\udfff" if kind == "surrogate" else "\x00"
    return body


def as_json(body: Any) -> bytes:
    """ASCII JSON: a lone surrogate goes out as its `\\udXXX` escape, as a client library would send it."""
    return json.dumps(body, ensure_ascii=True).encode()
