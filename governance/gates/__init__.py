"""Safety gates: plugins with a name and a version that look at a version's images (capture photos, the asset
thumbnail) and its metadata, and return pass / flag / block with evidence. A gate that cannot run blocks.

Gates register in `REGISTRY` by name; `governance.gates.runner.run_gates` runs them and stores the verdicts."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

PASS, FLAG, BLOCK = "pass", "flag", "block"
_SEVERITY = {PASS: 0, FLAG: 1, BLOCK: 2}


@dataclass
class GateImage:
    """One image a gate looks at: its name, sha256, and pixels (BGR, uint8) or why it could not be read."""

    name: str
    sha256: str
    pixels: np.ndarray | None
    error: str = ""


@dataclass
class Finding:
    image: str
    label: str
    boxes: list[list[int]] = field(default_factory=list)  # [x, y, w, h]
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class GateContext:
    """What a gate may know about the version besides its images (for rule-based gates such as export control)."""

    category: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    quality_metrics: dict[str, Any] = field(default_factory=dict)
    territories: list[str] | None = None


@dataclass
class GateResult:
    outcome: str
    reason: str = ""
    findings: list[Finding] = field(default_factory=list)

    def evidence(self) -> dict[str, Any]:
        return {"findings": [f.__dict__ for f in self.findings]}


def worst(*outcomes: str) -> str:
    return max(outcomes, key=_SEVERITY.__getitem__, default=PASS)


class Gate(Protocol):
    name: str
    version: str

    def check(self, images: list[GateImage], context: GateContext) -> GateResult: ...


def unreadable(images: list[GateImage]) -> GateResult | None:
    """Fail closed: any image that could not be read blocks the gate, naming it."""
    bad = [f"{i.name}: {i.error}" for i in images if i.pixels is None]
    if bad:
        return GateResult(BLOCK, f"cannot read {len(bad)} image(s), so the gate cannot vouch for them: {'; '.join(bad)}")
    return None


REGISTRY: dict[str, Callable[[], Gate]] = {}


def register(factory: Callable[[], Gate]) -> Callable[[], Gate]:
    REGISTRY[factory.name] = factory  # type: ignore[attr-defined]
    return factory


def load_gates(names: list[str] | None = None) -> list[Gate]:
    """Instances of the registered gates (all, or those named), in a stable order."""
    from governance.gates import export_control, faces, logos, ocr  # noqa: F401  (registration)

    chosen = sorted(REGISTRY) if names is None else names
    unknown = [n for n in chosen if n not in REGISTRY]
    if unknown:
        raise KeyError(f"unknown gates {', '.join(unknown)}; known: {', '.join(sorted(REGISTRY))}")
    return [REGISTRY[n]() for n in chosen]
