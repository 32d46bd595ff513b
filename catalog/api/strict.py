"""Input serializers that refuse what they do not understand, instead of guessing.

DRF by default ignores unknown keys and turns `12` into `"12"` or `"true"` into True. For JSON bodies a
client that sends an unknown or wrongly typed field has a bug, and hearing about it beats silent data loss.
Multipart forms carry every value as text, so upload serializers use DRF's ordinary (parsing) fields and
only the unknown-field check.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rest_framework import serializers


class StrictInputSerializer(serializers.Serializer):
    """Rejects keys that are not writable fields of the serializer, naming each one."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, Mapping):
            accepted = sorted(name for name, field in self.fields.items() if not field.read_only)
            unknown = sorted(set(data) - set(accepted))
            if unknown:
                allowed = ", ".join(accepted) or "no fields"
                raise serializers.ValidationError(
                    {name: [f"Unknown field; this endpoint accepts: {allowed}."] for name in unknown}
                )
        return super().to_internal_value(data)


class _TextOnly:
    default_error_messages = {"invalid": "Not a valid string."}

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, str):
            self.fail("invalid")  # type: ignore[attr-defined]
        return super().to_internal_value(data)  # type: ignore[misc]


class StrictCharField(_TextOnly, serializers.CharField):
    """Text only: numbers and booleans are refused rather than converted."""


class StrictSlugField(_TextOnly, serializers.SlugField):
    pass


class StrictChoiceField(_TextOnly, serializers.ChoiceField):
    pass


class StrictIntegerField(serializers.IntegerField):
    """A JSON integer only: not a string, a float or a boolean."""

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictFloatField(serializers.FloatField):
    """A JSON number only: not a string or a boolean."""

    def to_internal_value(self, data: Any) -> float:
        if isinstance(data, bool) or not isinstance(data, (int, float)):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictBooleanField(serializers.BooleanField):
    """true or false only: not "yes", 1 or "true"."""

    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid")
        return data
