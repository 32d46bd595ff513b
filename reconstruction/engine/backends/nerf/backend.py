"""The `nerf` backend: wires the shared field trainer to a density field."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reconstruction.engine.capture import Capture, check_capture_fits
from reconstruction.engine.fields.params import MIN_VIEWS, FieldParams
from reconstruction.engine.params import json_schema, validate
from reconstruction.engine.protocol import MULTI_VIEW, CancelFn, Capabilities, ProgressFn, ReconstructionResult

if TYPE_CHECKING:
    from reconstruction.engine.cameras import Camera

# torch is imported inside run: listing backends (the web process does) stays light.


@dataclass
class NerfParams(FieldParams):
    """Every parameter of the shared field trainer, with the defaults of a radiance field."""


class NerfBackend:
    name = "nerf"
    version = "1.3.0"
    capabilities = Capabilities(
        inputs=frozenset({MULTI_VIEW}),
        min_views=MIN_VIEWS,
        needs_gpu=False,
        typical_memory_mb=2048,
        needs_known_cameras=False,
        produces_texture=True,
    )
    parameter_schema: Mapping[str, Any] = json_schema(NerfParams)

    def run(
        self,
        capture: Capture,
        workdir: Path,
        *,
        params: Mapping[str, Any],
        progress: ProgressFn,
        cancel: CancelFn,
    ) -> ReconstructionResult:
        """Trains a radiance field on `capture`; writes field.pt, preview/ frames and mesh.glb under workdir."""
        from reconstruction.engine.fields.dense import DENSITY
        from reconstruction.engine.fields.training import fit_field

        config = validate(NerfParams, params)
        check_capture_fits(self.capabilities, capture, self.name)
        result = fit_field(DENSITY, self.name, config, capture, Path(workdir), progress, cancel)
        result.backend, result.backend_version = self.name, self.version
        return result

    def render_cameras(self, result_dir: Path, cameras: list[Camera], out_dir: Path) -> list[Path]:
        """Novel views of a finished run's field at `cameras`, one PNG each under out_dir."""
        from reconstruction.engine.fields.training import render_cameras

        return render_cameras(result_dir, cameras, out_dir)
