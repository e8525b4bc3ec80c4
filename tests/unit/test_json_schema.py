"""JSON Schemas checked up front: well-formed values for every keyword, the strict subset, bounded
depth, references followed once and without recursion."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest

from sijo.errors import InvalidRequestError
from sijo.json_schema import MAX_DEPTH, MAX_REACH, check_json_schema, check_schema
from sijo.output.grammar import json_grammar

FIELD = "output_config.format.schema"

# A keyword with a value of the wrong type, and what the 400 says (after the keyword's path).
BAD_VALUES: list[tuple[dict[str, Any], str]] = [
    ({"enum": 5}, "enum: enum must be an array"),
    ({"anyOf": 5}, "anyOf: anyOf must be a non-empty array"),
    ({"$defs": [1, 2]}, "$defs: $defs must be an object"),
    ({"type": {}}, "type: type must be one of array, boolean"),
    ({"type": [[]]}, "type: type must be one of array, boolean"),
    ({"format": []}, "format: format must be a string"),
    ({"required": 5}, "required: required must be an array of unique strings"),
    ({"required": [["a"]]}, "required: required must be an array of unique strings"),
]


def nested(fragment: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": {"a": fragment}, "required": ["a"]}


def array_of_depth(levels: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(levels):
        schema = {"type": "array", "items": schema}
    return schema


def message(check: Any, schema: Any) -> str:
    with pytest.raises(InvalidRequestError) as caught:
        check(schema, FIELD)
    return str(caught.value)


@pytest.mark.parametrize("check", [check_schema, check_json_schema])
@pytest.mark.parametrize(("fragment", "problem"), BAD_VALUES)
def test_a_bad_value_is_a_400_naming_its_path(check: Any, fragment: dict[str, Any], problem: str) -> None:
    assert message(check, {"type": "object", **fragment}).startswith(f"{FIELD}.{problem}")
    assert message(check, nested(fragment)).startswith(f"{FIELD}.properties.a.{problem}")


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        ({"$defs": {"d": 5}}, f"{FIELD}.$defs.d: a schema must be an object or a boolean"),
        ({"items": [{"type": "string"}]}, f"{FIELD}.items: items must be a schema (an object or a boolean)"),
        ({"anyOf": []}, f"{FIELD}.anyOf: anyOf must be a non-empty array"),
        ({"anyOf": [{"type": "string"}, 5]}, f"{FIELD}.anyOf.1: a schema must be an object or a boolean"),
        (
            {"not": {"items": {"minItems": -1}}},
            f"{FIELD}.not.items.minItems: minItems must be a non-negative",
        ),
        ({"minLength": 1.5}, f"{FIELD}.minLength: minLength must be a non-negative integer"),
        ({"minimum": float("nan")}, f"{FIELD}.minimum: minimum must be a number"),
        ({"multipleOf": 0}, f"{FIELD}.multipleOf: multipleOf must be a number greater than 0"),
        ({"pattern": 5}, f"{FIELD}.pattern: pattern must be a string"),
        ({"type": "text"}, f"{FIELD}.type: type must be one of"),
        ({"type": ["string", "string"]}, f"{FIELD}.type: type must be one of"),
        ({"required": ["a", "a"]}, f"{FIELD}.required: required must be an array of unique strings"),
        ({"dependencies": {"a": 5}}, f"{FIELD}.dependencies: dependencies must be an object of schemas"),
        ({"uniqueItems": "yes"}, f"{FIELD}.uniqueItems: uniqueItems must be a boolean"),
    ],
)
def test_every_keyword_of_json_schema_is_held_to_its_type(schema: dict[str, Any], expected: str) -> None:
    assert message(check_json_schema, schema).startswith(expected)


def test_a_non_strict_schema_may_use_anything_well_formed() -> None:
    schema = {
        "type": "object",
        "properties": {"n": {"type": "integer", "minimum": 0}, "s": {"oneOf": [{"type": "string"}, True]}},
        "additionalProperties": {"type": "string"},
        "x-vendor": {"anything": [1, {"goes": None}]},
        "dependencies": {"n": ["s"], "s": {"required": ["n"]}},
    }
    check_json_schema(schema, FIELD)
    with pytest.raises(InvalidRequestError, match="is not supported in structured outputs schemas"):
        check_schema(schema, FIELD)


@pytest.mark.parametrize("levels", [MAX_DEPTH, 10_000])
def test_deep_nesting_is_a_400_not_a_recursion_error(levels: int) -> None:
    for check in (check_schema, check_json_schema):
        assert message(check, array_of_depth(levels)) == (
            f"{FIELD}: the schema is nested more than {MAX_DEPTH} levels deep"
        )
    check_schema(array_of_depth(MAX_DEPTH - 1), FIELD)


def test_deep_values_count_too() -> None:
    deep: Any = 1
    for _ in range(MAX_DEPTH):
        deep = [deep]
    assert "nested more than" in message(check_json_schema, {"const": deep})


def reference(ref: str) -> dict[str, Any]:
    return {"$ref": ref}


def chain(
    length: int, *, last: dict[str, Any], link: Callable[[str], dict[str, Any]] = reference
) -> dict[str, Any]:
    """`length` definitions, each a `link` to the next, then `last`."""
    defs: dict[str, Any] = {f"d{i}": link(f"#/$defs/d{i + 1}") for i in range(length)}
    defs[f"d{length}"] = last
    return {"type": "object", "$defs": defs, "properties": {"x": {"$ref": "#/$defs/d0"}}, "required": ["x"]}


def test_a_long_chain_of_references_is_followed_without_recursion() -> None:
    check_schema(chain(MAX_REACH - 10, last={"type": "string"}), FIELD)
    recursive = chain(500, last={"$ref": "#/$defs/d0"})
    assert message(check_schema, recursive) == f"{FIELD}.$defs.d500.$ref: recursive schemas are not supported"


@pytest.mark.parametrize("check", [check_schema, check_json_schema])
@pytest.mark.parametrize("last", [{"type": "string"}, {"$ref": "#/$defs/d0"}, {"$ref": "#/$defs/d0/$ref"}])
def test_references_may_not_lead_deeper_than_the_compiler_can_follow(
    check: Any, last: dict[str, Any]
) -> None:
    """The compiler recurses into each referenced schema: 3,000 in a row overflowed its stack."""
    assert message(check, chain(3000, last=last)) == (
        f"{FIELD}: the schema is nested more than {MAX_REACH} levels deep with its references followed"
    )


# A program that compiles the grammar on its stdin in a thread with the usual 8 MB of stack, as the
# engine does; in a process of its own, since a stack overflow kills the process.
COMPILE = """
import sys, threading, llguidance
grammar = sys.stdin.read()
threading.stack_size(8 << 20)
thread = threading.Thread(target=lambda: print(llguidance.LLMatcher.validate_grammar(grammar, None) or "ok"))
thread.start()
thread.join()
"""


@pytest.mark.parametrize(
    ("link", "height"),
    [
        (reference, 1),
        (lambda ref: {"type": "array", "items": {"type": "array", "items": {"$ref": ref}}}, 3),
    ],
)
def test_the_deepest_references_let_through_compile(
    link: Callable[[str], dict[str, Any]], height: int
) -> None:
    """MAX_REACH leaves the compiler room: these took it ~4 MB (and twice as deep crashed it)."""
    schema = chain((MAX_REACH - 10) // height, last={"type": "string"}, link=link)
    check_schema(schema, FIELD)
    grammar = json_grammar(schema)
    done = subprocess.run([sys.executable, "-c", COMPILE], input=grammar, capture_output=True, text=True)
    assert (done.returncode, done.stdout.strip()) == (0, "ok"), done.stderr


@pytest.mark.parametrize(
    "schema",
    [
        # references the check cannot resolve count as deep as the whole schema, each
        {"$defs": {f"d{i}": {"$id": f"https://example.com/d{i}", "$ref": f"d{i + 1}"} for i in range(400)}},
        {"$defs": {f"d{i}": {"$anchor": f"d{i}", "anyOf": [{"$ref": f"#d{i + 1}"}]} for i in range(400)}},
    ],
)
def test_references_the_check_cannot_follow_are_bounded_too(schema: dict[str, Any]) -> None:
    assert "with its references followed" in message(check_json_schema, schema)


def test_a_schema_reached_many_ways_is_followed_once() -> None:
    """Each definition points twice to the next: 2^20 paths (20 s, following each anew)."""
    defs: dict[str, Any] = {
        f"d{i}": {"anyOf": [{"$ref": f"#/$defs/d{i + 1}"}, {"$ref": f"#/$defs/d{i + 1}"}]} for i in range(20)
    }
    defs["d20"] = {"type": "string"}
    start = time.perf_counter()
    check_schema({"type": "object", "$defs": defs, "properties": {"x": {"$ref": "#/$defs/d0"}}}, FIELD)
    assert time.perf_counter() - start < 1


@pytest.mark.parametrize(
    ("ref", "defs", "expected"),
    [
        ("#/$defs/a/type", {"a": {"type": "string"}}, "'#/$defs/a/type' does not point to a schema"),
        ("#/$defs/b", {"a": {"type": "string"}}, "'#/$defs/b' does not point to a schema"),
        ("#/$defs/a", {"a": {"properties": {"b": {"$ref": "#/$defs/a"}}}}, "recursive schemas"),
        (
            "#/$defs/a/properties/b",
            {"a": {"properties": {"b": {"items": {"$ref": "#/$defs/a"}}}}},
            "recursive",
        ),
    ],
)
def test_references_must_point_to_a_schema_and_not_loop(
    ref: str, defs: dict[str, Any], expected: str
) -> None:
    schema = {"type": "object", "$defs": defs, "properties": {"x": {"$ref": ref}}}
    assert expected in message(check_schema, schema)


def test_references_follow_json_pointer_escapes_and_array_indices() -> None:
    schema = {
        "type": "object",
        "$defs": {"a/b~c": {"type": "string"}, "u": {"anyOf": [{"type": "integer"}, {"type": "null"}]}},
        "properties": {"x": {"$ref": "#/$defs/a~1b~0c"}, "y": {"$ref": "#/$defs/u/anyOf/0"}},
        "required": ["x", "y"],
    }
    check_schema(schema, FIELD)


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        ("[", "unclosed character class"),
        ("a{2,1}", "invalid repetition count range"),
        ("(?=a)a", "look-around"),
    ],
)
def test_a_strict_pattern_must_compile(pattern: str, reason: str) -> None:
    text = message(check_schema, nested({"type": "string", "pattern": pattern}))
    assert text.startswith(f"{FIELD}.properties.a.pattern: pattern is not a supported regular expression: ")
    assert reason in text
    check_json_schema(nested({"type": "string", "pattern": pattern}), FIELD)  # not held to the subset


def test_patterns_are_read_as_the_constraint_compiler_reads_them() -> None:
    """Python's `re` would refuse both."""
    check_schema(nested({"type": "string", "pattern": r"^(?<word>\p{L}+)$"}), FIELD)


def test_the_grammar_does_not_trip_over_an_odd_format() -> None:
    assert '"format": []' in json_grammar({"type": "string", "format": []})
