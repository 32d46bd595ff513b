"""Backend parameters as dataclasses: one definition gives the defaults, the JSON schema and the validation.

Each field may carry `metadata={"description": ..., "minimum": ..., "maximum": ..., "enum": [...]}`.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar, get_type_hints

from reconstruction.engine.errors import InvalidParameters

T = TypeVar("T")
_JSON_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string"}


def json_schema(config: type) -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of a parameter dataclass: every field optional, no unknown keys."""
    hints = get_type_hints(config)
    properties: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        kind = hints[f.name]
        if kind not in _JSON_TYPES:
            raise TypeError(f"{config.__name__}.{f.name}: parameter type {kind!r} has no JSON schema mapping")
        prop: dict[str, Any] = {"type": _JSON_TYPES[kind], "default": f.default}
        for key in ("description", "minimum", "maximum", "enum"):
            if key in f.metadata:
                prop[key] = f.metadata[key]
        properties[f.name] = prop
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": config.__name__,
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
    }


def check_parameters(schema: Mapping[str, Any], params: Mapping[str, Any] | None) -> dict[str, Any]:
    """`params` checked against a flat JSON schema (types, enum, minimum, maximum, no unknown keys); returns them
    with numbers as floats, or raises InvalidParameters naming every problem found."""
    params = dict(params or {})
    properties = schema.get("properties", {})
    problems = []
    if schema.get("additionalProperties") is False:
        problems = [
            f"unknown parameter {name!r} (known: {', '.join(properties)})" for name in params if name not in properties
        ]
    values: dict[str, Any] = {}
    for name, value in params.items():
        if name not in properties:
            continue
        prop = properties[name]
        kind = prop.get("type")
        ok = {
            "boolean": isinstance(value, bool),
            "integer": isinstance(value, int) and not isinstance(value, bool),
            "number": isinstance(value, int | float) and not isinstance(value, bool),
            "string": isinstance(value, str),
        }.get(kind, True)
        if not ok:
            problems.append(f"{name} must be {'an' if kind == 'integer' else 'a'} {kind}, got {json.dumps(value)}")
            continue
        if "enum" in prop and value not in prop["enum"]:
            problems.append(f"{name} must be one of {', '.join(map(str, prop['enum']))}, got {value!r}")
        if "minimum" in prop and value < prop["minimum"]:
            problems.append(f"{name} must be at least {prop['minimum']}, got {value}")
        if "maximum" in prop and value > prop["maximum"]:
            problems.append(f"{name} must be at most {prop['maximum']}, got {value}")
        values[name] = float(value) if kind == "number" else value
    if problems:
        raise InvalidParameters("Invalid parameters: " + "; ".join(problems) + ".")
    return values


def validate(config: type[T], params: Mapping[str, Any] | None) -> T:
    """An instance of the parameter dataclass `config` from `params`, or InvalidParameters."""
    return config(**check_parameters(json_schema(config), params))


def parse_assignments(schema: Mapping[str, Any], pairs: Iterable[str]) -> dict[str, Any]:
    """`k=v` strings from a command line → typed values, using the schema's types (unknown keys kept as text
    so that `validate` reports them)."""
    properties = schema.get("properties", {})
    parsed: dict[str, Any] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep or not name:
            raise InvalidParameters(f"Parameter {pair!r} is not of the form name=value.")
        kind = properties.get(name, {}).get("type")
        try:
            if kind == "boolean":
                lowered = text.lower()
                if lowered not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError
                parsed[name] = lowered in ("true", "1", "yes")
            elif kind == "integer":
                parsed[name] = int(text)
            elif kind == "number":
                parsed[name] = float(text)
            else:
                parsed[name] = text
        except ValueError:
            raise InvalidParameters(
                f"Parameter {name} must be {'an' if kind == 'integer' else 'a'} {kind}, got {text!r}."
            ) from None
    return parsed
