"""Visual hull: the baseline multi-view backend. Carves a voxel grid with the silhouettes of calibrated views.

For each voxel the field value is the smallest (bilinearly sampled, so sub-pixel) mask value over the views that
see it; the surface is its 0.5 level set, extracted with marching cubes. Each vertex takes its colour from the
visible view that faces it most squarely. The hull contains the object and is only as tight as the views allow:
concavities no silhouette reveals stay filled.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import trimesh

from reconstruction.engine.cameras import Camera, write_colmap_text
from reconstruction.engine.capture import Capture, check_capture_fits
from reconstruction.engine.errors import BackendFailed, Cancelled, InvalidCapture
from reconstruction.engine.params import json_schema, validate
from reconstruction.engine.protocol import MULTI_VIEW, CancelFn, Capabilities, ProgressFn, ReconstructionResult
from reconstruction.engine.resources import measure

if TYPE_CHECKING:
    import torch

# torch and scikit-image are imported where they are used, so listing backends (the web process does) stays light.

COARSE_RESOLUTION = 48
CHUNK = 1 << 20  # voxels per projection batch: bounds memory at a few hundred MB whatever the resolution


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
    padding: float = field(
        default=0.05,
        metadata={
            "description": "Margin around the coarse hull, as a fraction of its size.",
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
    version = "1.0.0"
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
        if config.device == "cuda" and not torch.cuda.is_available():
            raise InvalidCapture("device=cuda was asked for but no CUDA device is available.")
        device = "cuda" if config.device == "auto" and torch.cuda.is_available() else config.device
        device = "cpu" if device == "auto" else device
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        log: list[str] = []

        def check() -> None:
            if cancel():
                raise Cancelled("Cancelled by request.")

        with measure(device) as usage:
            progress("load", 0.0, f"loading {capture.num_views} masks")
            assert capture.cameras is not None  # check_capture_fits made sure
            masks = [torch.from_numpy(capture.load_mask(i)).to(device) for i in range(capture.num_views)]
            cameras = capture.cameras
            low, high = _initial_box(cameras)
            check()
            coarse = _carve(
                _grid(low, high, COARSE_RESOLUTION), cameras, masks, config.tolerance_views, device, lambda _: check()
            )
            occupied = coarse.values >= 0.5
            if not occupied.any():
                raise BackendFailed("The silhouettes share no common volume: the masks or cameras do not agree.")
            low, high = coarse.occupied_box(occupied, config.padding)
            log.append(f"coarse hull box {np.round(low, 4).tolist()} – {np.round(high, 4).tolist()}")

            def carve_progress(done: int) -> None:
                progress("carve", 0.05 + 0.6 * done / len(cameras), f"view {done}/{len(cameras)}")
                check()

            grid = _grid(low, high, config.resolution)
            fine = _carve(grid, cameras, masks, config.tolerance_views, device, carve_progress)
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
                coloured = _colour_vertices(mesh, capture, cameras, grid.voxel, check)
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


@dataclass
class _Grid:
    origin: np.ndarray  # centre of voxel (0, 0, 0)
    voxel: float
    shape: tuple[int, int, int]

    def centres(self, device: str) -> torch.Tensor:
        import torch

        axes = [
            torch.arange(n, dtype=torch.float64, device=device) * self.voxel + float(o)
            for n, o in zip(self.shape, self.origin, strict=True)
        ]
        return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, 3)


@dataclass
class _Field:
    grid: _Grid
    values: np.ndarray  # (X, Y, Z) in [0, 1]

    def occupied_box(self, occupied: np.ndarray, padding: float) -> tuple[np.ndarray, np.ndarray]:
        index = np.argwhere(occupied)
        low = self.grid.origin + (index.min(axis=0) - 1) * self.grid.voxel
        high = self.grid.origin + (index.max(axis=0) + 1) * self.grid.voxel
        margin = (high - low) * padding
        return low - margin, high + margin

    def surface(self) -> trimesh.Trimesh:
        from skimage.measure import marching_cubes

        padded = np.pad(self.values, 1, constant_values=0.0)  # closes the surface where it touches the box
        if padded.max() < 0.5:
            raise BackendFailed("The carved volume is empty.")
        verts, faces, _, _ = marching_cubes(padded, level=0.5, spacing=(self.grid.voxel,) * 3)
        verts = verts - self.grid.voxel + self.grid.origin
        mesh = trimesh.Trimesh(verts, faces, process=True)
        if mesh.volume < 0:
            mesh.invert()
        return mesh


def _grid(low: np.ndarray, high: np.ndarray, resolution: int) -> _Grid:
    extent = np.asarray(high, dtype=np.float64) - np.asarray(low, dtype=np.float64)
    voxel = float(extent.max() / resolution)
    shape = tuple(max(2, int(math.ceil(e / voxel))) for e in extent)
    return _Grid(origin=np.asarray(low, dtype=np.float64) + voxel / 2, voxel=voxel, shape=shape)  # type: ignore[arg-type]


def _initial_box(cameras: list[Camera]) -> tuple[np.ndarray, np.ndarray]:
    """A cube that holds everything all cameras can see together: centred on the point nearest every optical
    axis, as wide as the nearest camera is far from it (the object lies in front of every camera)."""
    centres = np.array([c.center for c in cameras])
    axes = np.array([c.R[2] for c in cameras])  # optical axis (camera z) in world coordinates
    A = np.zeros((3, 3))
    b = np.zeros(3)
    for centre, axis in zip(centres, axes, strict=True):
        projector = np.eye(3) - np.outer(axis, axis)
        A += projector
        b += projector @ centre
    target = np.linalg.lstsq(A, b, rcond=None)[0]
    half = float(np.linalg.norm(centres - target, axis=1).min())
    if not np.isfinite(half) or half <= 0:
        raise InvalidCapture("The cameras do not look at a common point.")
    return target - half, target + half


def _carve(
    grid: _Grid,
    cameras: list[Camera],
    masks: list[torch.Tensor],
    tolerance: int,
    device: str,
    after_view: Callable[[int], None],
) -> _Field:
    import torch
    import torch.nn.functional as F

    points = grid.centres(device).float()
    count = points.shape[0]
    # The (tolerance+1) smallest mask values over the views. A voxel outside a view's frame counts as background
    # there: a capture shows the whole object in every image.
    smallest = torch.ones((tolerance + 1, count), dtype=torch.float32, device=device)
    for index, (camera, mask) in enumerate(zip(cameras, masks, strict=True)):
        R = torch.as_tensor(camera.R, dtype=torch.float32, device=device)
        t = torch.as_tensor(camera.t, dtype=torch.float32, device=device)
        K = torch.as_tensor(camera.K, dtype=torch.float32, device=device)
        width, height = camera.width, camera.height
        for start in range(0, count, CHUNK):
            cam = points[start : start + CHUNK] @ R.T + t
            z = cam[:, 2]
            uv = (cam @ K.T)[:, :2] / z.clamp(min=1e-12)[:, None]
            seen = (z > 0) & (uv[:, 0] >= 0) & (uv[:, 0] <= width) & (uv[:, 1] >= 0) & (uv[:, 1] <= height)
            normalised = torch.stack([2 * uv[:, 0] / width - 1, 2 * uv[:, 1] / height - 1], dim=-1)
            sampled = F.grid_sample(
                mask[None, None], normalised[None, None], mode="bilinear", padding_mode="border", align_corners=False
            )[0, 0, 0]
            value = torch.where(seen, sampled, torch.zeros_like(sampled))
            if tolerance == 0:
                torch.minimum(smallest[0, start : start + CHUNK], value, out=smallest[0, start : start + CHUNK])
            else:
                block = torch.cat([smallest[:, start : start + CHUNK], value[None]], dim=0)
                smallest[:, start : start + CHUNK] = torch.topk(block, tolerance + 1, dim=0, largest=False).values
        after_view(index + 1)
    values = smallest[tolerance]
    return _Field(grid, values.reshape(grid.shape).cpu().numpy().astype(np.float32))


def _colour_vertices(
    mesh: trimesh.Trimesh, capture: Capture, cameras: list[Camera], voxel: float, check: Callable[[], None]
) -> float:
    """Sets vertex colours from the best-facing view in which each vertex is visible; returns the share coloured."""
    from reconstruction.engine.render import render_views

    depths = [view.depth for view in render_views(mesh, cameras)]
    vertices = np.asarray(mesh.vertices)
    normals = np.asarray(mesh.vertex_normals)
    best_score = np.full(len(vertices), -np.inf)
    colours = np.full((len(vertices), 3), 0.5)
    for index, (camera, depth) in enumerate(zip(cameras, depths, strict=True)):
        check()
        uv, z = camera.project(vertices)
        inside = camera.in_image(uv, z)
        px = np.clip(np.floor(uv).astype(int), 0, [camera.width - 1, camera.height - 1])
        surface = depth[px[:, 1], px[:, 0]]
        visible = inside & (surface > 0) & (z <= surface + 1.5 * voxel)
        toward = camera.center - vertices
        toward /= np.linalg.norm(toward, axis=1, keepdims=True)
        score = np.where(visible, np.sum(normals * toward, axis=1), -np.inf)
        better = (score > best_score) & (score > 0)
        if not better.any():
            continue
        image = capture.load_image(index)
        colours[better] = _bilinear(image, uv[better])
        best_score[better] = score[better]
    coloured = np.isfinite(best_score)
    if coloured.any() and not coloured.all():
        # Vertices no view sees (deep folds) take the colour of the nearest coloured vertex.
        from scipy.spatial import cKDTree

        _, nearest = cKDTree(vertices[coloured]).query(vertices[~coloured])
        colours[~coloured] = colours[coloured][nearest]
    rgba = np.hstack([np.clip(colours * 255 + 0.5, 0, 255), np.full((len(colours), 1), 255)]).astype(np.uint8)
    mesh.visual = trimesh.visual.ColorVisuals(mesh, vertex_colors=rgba)
    return float(coloured.mean())


def _bilinear(image: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Image values at continuous pixel coordinates (pixel centres at +0.5), clamped at the borders."""
    height, width = image.shape[:2]
    x = np.clip(uv[:, 0] - 0.5, 0, width - 1)
    y = np.clip(uv[:, 1] - 0.5, 0, height - 1)
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    x1, y1 = np.minimum(x0 + 1, width - 1), np.minimum(y0 + 1, height - 1)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    top = image[y0, x0] * (1 - fx) + image[y0, x1] * fx
    bottom = image[y1, x0] * (1 - fx) + image[y1, x1] * fx
    return top * (1 - fy) + bottom * fy
