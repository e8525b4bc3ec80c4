"""The JSON Schema subset of structured outputs and strict tools (reference §11), checked up front.

Anything outside the subset gets a 400 naming the keyword and where it is, as the real API does,
instead of a grammar that silently ignores it. Non-strict tools are not held to the subset.
"""

from __future__ import annotations

from typing import Any

from sijo.errors import InvalidRequestError

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
MAX_OPTIONAL_PROPERTIES = 24
MAX_UNION_PROPERTIES = 16


def check_schema(schema: Any, field: str) -> None:
    """Raise a 400 if `schema` uses what the structured-outputs subset does not support."""
    checker = _Checker(schema, field)
    checker.walk(schema, "")
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


class _Checker:
    def __init__(self, root: Any, field: str) -> None:
        self.root = root
        self.field = field
        self.optional = 0
        self.unions = 0
        self._resolving: list[str] = []

    def fail(self, where: str, message: str) -> None:
        raise InvalidRequestError(f"{self.field}{where}: {message}")

    def walk(self, node: Any, where: str) -> None:
        if isinstance(node, bool):
            return
        if not isinstance(node, dict):
            self.fail(where, "a schema must be an object")
        for key in node:
            if key not in _STRUCTURE and key not in _ANNOTATIONS:
                self.fail(where, f"'{key}' is not supported in structured outputs schemas")
        self._check_type(node, where)
        self._check_values(node, where)
        for key in ("$defs", "definitions"):
            for name, sub in (node.get(key) or {}).items():
                self.walk(sub, f"{where}.{key}.{name}")
        if "$ref" in node:
            self._follow(node["$ref"], where)
        for i, sub in enumerate(node.get("anyOf", [])):
            self.walk(sub, f"{where}.anyOf.{i}")
        for i, sub in enumerate(node.get("allOf", [])):
            self.walk(sub, f"{where}.allOf.{i}")
        if "items" in node:
            self.walk(node["items"], f"{where}.items")
        self._check_object(node, where)

    def _check_type(self, node: dict[str, Any], where: str) -> None:
        kind = node.get("type")
        kinds = kind if isinstance(kind, list) else [kind] if kind is not None else []
        for k in kinds:
            if k not in _TYPES:
                self.fail(f"{where}.type", f"unknown type {k!r}")

    def _check_values(self, node: dict[str, Any], where: str) -> None:
        for value in node.get("enum", []):
            if isinstance(value, dict | list):
                self.fail(f"{where}.enum", "enum values must be strings, numbers, booleans or null")
        if "format" in node and node["format"] not in _FORMATS:
            self.fail(f"{where}.format", f"string format {node['format']!r} is not supported")
        if "minItems" in node and node["minItems"] not in (0, 1):
            self.fail(f"{where}.minItems", "only minItems of 0 or 1 is supported")
        if node.get("additionalProperties", False) is not False:
            self.fail(f"{where}.additionalProperties", "additionalProperties must be false")

    def _check_object(self, node: dict[str, Any], where: str) -> None:
        properties = node.get("properties") or {}
        if not isinstance(properties, dict):
            self.fail(f"{where}.properties", "properties must be an object")
        required = set(node.get("required") or [])
        for name, sub in properties.items():
            if name not in required:
                self.optional += 1
            if isinstance(sub, dict) and (isinstance(sub.get("type"), list) or "anyOf" in sub):
                self.unions += 1
            self.walk(sub, f"{where}.properties.{name}")

    def _follow(self, ref: Any, where: str) -> None:
        if not isinstance(ref, str) or not ref.startswith(("#/$defs/", "#/definitions/")):
            self.fail(f"{where}.$ref", f"only local references (#/$defs/…) are supported, not {ref!r}")
        if ref in self._resolving:
            self.fail(f"{where}.$ref", "recursive schemas are not supported")
        target = self.root
        for part in ref[2:].split("/"):
            target = target.get(part) if isinstance(target, dict) else None
        if target is None:
            self.fail(f"{where}.$ref", f"{ref!r} does not exist")
        self._resolving.append(ref)
        self.walk(target, "." + ref[2:].replace("/", "."))
        self._resolving.pop()
