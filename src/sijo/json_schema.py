"""JSON Schemas in requests (tools' `input_schema`, output formats), checked before anything walks
or compiles them.

Every schema must be a JSON Schema at all (`check_json_schema`): each keyword's value of the type
draft 2020-12 gives it, nested at most `MAX_DEPTH` deep, and at most `MAX_REACH` deep with its
references followed. The real API answers a tool whose schema is not with a 400 ("JSON schema is
invalid"), and the grammar builder, the constraint compiler and the prompt renderer must never meet a
schema they would crash on: the compiler (llguidance) compiles a referenced schema where it is first
referenced, recursively, so a chain of a few thousand references overflows its thread's stack and
takes the whole process down.

Strict tools and output formats are also held to the structured-outputs subset (reference §11,
`check_schema`): anything outside it gets a 400 naming the keyword and where it is, as the real API
does, instead of a grammar that silently ignores it. Non-strict tools are not held to the subset.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, NoReturn
from urllib.parse import unquote

import llguidance

from sijo.errors import InvalidRequestError, shown

MAX_DEPTH = 100  # levels of JSON nesting; the constraint compiler stops at 128
# Levels of nesting with references followed. The compiler takes up to 4 kB of stack a level (1,000
# levels took 4 MB; 2,000 crashed), and a worker thread has 8 MB where the stack limit is the usual.
MAX_REACH = 1000
MAX_OPTIONAL_PROPERTIES = 24
MAX_UNION_PROPERTIES = 16

_ANNOTATIONS = frozenset(
    {
        "description",
        "title",
        "default",
        "examples",
        "$schema",
        "$id",
        "$comment",
        "deprecated",
        "readOnly",
        "writeOnly",
    }
)
_STRUCTURE = frozenset(
    {
        "type",
        "properties",
        "required",
        "additionalProperties",
        "items",
        "enum",
        "const",
        "anyOf",
        "allOf",
        "$ref",
        "$defs",
        "definitions",
        "format",
        "minItems",
        "pattern",
    }
)
_FORMATS = frozenset(
    {"date-time", "time", "date", "duration", "email", "hostname", "uri", "ipv4", "ipv6", "uuid"}
)
_TYPES = frozenset({"object", "array", "string", "integer", "number", "boolean", "null"})

Path = tuple[str, ...]


def check_json_schema(schema: Any, field: str) -> None:
    """Raise a 400 naming the place unless `schema` is a JSON Schema (draft 2020-12): every
    keyword's value of its type, nested at most `MAX_DEPTH` deep (`MAX_REACH` with its references
    followed)."""
    _check_json_schema(schema, field)


def check_schema(schema: Any, field: str) -> None:
    """Raise a 400 if `schema` is not a JSON Schema, or uses what the structured-outputs subset does
    not support."""
    reach = _check_json_schema(schema, field)
    checker = _Checker(field)
    checker.walk(schema, ())
    checker.check_refs()
    if reach.loop is not None:
        checker.fail(reach.loop, "recursive schemas are not supported")
    if checker.optional > MAX_OPTIONAL_PROPERTIES:
        raise InvalidRequestError(
            f"{field}: the schema has {checker.optional} optional properties, more than the "
            f"{MAX_OPTIONAL_PROPERTIES} allowed"
        )
    if checker.unions > MAX_UNION_PROPERTIES:
        raise InvalidRequestError(
            f"{field}: the schema has {checker.unions} union-typed properties, more than the "
            f"{MAX_UNION_PROPERTIES} allowed"
        )


def _check_json_schema(schema: Any, field: str) -> _Reach:
    heights = _heights(schema)
    if heights.get(id(schema), 0) > MAX_DEPTH:
        raise InvalidRequestError(f"{field}: the schema is nested more than {MAX_DEPTH} levels deep")
    _check_node(schema, field)
    reach = _References(schema, heights).reach()
    if reach.levels > MAX_REACH:
        raise InvalidRequestError(
            f"{field}: the schema is nested more than {MAX_REACH} levels deep with its references followed"
        )
    return reach


def _containers(node: Any) -> Iterator[Any]:
    """The objects and arrays directly inside `node`."""
    values = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
    return (value for value in values if isinstance(value, dict | list))


def _heights(root: Any) -> dict[int, int]:
    """Each object's and array's levels of nesting (itself included), by `id`; without recursion,
    since the point is that a deeper value must not exhaust the stack."""
    heights: dict[int, int] = {}
    stack = [(root, False)]
    while stack:
        node, counted = stack.pop()
        if counted:
            heights[id(node)] = 1 + max((heights[id(child)] for child in _containers(node)), default=0)
        elif isinstance(node, dict | list):
            stack.append((node, True))
            stack.extend((child, False) for child in _containers(node))
    return heights


def _is_schema(value: Any) -> bool:
    return isinstance(value, dict | bool)


def _is_number(value: Any) -> bool:
    """A JSON number: not a boolean, nor NaN or an infinity (which Python's JSON reader takes)."""
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, int) and not isinstance(value, bool)


def _is_count(value: Any) -> bool:
    integral = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    return _is_number(value) and integral and value >= 0


def _is_names(value: Any) -> bool:
    """An array of unique strings."""
    return (
        isinstance(value, list)
        and all(isinstance(name, str) for name in value)
        and len(set(value)) == len(value)
    )


def _is_type(value: Any) -> bool:
    names = value if isinstance(value, list) else [value]
    return bool(names) and _is_names(names) and all(name in _TYPES for name in names)


# What draft 2020-12's meta-schema says each keyword's value is (with `definitions` and
# `dependencies`, which it still describes); keywords it does not know are allowed, and ignored.
_SCHEMA = frozenset(
    "items contains additionalProperties propertyNames if then else not "
    "unevaluatedItems unevaluatedProperties contentSchema".split()
)
_SCHEMA_MAPS = frozenset("properties patternProperties $defs definitions dependentSchemas".split())
_SCHEMA_LISTS = frozenset("allOf anyOf oneOf prefixItems".split())
_STRINGS = frozenset(
    "$id $schema $ref $anchor $dynamicRef $dynamicAnchor $recursiveRef $comment title description "
    "format pattern contentEncoding contentMediaType".split()
)
_BOOLEANS = frozenset("deprecated readOnly writeOnly uniqueItems $recursiveAnchor".split())
_NUMBERS = frozenset("maximum exclusiveMaximum minimum exclusiveMinimum".split())
_COUNTS = frozenset(
    "maxLength minLength maxItems minItems maxContains minContains maxProperties minProperties".split()
)
_Rule = tuple[Callable[[Any], bool], str]
_RULES: dict[str, _Rule] = {
    **dict.fromkeys(_SCHEMA, (_is_schema, "must be a schema (an object or a boolean)")),
    **dict.fromkeys(_SCHEMA_MAPS, (lambda v: isinstance(v, dict), "must be an object")),
    **dict.fromkeys(
        _SCHEMA_LISTS, (lambda v: isinstance(v, list) and len(v) > 0, "must be a non-empty array")
    ),
    **dict.fromkeys(_STRINGS, (lambda v: isinstance(v, str), "must be a string")),
    **dict.fromkeys(_BOOLEANS, (lambda v: isinstance(v, bool), "must be a boolean")),
    **dict.fromkeys(_NUMBERS, (_is_number, "must be a number")),
    **dict.fromkeys(_COUNTS, (_is_count, "must be a non-negative integer")),
    **dict.fromkeys(("enum", "examples"), (lambda v: isinstance(v, list), "must be an array")),
    "multipleOf": (lambda v: _is_number(v) and v > 0, "must be a number greater than 0"),
    "type": (_is_type, f"must be one of {', '.join(sorted(_TYPES))}, or an array of them without repeats"),
    "required": (_is_names, "must be an array of unique strings"),
    "dependentRequired": (
        lambda v: isinstance(v, dict) and all(_is_names(names) for names in v.values()),
        "must be an object of arrays of unique strings",
    ),
    "dependencies": (
        lambda v: isinstance(v, dict) and all(_is_schema(d) or _is_names(d) for d in v.values()),
        "must be an object of schemas or arrays of unique strings",
    ),
    "$vocabulary": (
        lambda v: isinstance(v, dict) and all(isinstance(on, bool) for on in v.values()),
        "must be an object of booleans",
    ),
}


def _check_node(node: Any, where: str) -> None:
    if isinstance(node, bool):
        return
    if not isinstance(node, dict):
        raise InvalidRequestError(f"{where}: a schema must be an object or a boolean")
    for key, value in node.items():
        rule = _RULES.get(key)
        if rule is not None and not rule[0](value):
            raise InvalidRequestError(f"{where}.{key}: {key} {rule[1]}")
        for place, sub in _subschemas(key, value):
            _check_node(sub, ".".join((where, key, *place)))


def _subschemas(key: str, value: Any) -> Iterator[tuple[Path, Any]]:
    """The schemas inside a keyword's (well-typed) value, with their place under it."""
    if key in _SCHEMA:
        yield (), value
    elif key in _SCHEMA_MAPS:
        yield from (((name,), sub) for name, sub in value.items())
    elif key in _SCHEMA_LISTS:
        yield from (((str(i),), sub) for i, sub in enumerate(value))
    elif key == "dependencies":
        yield from (((name,), sub) for name, sub in value.items() if _is_schema(sub))


class _Checker:
    """The subset, on a schema `check_json_schema` has passed: every keyword's value is well-typed."""

    def __init__(self, field: str) -> None:
        self.field = field
        self.optional = 0
        self.unions = 0
        self._schemas: set[Path] = set()  # where a schema is, as a `$ref` would name it
        self._refs: list[tuple[Path, str]] = []  # each `$ref`: where it is, what it names

    def fail(self, where: Path, message: str) -> NoReturn:
        raise InvalidRequestError(f"{self.field}{''.join('.' + part for part in where)}: {message}")

    def walk(self, node: Any, where: Path) -> None:
        self._schemas.add(where)
        if isinstance(node, bool):
            return
        for key in node:
            if key not in _STRUCTURE and key not in _ANNOTATIONS:
                self.fail(where, f"'{shown(key)}' is not supported in structured outputs schemas")
        self._check_values(node, where)
        if "$ref" in node:
            self._refs.append((where, node["$ref"]))
        for key in ("$defs", "definitions"):
            for name, sub in node.get(key, {}).items():
                self.walk(sub, (*where, key, name))
        for key in ("anyOf", "allOf"):
            for i, sub in enumerate(node.get(key, [])):
                self.walk(sub, (*where, key, str(i)))
        if "items" in node:
            self.walk(node["items"], (*where, "items"))
        self._check_object(node, where)

    def _check_values(self, node: dict[str, Any], where: Path) -> None:
        for value in node.get("enum", []):
            if isinstance(value, dict | list):
                self.fail((*where, "enum"), "enum values must be strings, numbers, booleans or null")
        if "format" in node and node["format"] not in _FORMATS:
            self.fail((*where, "format"), f"string format {shown(repr(node['format']))} is not supported")
        if "minItems" in node and node["minItems"] not in (0, 1):
            self.fail((*where, "minItems"), "only minItems of 0 or 1 is supported")
        if node.get("additionalProperties", False) is not False:
            self.fail((*where, "additionalProperties"), "additionalProperties must be false")
        if "pattern" in node:
            problem = _regex_problem(node["pattern"])
            if problem is not None:
                self.fail((*where, "pattern"), f"pattern is not a supported regular expression: {problem}")

    def _check_object(self, node: dict[str, Any], where: Path) -> None:
        required = set(node.get("required", []))
        for name, sub in node.get("properties", {}).items():
            if name not in required:
                self.optional += 1
            if isinstance(sub, dict) and (isinstance(sub.get("type"), list) or "anyOf" in sub):
                self.unions += 1
            self.walk(sub, (*where, "properties", name))

    def check_refs(self) -> None:
        """Every `$ref` points to a schema in this one."""
        for where, ref in self._refs:
            self._check_ref(where, ref)

    def _check_ref(self, where: Path, ref: str) -> None:
        if not ref.startswith(("#/$defs/", "#/definitions/")):
            self.fail(
                (*where, "$ref"), f"only local references (#/$defs/…) are supported, not {shown(repr(ref))}"
            )
        if _pointer_path(ref) not in self._schemas:
            self.fail((*where, "$ref"), f"{shown(repr(ref))} does not point to a schema in this one")


def _regex_problem(pattern: str) -> str | None:
    """Why the constraint compiler cannot take `pattern`, or None. Its dialect is not Python's
    (`re` would refuse `(?<name>…)` and `\\p{L}`, which it takes), so it is asked itself."""
    try:
        llguidance.RegexCompiler().compile(pattern)
    except ValueError as exc:
        # Its message quotes the pattern and the grammar it was put in; the reason is on a line of its own.
        lines = str(exc).splitlines() or [""]
        reasons = [line.removeprefix("error: ") for line in lines if line.startswith("error: ")]
        return shown(reasons[0] if reasons else lines[0].partition("(in regex): ")[2] or lines[0])
    return None


@dataclass(frozen=True, slots=True)
class _Reach:
    levels: int  # at most this many levels of nesting, references followed
    loop: Path | None  # where a `$ref` leads back into a schema that contains it, if one does


class _References:
    """How deep the constraint compiler recurses through a schema. It compiles a referenced schema
    where it is first referenced (later references link to it), so any path it recurses along is at
    most a schema's own levels plus the most that a reference inside it leads to, counted here.
    Where that cannot be counted exactly, a bound that holds anyway: references that loop may lead
    through every schema they point to once, and references this does not resolve (anything but
    `#/…` pointers, or pointers under a nested `$id`) may each lead as deep as the whole schema."""

    def __init__(self, root: Any, heights: dict[int, int]) -> None:
        self._root = root
        self._heights = heights
        self._leads: dict[int, int] = {}  # a schema → the most levels a reference inside it leads to
        self._targets: set[int] = set()  # the schemas references point to
        self._refs = 0
        self._unresolved = False
        dialect = root.get("$schema") if isinstance(root, dict) else None
        old = isinstance(dialect, str) and ("draft-04" in dialect or "draft-03" in dialect)
        self._ids = ("$id", "id") if old else ("$id",)

    def reach(self) -> _Reach:
        loop = self._follow()
        height = self._heights.get(id(self._root), 0)
        if self._unresolved:
            return _Reach((self._refs + 1) * height, loop)
        if loop is not None:
            return _Reach(height + sum(self._heights[target] for target in self._targets), loop)
        return _Reach(height + self._leads.get(id(self._root), 0), None)

    def _follow(self) -> Path | None:
        """Depth first over subschemas and references (without recursion: chains may be long),
        filling `_leads`; the first reference found to loop, if one does."""
        loop: Path | None = None
        trail = {id(self._root)}
        stack: list[tuple[Any, Path, list[tuple[Any, Path, bool]], int]] = [
            (self._root, (), self._edges(self._root, ()), 0)
        ]
        while stack:
            node, where, edges, done = stack[-1]
            if done == len(edges):
                stack.pop()
                trail.discard(id(node))
                self._leads[id(node)] = (
                    max(
                        (self._leads.get(id(sub), 0) + (self._heights[id(sub)] if ref else 0))
                        for sub, _, ref in edges
                    )
                    if edges
                    else 0
                )
                continue
            stack[-1] = (node, where, edges, done + 1)
            sub, place, _ = edges[done]
            if id(sub) in trail:
                loop = loop or (*where, "$ref")
            elif id(sub) not in self._leads:
                trail.add(id(sub))
                stack.append((sub, place, self._edges(sub, place), 0))
        return loop

    def _edges(self, node: Any, where: Path) -> list[tuple[Any, Path, bool]]:
        """The objects a schema leads to: its subschemas, and what its `$ref` points to (`True`)."""
        if not isinstance(node, dict):
            return []
        edges = [
            (sub, (*where, key, *place), False)
            for key, value in node.items()
            for place, sub in _subschemas(key, value)
            if isinstance(sub, dict)
        ]
        nested_id = node is not self._root and any(isinstance(node.get(key), str) for key in self._ids)
        dynamic = "$dynamicRef" in node or "$recursiveRef" in node
        ref = node.get("$ref")
        target = _pointed(self._root, ref) if isinstance(ref, str) else None
        self._refs += dynamic + isinstance(ref, str)
        self._unresolved |= nested_id or dynamic or (isinstance(ref, str) and target is None)
        if target is not None and isinstance(target[0], dict):
            self._targets.add(id(target[0]))
            edges.append((target[0], target[1], True))
        return edges


_INDEX = re.compile(r"0|[1-9][0-9]{0,8}")


def _pointed(root: Any, ref: str) -> tuple[Any, Path] | None:
    """What a local JSON pointer (`#`, `#/$defs/a`; RFC 6901, in a URI fragment) points to, and
    where; None if `ref` is not one, or points nowhere."""
    if ref != "#" and not ref.startswith("#/"):
        return None
    node, path = root, _pointer_path(ref)
    for part in path:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and _INDEX.fullmatch(part) and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node, path


def _pointer_path(ref: str) -> Path:
    """The keys of a JSON pointer in a URI fragment: percent-decoded, then `~1` is `/`, `~0` is `~`."""
    parts = ref[2:].split("/") if ref.startswith("#/") else []
    return tuple(unquote(part).replace("~1", "/").replace("~0", "~") for part in parts)
