"""Property: whatever object schema a client sends, a forced tool call's input and a structured
output validate against it — on the embedded 135M model, because decoding is constrained.

Hypothesis draws varied schemas (enums, nested objects, arrays, optional fields, numbers, nulls);
each is sent through the official SDK to the real server and the result checked with `jsonschema`.
Every reply must validate: 100%, no exceptions, including the replies that run out of `max_tokens`
(which the API itself exempts): near the end of its budget Sijo only keeps a sampled token if the
JSON can still be completed in the tokens left, and otherwise writes the shortest ending it knows.
"""

from __future__ import annotations

import json
import string
from typing import Any

import anthropic
import jsonschema
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

NAMES = st.text(string.ascii_lowercase + "_", min_size=1, max_size=12)
SCALARS: st.SearchStrategy[dict[str, Any]] = st.one_of(
    st.just({"type": "string"}),
    st.just({"type": "integer"}),
    st.just({"type": "number"}),
    st.just({"type": "boolean"}),
    st.just({"type": ["string", "null"]}),
    st.lists(st.text(string.ascii_letters, min_size=1, max_size=8), min_size=1, max_size=5, unique=True).map(
        lambda values: {"type": "string", "enum": values}
    ),
    st.sampled_from(["date", "email", "uuid"]).map(lambda f: {"type": "string", "format": f}),
)


def _objects(children: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(NAMES, children, min_size=1, max_size=4).flatmap(
        lambda props: st.sets(st.sampled_from(sorted(props))).map(
            lambda required: {
                "type": "object",
                "properties": props,
                "required": sorted(required),
                "additionalProperties": False,
            }
        )
    )


VALUES = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        _objects(children), children.map(lambda item: {"type": "array", "items": item})
    ),
    max_leaves=6,
)
SCHEMAS = _objects(VALUES)
PROMPT = [{"role": "user", "content": "Fill in realistic example data."}]
CASES = settings(max_examples=100, deadline=None, database=None, suppress_health_check=list(HealthCheck))


CUT: list[str] = []  # the replies that max_tokens ended: closed early, still valid


def _check(text: str, schema: dict[str, Any], stop_reason: str | None) -> None:
    jsonschema.validate(json.loads(text), schema, format_checker=jsonschema.FormatChecker())
    if stop_reason == "max_tokens":
        CUT.append(text)


@CASES
@given(schema=SCHEMAS)
def test_forced_tool_inputs_validate(sdk: anthropic.Anthropic, schema: dict[str, Any]) -> None:
    tool = {"name": "record", "description": "Record the data.", "input_schema": schema, "strict": True}
    message = sdk.messages.create(
        model="claude-sonnet-4-6",
        max_tokens=300,
        tools=[tool],  # type: ignore[list-item]
        tool_choice={"type": "tool", "name": "record", "disable_parallel_tool_use": True},
        messages=PROMPT,  # type: ignore[arg-type]
    )
    (call,) = [block for block in message.content if block.type == "tool_use"]
    assert call.name == "record"
    _check(json.dumps(call.input), schema, message.stop_reason)


@CASES
@given(schema=SCHEMAS)
def test_structured_outputs_validate(sdk: anthropic.Anthropic, schema: dict[str, Any]) -> None:
    message = sdk.messages.create(
        model="claude-sonnet-4-6",
        max_tokens=300,
        output_config={"format": {"type": "json_schema", "schema": schema}},
        messages=PROMPT,  # type: ignore[arg-type]
    )
    (block,) = message.content
    assert block.type == "text"
    _check(block.text, schema, message.stop_reason)


TIGHT = {
    "type": "object",
    "properties": {
        "email": {"type": "string", "format": "email"},
        "born": {"type": "string", "format": "date"},
        "notes": {"type": "array", "items": {"type": "string"}},
        "home": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "zip": {"type": "integer"}},
            "required": ["city", "zip"],
            "additionalProperties": False,
        },
    },
    "required": ["email", "born", "notes", "home"],
    "additionalProperties": False,
}


@settings(max_examples=20, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(max_tokens=st.integers(80, 200), forced=st.booleans())
def test_tight_budgets_still_end_valid(sdk: anthropic.Anthropic, max_tokens: int, forced: bool) -> None:
    """A budget too small for what the model would write: the reply is closed early, still valid,
    within `max_tokens`, and says `max_tokens` when the budget is what ended it. (The shortest valid
    call here is about 65 tokens; below that no reply could be both complete and within budget.)"""
    common: dict[str, Any] = {
        "model": "claude-sonnet-4-6",
        "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": "Write a long, detailed record with many notes."}],
    }
    if forced:
        tool = {"name": "record", "description": "Record a person.", "input_schema": TIGHT}
        message = sdk.messages.create(**common, tools=[tool], tool_choice={"type": "tool", "name": "record"})
        texts = [json.dumps(block.input) for block in message.content if block.type == "tool_use"]
    else:
        message = sdk.messages.create(**common, output_config={"format": {"type": "json_schema", "schema": TIGHT}})
        (block,) = message.content
        assert block.type == "text"
        texts = [block.text]
    assert texts
    for text in texts:
        jsonschema.validate(json.loads(text), TIGHT, format_checker=jsonschema.FormatChecker())
    assert message.usage.output_tokens <= max_tokens
    assert message.stop_reason in {"max_tokens", "tool_use" if forced else "end_turn"}
