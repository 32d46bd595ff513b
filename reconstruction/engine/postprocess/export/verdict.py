"""The verdict of an outside validator on an exported file, stored in the JSON report and on the Representation."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Verdict:
    """What `tool` (at `version`) said about one file; `passed` means zero errors."""

    tool: str
    version: str
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed}


@dataclass(frozen=True)
class ExportResult:
    """A written file, its format, size and the validator's verdict on it."""

    path: str
    format: str
    bytes: int
    verdict: Verdict
    extra_files: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path, "format": self.format, "bytes": self.bytes,
            "extra_files": self.extra_files, "validation": self.verdict.to_dict(),
        }
