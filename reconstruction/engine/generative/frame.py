"""A view-aligned frustum voxel grid for one image: every voxel column projects to one pixel of the square crop.

Voxel (k, i, j): k is the depth index (near → far), i the row (image y down), j the column. Column (i, j) is the ray
through the crop pixel centre u = x0 + (j + 0.5)·side/R, v = y0 + (i + 0.5)·side/R, and voxel k sits at camera depth
z_k = d − e/2 + (k + 0.5)·e/D. A silhouette constraint is then simply "columns outside the mask are empty".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import trimesh

from reconstruction.engine.cameras import Camera, intrinsics
from reconstruction.engine.errors import InvalidInput

PHOTO_FOV_DEG = 40.0


@dataclass
class ViewFrame:
    """The frustum grid of one view: camera, square crop (x0, y0, side) in pixels, R×R columns, D depth bins."""

    camera: Camera
    x0: float
    y0: float
    side: float
    resolution: int
    depth_bins: int
    centre_depth: float
    depth_extent: float

    def to_dict(self) -> dict[str, Any]:
        c = self.camera
        return {
            "camera": {
                "image_name": c.image_name,
                "width": c.width,
                "height": c.height,
                "K": c.K.tolist(),
                "R": c.R.tolist(),
                "t": c.t.tolist(),
                "distortion": list(c.distortion),
            },
            "crop": [float(self.x0), float(self.y0), float(self.side)],
            "resolution": int(self.resolution),
            "depth_bins": int(self.depth_bins),
            "centre_depth": float(self.centre_depth),
            "depth_extent": float(self.depth_extent),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ViewFrame:
        c = data["camera"]
        camera = Camera(c["image_name"], c["width"], c["height"], c["K"], c["R"], c["t"], tuple(c["distortion"]))
        x0, y0, side = data["crop"]
        return cls(
            camera, x0, y0, side, data["resolution"], data["depth_bins"], data["centre_depth"], data["depth_extent"]
        )

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.depth_bins, self.resolution, self.resolution)

    def voxel_size(self) -> tuple[float, float]:
        """(lateral, depth) edge of a voxel at the frame's centre depth, in world units."""
        lateral = self.side / self.resolution * self.centre_depth / float(self.camera.K[0, 0])
        return lateral, self.depth_extent / self.depth_bins

    def column_pixels(self, i: np.ndarray, j: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Image pixel coordinates (u, v) of the rays of continuous column indices (i, j)."""
        step = self.side / self.resolution
        return self.x0 + (np.asarray(j) + 0.5) * step, self.y0 + (np.asarray(i) + 0.5) * step

    def depth_of(self, k: np.ndarray) -> np.ndarray:
        """Camera depth z of continuous depth indices k."""
        return self.centre_depth - self.depth_extent / 2 + (np.asarray(k) + 0.5) * self.depth_extent / self.depth_bins

    def index_to_world(self, ijk: np.ndarray) -> np.ndarray:
        """Continuous voxel indices (..., 3) in (k, i, j) order → world points (..., 3); integers are voxel centres."""
        ijk = np.asarray(ijk, dtype=np.float64)
        u, v = self.column_pixels(ijk[..., 1], ijk[..., 2])
        z = self.depth_of(ijk[..., 0])
        pixels = np.stack([u, v, np.ones_like(u)], axis=-1)
        camera_points = (pixels @ np.linalg.inv(self.camera.K).T) * z[..., None]
        return (camera_points - self.camera.t) @ self.camera.R

    def world_points(self) -> np.ndarray:
        """World positions of all voxel centres, (D, R, R, 3) float64."""
        D, R = self.depth_bins, self.resolution
        grid = np.stack(np.meshgrid(np.arange(D), np.arange(R), np.arange(R), indexing="ij"), axis=-1)
        return self.index_to_world(grid)

    def crop(
        self, image_or_mask: np.ndarray, size: int | None = None, *, fill: float | tuple[float, ...] = 0
    ) -> np.ndarray:
        """The square crop resized to size×size (default R), pixel-aligned with the columns; `fill` pads outside.

        uint8 stays uint8, floats stay float32, a bool mask becomes float32 coverage in [0, 1].
        """
        size = self.resolution if size is None else int(size)
        source = np.asarray(image_or_mask)
        dtype = np.float32 if source.dtype == bool or source.dtype.kind == "f" else source.dtype
        planes = source.astype(np.float32)
        if planes.ndim == 2:
            planes = planes[..., None]
        height, width, channels = planes.shape
        # Pad so the square and the filter's support lie inside the array, then resample separably: output pixel
        # centres land exactly where the columns sample, so crops stay sub-pixel aligned.
        step = self.side / size
        border = math.ceil(step) + 2
        pad_left = max(0, math.ceil(-self.x0)) + border
        pad_top = max(0, math.ceil(-self.y0)) + border
        pad_right = max(0, math.ceil(self.x0 + self.side - width)) + border
        pad_bottom = max(0, math.ceil(self.y0 + self.side - height)) + border
        fills = np.broadcast_to(np.asarray(fill, dtype=np.float32), (channels,))
        padded = np.empty((height + pad_top + pad_bottom, width + pad_left + pad_right, channels), np.float32)
        padded[:] = fills
        padded[pad_top : pad_top + height, pad_left : pad_left + width] = planes
        rows = _resampling_weights(self.y0 + pad_top, step, size, padded.shape[0])
        columns = _resampling_weights(self.x0 + pad_left, step, size, padded.shape[1])
        along_rows = (rows @ padded.reshape(padded.shape[0], -1)).reshape(size, padded.shape[1], channels)
        out = np.matmul(columns[None], along_rows)  # (size, size, channels)
        if source.dtype == bool:
            out = np.clip(out, 0.0, 1.0)
        elif np.issubdtype(dtype, np.integer):
            info = np.iinfo(dtype)
            out = np.clip(np.round(out), info.min, info.max)
        result = out.astype(dtype)
        return result[..., 0] if source.ndim == 2 else result

    def to_world_mesh(self, volume: np.ndarray, level: float = 0.5) -> trimesh.Trimesh:
        """Closed world-space surface of `volume` (D, R, R) at `level` (marching cubes on a zero-padded copy)."""
        from skimage.measure import marching_cubes

        volume = np.asarray(volume, dtype=np.float32)
        if volume.shape != self.shape:
            raise InvalidInput(f"Volume has shape {volume.shape}; this frame needs {self.shape}.")
        if not (volume > level).any():
            raise InvalidInput(f"Nothing in the volume is above the level {level}.")
        padded = np.pad(volume, 1, constant_values=min(0.0, level - 1.0))
        vertices, faces, _, _ = marching_cubes(padded, level=level)
        mesh = trimesh.Trimesh(self.index_to_world(vertices - 1.0), faces, process=True)
        if mesh.volume < 0:  # the index → world map may mirror; keep normals pointing out
            mesh.invert()
        return mesh


def _hat_integral(x: np.ndarray) -> np.ndarray:
    """∫ from −∞ to x of the unit hat function (linear interpolation's kernel)."""
    x = np.clip(x, -1.0, 1.0)
    return np.where(x < 0, (x + 1) ** 2 / 2, 1 - (1 - x) ** 2 / 2)


def _resampling_weights(start: float, step: float, size: int, length: int) -> np.ndarray:
    """(size, length) weights of output pixels [start + o·step, start + (o + 1)·step) over source pixels.

    Each output pixel is the mean over its footprint of the linearly interpolated source: antialiased when
    shrinking, plain interpolation when enlarging, and exact for a linear ramp, so output pixel o samples the
    source at start + (o + 0.5)·step like column o does.
    """
    low = start + np.arange(size, dtype=np.float64)[:, None] * step
    centres = np.arange(length, dtype=np.float64)[None, :] + 0.5
    weights = _hat_integral(low + step - centres) - _hat_integral(low - centres)
    return (weights / weights.sum(axis=1, keepdims=True)).astype(np.float32)


def _binary_mask(mask: np.ndarray) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise InvalidInput(f"A mask must be a 2-D array, not shape {mask.shape}.")
    if mask.dtype == bool:
        return mask
    if np.issubdtype(mask.dtype, np.integer):
        return mask >= 128
    return mask >= 0.5


def frame_for(
    camera: Camera,
    mask: np.ndarray,
    *,
    resolution: int = 64,
    depth_bins: int = 64,
    depth_ratio: float = 2.0,
    margin: float = 0.1,
    centre_hint: tuple[float, float, float] = (0.0, 0.0, 0.0),
) -> ViewFrame:
    """The frame of a view: the mask's bounding box made square and widened by `margin`, depth centred on the hint.

    `centre_hint` is the object centre in world coordinates. Synthetic captures (render.py) draw the mesh where it
    stands and aim the camera at its bounding-box centre; our procedural objects are centred at the origin, so the
    default (0, 0, 0) is the object centre there. The mask is bool, uint8 coverage (≥ 128) or float (≥ 0.5).
    """
    inside = _binary_mask(mask)
    if not inside.any():
        raise InvalidInput("The mask is empty: no pixel belongs to the object.")
    if resolution < 1 or depth_bins < 1:
        raise InvalidInput("resolution and depth_bins must be positive.")
    rows, columns = np.flatnonzero(inside.any(axis=1)), np.flatnonzero(inside.any(axis=0))
    top, bottom, left, right = rows[0], rows[-1] + 1, columns[0], columns[-1] + 1
    side = float(max(bottom - top, right - left)) * (1.0 + margin)
    x0 = (left + right) / 2 - side / 2
    y0 = (top + bottom) / 2 - side / 2
    depth = float(camera.to_camera(np.asarray(centre_hint, dtype=np.float64)[None])[0, 2])
    if depth <= 0:
        raise InvalidInput("The centre hint lies behind the camera.")
    extent = depth_ratio * side * depth / float(camera.K[0, 0])
    return ViewFrame(camera, float(x0), float(y0), side, int(resolution), int(depth_bins), depth, extent)


def frame_for_photo(mask: np.ndarray, width: int, height: int, **options: Any) -> ViewFrame:
    """The frame of a photo without a camera: a 40° pinhole at the origin looking down +z, object at unit depth."""
    focal = width / 2 / math.tan(math.radians(PHOTO_FOV_DEG) / 2)
    camera = Camera("photo", width, height, intrinsics(focal, focal, width / 2, height / 2))
    options.setdefault("centre_hint", (0.0, 0.0, 1.0))
    return frame_for(camera, mask, **options)


def mesh_occupancy(frame: ViewFrame, mesh: trimesh.Trimesh, *, thin_walls: bool = False) -> np.ndarray:
    """Inside/outside of a watertight mesh (or a union of watertight parts) at the voxel centres, (D, R, R) bool.

    Each connected component counts as one part and the result is their union. `thin_walls` also marks, along
    each column, the voxel nearest the middle of any solid stretch too thin to hold a voxel centre.
    """
    from reconstruction.engine.generative.occupancy import column_occupancy

    return column_occupancy(frame, mesh, thin_walls=thin_walls)
