"""The contract every reconstruction backend meets, and the result it hands back.

A backend is any object with `name`, `version`, `capabilities`, `parameter_schema` and `run(...)`; it is
found through the `assay.backends` entry-point group (see `registry.py`). Nothing here imports Django.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from reconstruction.engine.capture import Capture

# Input kinds a backend may accept.
MULTI_VIEW = "multi_view"
SINGLE_IMAGE = "single_image"
IMAGES_AND_MESH = "images_and_mesh"

# progress(stage, fraction of the whole run in [0, 1], message)
ProgressFn = Callable[[str, float, str], None]
# cancel() -> True once the caller wants the run stopped; backends poll it between steps.
CancelFn = Callable[[], bool]


@dataclass(frozen=True)
class Capabilities:
    inputs: frozenset[str]
    min_views: int = 1
    max_views: int | None = None
    needs_gpu: bool = False
    typical_memory_mb: int = 1024
    needs_known_cameras: bool = False
    produces_texture: bool = False

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["inputs"] = sorted(self.inputs)
        return data


@dataclass
class ResourceUsage:
    wall_s: float = 0.0
    cpu_s: float = 0.0
    gpu_s: float = 0.0
    peak_memory_mb: float = 0.0
    peak_gpu_memory_mb: float = 0.0
    device: str = "cpu"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ReconstructionResult:
    """What a run produced. Paths are inside the run's workdir; metrics are plain JSON values."""

    mesh_path: Path
    texture_paths: list[Path] = field(default_factory=list)
    cameras_path: Path | None = None  # COLMAP text folder of the poses the backend used or estimated
    metrics: dict[str, Any] = field(default_factory=dict)
    resources: ResourceUsage = field(default_factory=ResourceUsage)
    backend: str = ""
    backend_version: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "backend_version": self.backend_version,
            "parameters": self.parameters,
            "mesh": str(self.mesh_path),
            "textures": [str(p) for p in self.texture_paths],
            "cameras": str(self.cameras_path) if self.cameras_path else None,
            "metrics": self.metrics,
            "resources": self.resources.to_dict(),
            "log": self.log,
        }

    def write_report(self, path: Path) -> Path:
        """Writes result.json (paths relative to its folder when they lie inside it)."""
        data = self.to_dict()
        base = path.parent.resolve()
        for key in ("mesh", "cameras"):
            if data[key]:
                data[key] = _relative(Path(data[key]), base)
        data["textures"] = [_relative(Path(p), base) for p in data["textures"]]
        path.write_text(json.dumps(data, indent=2, sort_keys=True))
        return path

    @classmethod
    def read_report(cls, path: Path) -> ReconstructionResult:
        data = json.loads(path.read_text())
        base = path.parent
        return cls(
            mesh_path=base / data["mesh"],
            texture_paths=[base / p for p in data["textures"]],
            cameras_path=base / data["cameras"] if data.get("cameras") else None,
            metrics=data.get("metrics", {}),
            resources=ResourceUsage(**data.get("resources", {})),
            backend=data.get("backend", ""),
            backend_version=data.get("backend_version", ""),
            parameters=data.get("parameters", {}),
            log=data.get("log", []),
        )


def _relative(path: Path, base: Path) -> str:
    try:
        return str(path.resolve().relative_to(base))
    except ValueError:
        return str(path)


@runtime_checkable
class Backend(Protocol):
    name: str
    version: str
    capabilities: Capabilities
    parameter_schema: Mapping[str, Any]  # JSON Schema (draft 2020-12) of `params`

    def run(
        self,
        capture: Capture,
        workdir: Path,
        *,
        params: Mapping[str, Any],
        progress: ProgressFn,
        cancel: CancelFn,
    ) -> ReconstructionResult:
        """Reconstructs `capture` into files under `workdir`; raises EngineError subclasses on failure."""
        ...
