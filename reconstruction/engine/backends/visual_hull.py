"""Visual hull: the baseline multi-view backend. Carves a voxel grid with the silhouettes of calibrated views.

For each voxel the field value is the smallest (bilinearly sampled, so sub-pixel) mask value over the views that
see it; the surface is its 0.5 level set, extracted with marching cubes. Each vertex takes its colour from the
visible view that faces it most squarely. The hull contains the object and is only as tight as the views allow:
concavities no silhouette reveals stay filled.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import trimesh

from reconstruction.engine.cameras import write_colmap_text
from reconstruction.engine.capture import Capture, check_capture_fits
from reconstruction.engine.carving import carve, silhouette_box, voxel_grid
from reconstruction.engine.devices import resolve_device
from reconstruction.engine.errors import Cancelled, InvalidCapture
from reconstruction.engine.params import json_schema, validate
from reconstruction.engine.protocol import MULTI_VIEW, CancelFn, Capabilities, ProgressFn, ReconstructionResult
from reconstruction.engine.resources import measure
from reconstruction.engine.vertex_colours import colour_vertices

if TYPE_CHECKING:
    pass

# torch and scikit-image are imported where they are used, so listing backends (the web process does) stays light.


@dataclass
class VisualHullParams:
    resolution: int = field(
        default=128,
        metadata={"description": "Voxels along the longest side of the object's box.", "minimum": 16, "maximum": 512},
    )
    tolerance_views: int = field(
        default=0,
        metadata={
            "description": "Views that may disagree (call a voxel background) before it is carved away; >0 forgives bad masks.",
            "minimum": 0,
            "maximum": 8,
        },
    )
    # The object box already holds every voxel the silhouettes may reach; a margin only coarsens the grid.
    padding: float = field(
        default=0.0,
        metadata={
            "description": "Margin around the object box (which already holds the whole silhouette hull), as a "
            "fraction of its size.",
            "minimum": 0.0,
            "maximum": 1.0,
        },
    )
    smoothing_iterations: int = field(
        default=0,
        metadata={
            "description": "Taubin smoothing passes on the extracted surface (volume-preserving).",
            "minimum": 0,
            "maximum": 100,
        },
    )
    color: bool = field(default=True, metadata={"description": "Colour vertices from the images."})
    device: str = field(
        default="auto",
        metadata={
            "description": "Torch device for carving: auto picks cuda when present.",
            "enum": ["auto", "cpu", "cuda"],
        },
    )


class VisualHullBackend:
    name = "visual-hull"
    version = "1.1.0"
    capabilities = Capabilities(
        inputs=frozenset({MULTI_VIEW}),
        min_views=3,
        needs_gpu=False,
        typical_memory_mb=1024,
        needs_known_cameras=True,
        produces_texture=False,
    )
    parameter_schema: Mapping[str, Any] = json_schema(VisualHullParams)

    def run(
        self,
        capture: Capture,
        workdir: Path,
        *,
        params: Mapping[str, Any],
        progress: ProgressFn,
        cancel: CancelFn,
    ) -> ReconstructionResult:
        """Carves, meshes and colours `capture` into workdir/mesh.glb; needs masks and known cameras."""
        import torch

        config = validate(VisualHullParams, params)
        check_capture_fits(self.capabilities, capture, self.name)
        if capture.masks is None:
            raise InvalidCapture("visual-hull needs a foreground mask per image (masks/) and the capture has none.")
        device = resolve_device(config.device)
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        log: list[str] = []

        def check() -> None:
            if cancel():
                raise Cancelled("Cancelled by request.")

        with measure(device) as usage:
            progress("load", 0.0, f"loading {capture.num_views} masks")
            assert capture.cameras is not None  # check_capture_fits made sure
            silhouettes = [capture.load_mask(i) for i in range(capture.num_views)]
            masks = [torch.from_numpy(mask).to(device) for mask in silhouettes]
            cameras = capture.cameras
            check()
            low, high = silhouette_box(cameras, silhouettes, tolerance=config.tolerance_views, padding=config.padding)
            log.append(f"object box {np.round(low, 4).tolist()} – {np.round(high, 4).tolist()}")

            def carve_progress(done: int) -> None:
                progress("carve", 0.05 + 0.6 * done / len(cameras), f"view {done}/{len(cameras)}")
                check()

            grid = voxel_grid(low, high, config.resolution)
            fine = carve(grid, cameras, masks, config.tolerance_views, device, carve_progress)
            progress("mesh", 0.7, "marching cubes")
            mesh = fine.surface()
            if config.smoothing_iterations:
                trimesh.smoothing.filter_taubin(mesh, iterations=config.smoothing_iterations)
            check()
            log.append(
                f"grid {grid.shape} voxel {grid.voxel:.6g}; {len(mesh.vertices)} vertices, {len(mesh.faces)} faces"
            )
            coloured = 0.0
            if config.color:
                progress("colour", 0.8, "colouring vertices from the best-facing visible view")
                coloured = colour_vertices(mesh, capture, cameras, grid.voxel, check)
            progress("write", 0.95, "writing mesh.glb")
            mesh_path = workdir / "mesh.glb"
            mesh.export(mesh_path)
            cameras_path = write_colmap_text(workdir / "sparse", cameras)
        progress("done", 1.0, f"{len(mesh.faces)} faces")
        return ReconstructionResult(
            mesh_path=mesh_path,
            cameras_path=cameras_path,
            metrics={
                "vertices": len(mesh.vertices),
                "faces": len(mesh.faces),
                "watertight": bool(mesh.is_watertight),
                "voxel_size": grid.voxel,
                "grid": list(grid.shape),
                "occupied_voxels": int((fine.values >= 0.5).sum()),
                "views": capture.num_views,
                "coloured_vertex_fraction": coloured,
            },
            resources=usage,
            backend=self.name,
            backend_version=self.version,
            parameters=asdict(config),
            log=log,
        )
