from dataclasses import dataclass, field

import pytest

from reconstruction.engine.errors import InvalidParameters
from reconstruction.engine.params import check_parameters, json_schema, parse_assignments, validate


@dataclass
class Example:
    size: int = field(default=8, metadata={"description": "Grid size.", "minimum": 2, "maximum": 64})
    weight: float = 0.5
    mode: str = field(default="fast", metadata={"enum": ["fast", "best"]})
    verbose: bool = False


def test_schema_from_dataclass():
    schema = json_schema(Example)
    assert schema["additionalProperties"] is False
    assert schema["properties"]["size"] == {
        "type": "integer",
        "default": 8,
        "description": "Grid size.",
        "minimum": 2,
        "maximum": 64,
    }
    assert schema["properties"]["weight"] == {"type": "number", "default": 0.5}
    assert schema["properties"]["mode"]["enum"] == ["fast", "best"]
    assert schema["properties"]["verbose"]["type"] == "boolean"


def test_validate_fills_defaults_and_converts_integers_to_floats():
    config = validate(Example, {"size": 16, "weight": 1})
    assert config == Example(size=16, weight=1.0)
    assert isinstance(config.weight, float)
    assert validate(Example, None) == Example()


def test_validate_names_every_problem():
    with pytest.raises(InvalidParameters) as info:
        validate(Example, {"size": 1, "mode": "slow", "verbose": "yes", "colour": 3, "weight": True})
    assert info.value.message == (
        "Invalid parameters: unknown parameter 'colour' (known: size, weight, mode, verbose); "
        "size must be at least 2, got 1; mode must be one of fast, best, got 'slow'; "
        'verbose must be a boolean, got "yes"; weight must be a number, got true.'
    )
    assert info.value.code == "invalid_parameters"


def test_integer_refuses_floats_and_maximum_holds():
    with pytest.raises(InvalidParameters, match="size must be an integer, got 2.5"):
        check_parameters(json_schema(Example), {"size": 2.5})
    with pytest.raises(InvalidParameters, match="size must be at most 64, got 65"):
        check_parameters(json_schema(Example), {"size": 65})


def test_parse_assignments_uses_schema_types():
    schema = json_schema(Example)
    parsed = parse_assignments(schema, ["size=12", "weight=0.25", "verbose=true", "mode=best", "other=x"])
    assert parsed == {"size": 12, "weight": 0.25, "verbose": True, "mode": "best", "other": "x"}
    with pytest.raises(InvalidParameters, match="^Parameter size must be an integer, got 'big'.$"):
        parse_assignments(schema, ["size=big"])
    with pytest.raises(InvalidParameters, match="is not of the form name=value"):
        parse_assignments(schema, ["size"])
    with pytest.raises(InvalidParameters, match="verbose must be a boolean"):
        parse_assignments(schema, ["verbose=maybe"])
