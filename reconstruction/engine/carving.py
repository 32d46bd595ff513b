"""Silhouette carving on a voxel grid: the field behind the visual hull, and the starting shape (and bounds) of
the radiance and signed-distance fields. torch is imported where it is used, so importing this stays light."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import trimesh

from reconstruction.engine.cameras import Camera
from reconstruction.engine.errors import BackendFailed, InvalidCapture

if TYPE_CHECKING:
    import torch

CHUNK = 1 << 20  # voxels per projection batch: bounds memory at a few hundred MB whatever the resolution


@dataclass
class VoxelGrid:
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
class CarvedField:
    grid: VoxelGrid
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


def voxel_grid(low: np.ndarray, high: np.ndarray, resolution: int) -> VoxelGrid:
    extent = np.asarray(high, dtype=np.float64) - np.asarray(low, dtype=np.float64)
    voxel = float(extent.max() / resolution)
    shape = tuple(max(2, int(math.ceil(e / voxel))) for e in extent)
    return VoxelGrid(origin=np.asarray(low, dtype=np.float64) + voxel / 2, voxel=voxel, shape=shape)  # type: ignore[arg-type]


def box_seen_by_all(cameras: list[Camera]) -> tuple[np.ndarray, np.ndarray]:
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


def carve(
    grid: VoxelGrid,
    cameras: list[Camera],
    masks: list[torch.Tensor],
    tolerance: int,
    device: str,
    after_view: Callable[[int], None],
) -> CarvedField:
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
    return CarvedField(grid, values.reshape(grid.shape).cpu().numpy().astype(np.float32))
