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

# A voxel of silhouette_coverage's grid whose image is wider than this share of the frame means wrong cameras:
# right ones see the object's box at about a third of the frame or more, so a voxel (1/64 of it) at under 1%.
MAX_FOOTPRINT = 0.05
CHUNK = 1 << 20  # voxels per projection batch: bounds memory at a few hundred MB whatever the resolution
# Voxels across the grid of each pass that bounds the object: the cameras' common view, then the first box.
BOX_RESOLUTIONS = (32, 64)
FRAME_SLACK = 1.25  # factor on the tangent of the frame's corner angle (see _frame_angle)


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


def axes_convergence(cameras: list[Camera]) -> np.ndarray:
    """The point closest, in least squares, to every camera's optical axis."""
    A = np.zeros((3, 3))
    b = np.zeros(3)
    for camera in cameras:
        axis = camera.R[2]  # optical axis (camera z) in world coordinates
        projector = np.eye(3) - np.outer(axis, axis)
        A += projector
        b += projector @ camera.center
    return np.linalg.lstsq(A, b, rcond=None)[0]


def box_seen_by_all(cameras: list[Camera]) -> tuple[np.ndarray, np.ndarray]:
    """A cube that holds everything all cameras can see together: centred on the point nearest every optical
    axis, as wide as the nearest camera is far from it (the object lies in front of every camera)."""
    target = axes_convergence(cameras)
    half = float(np.linalg.norm(np.array([c.center for c in cameras]) - target, axis=1).min())
    if not np.isfinite(half) or half <= 0:
        raise InvalidCapture("The cameras do not look at a common point.")
    return target - half, target + half


def silhouette_box(
    cameras: list[Camera], masks: list[np.ndarray], *, tolerance: int = 0, padding: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """A box that holds every part of the object the masks show, thin ones included, grown by `padding` × its size.

    Carving a coarse grid by voxel centres loses parts thinner than a voxel (a chair's legs), so a box around
    such a hull cuts them off. Here a voxel stays unless, in more than `tolerance` views, no object pixel lies
    within the radius of the voxel's projection. Two passes: over the cameras' common view, then over the first
    box, so the box is tight to a fraction of a voxel of the second grid.
    """
    gaps = _gaps(masks)
    low, high = box_seen_by_all(cameras)
    for resolution in BOX_RESOLUTIONS:
        grid = voxel_grid(low, high, resolution)
        kept = _may_hold_object(grid, cameras, gaps, tolerance)
        if not kept.any():
            raise BackendFailed("The silhouettes share no common volume: the masks or cameras do not agree.")
        index = np.argwhere(kept)
        low = grid.origin + (index.min(axis=0) - 0.5) * grid.voxel
        high = grid.origin + (index.max(axis=0) + 0.5) * grid.voxel
    margin = (high - low) * padding
    return low - margin, high + margin


def silhouette_coverage(cameras: list[Camera], masks: list[np.ndarray], resolution: int = 64) -> np.ndarray:
    """Per view, the share of its mask pixels that the conservative visual hull of all views covers when projected.

    With right cameras and masks this is 1 up to the mask's noise: the object lies inside the hull (a voxel stays
    when its footprint reaches the mask in every view), so every mask pixel's ray meets a kept voxel. A misplaced
    camera carves matter away that the other views see, so their coverage drops: a check of cameras estimated
    from the images that needs no ground truth. Zeros when the silhouettes share no volume at all.
    """
    try:
        low, high = silhouette_box(cameras, masks)
    except (BackendFailed, InvalidCapture):
        return np.zeros(len(cameras))
    grid = voxel_grid(low, high, resolution)
    kept = _may_hold_object(grid, cameras, _gaps(masks), 0).reshape(-1)
    return _covered_shares(grid, grid.centres("cpu").numpy()[kept], cameras, masks)


def coverage_without_each(cameras: list[Camera], masks: list[np.ndarray], resolution: int = 64) -> np.ndarray:
    """(V, V): row v is silhouette_coverage of the other views with view v left out (its own entry 1).

    Which camera, once left out, lets the others' silhouettes agree: a misplaced camera uncovers the other views more
    than its own, so the least covered view does not name it. One carving serves every row: the hull without view v
    is the voxels no view rules out, and those only v rules out.
    """
    count = len(cameras)
    try:
        low, high = silhouette_box(cameras, masks, tolerance=1)
    except (BackendFailed, InvalidCapture):
        return np.zeros((count, count))
    grid = voxel_grid(low, high, resolution)
    misses, last = _misses(grid, cameras, _gaps(masks))
    centres = grid.centres("cpu").numpy()
    shares = np.ones((count, count))
    for left_out in range(count):
        kept = (misses == 0) | ((misses == 1) & (last == left_out))
        others = [i for i in range(count) if i != left_out]
        shares[left_out, others] = _covered_shares(
            grid, centres[kept], [cameras[i] for i in others], [masks[i] for i in others]
        )
    return shares


def most_contradicting_view(cameras: list[Camera], masks: list[np.ndarray]) -> tuple[int, float]:
    """The view whose leaving out lets the other silhouettes agree best (coverage_without_each), and the least
    coverage of the others without it."""
    without = coverage_without_each(cameras, masks)
    view = int(without.min(axis=1).argmax())
    return view, float(without[view].min())


def _covered_shares(grid: VoxelGrid, centres: np.ndarray, cameras: list[Camera], masks: list[np.ndarray]) -> np.ndarray:
    """Per view, the share of its mask pixels that the voxels at `centres` cover, each imaged as its disk."""
    from scipy import ndimage

    shares = []
    for camera, mask in zip(cameras, masks, strict=True):
        inside_mask = np.asarray(mask) >= 0.5
        uv, depth = camera.project(centres)
        seen = camera.in_image(uv, depth)
        hit = np.zeros(inside_mask.shape, dtype=bool)
        pixels = np.floor(uv[seen]).astype(int)
        hit[pixels[:, 1], pixels[:, 0]] = True
        # A voxel images to a disk about this wide (its circumscribed radius at the median depth).
        near = float(np.median(depth[seen])) if seen.any() else 0.0
        radius = float(camera.K[0, 0]) * grid.voxel * math.sqrt(3) / 2 / max(near, 1e-12)
        if radius > MAX_FOOTPRINT * max(camera.width, camera.height):
            # A hull this coarse in the view (the silhouettes' common box many times what it sees, or the
            # box around the camera) confirms nothing: such cameras contradict the masks.
            shares.append(0.0)
            continue
        size = max(1, int(math.ceil(radius)))
        offsets = np.arange(-size, size + 1)
        disk = offsets[:, None] ** 2 + offsets[None, :] ** 2 <= radius**2 + 0.5
        covered = ndimage.binary_dilation(hit, structure=disk) & inside_mask
        shares.append(covered.sum() / max(int(inside_mask.sum()), 1))
    return np.asarray(shares, dtype=np.float64)


def _gaps(masks: list[np.ndarray]) -> list[np.ndarray]:
    """Each view's distance from every pixel to its nearest object pixel (inf for an empty mask)."""
    from scipy import ndimage

    gaps = []
    for mask in masks:
        background = np.asarray(mask) < 0.5
        gaps.append(
            ndimage.distance_transform_edt(background) if not background.all() else np.full(background.shape, np.inf)
        )
    return gaps


def _may_hold_object(grid: VoxelGrid, cameras: list[Camera], gaps: list[np.ndarray], tolerance: int) -> np.ndarray:
    """Voxels whose projection reaches an object pixel in all but at most `tolerance` views."""
    return (_misses(grid, cameras, gaps)[0] <= tolerance).reshape(grid.shape)


def _frame_angle(camera: Camera) -> float:
    """Angle between the optical axis and the ray through the image corner farthest from the principal point,
    widened by FRAME_SLACK (lens distortion bends the corner rays; ruling out a visible voxel loses object)."""
    corners = np.array([[0, 0], [camera.width, 0], [0, camera.height], [camera.width, camera.height]], dtype=float)
    offsets = (corners - camera.K[:2, 2]) / np.array([camera.K[0, 0], camera.K[1, 1]])
    return float(np.arctan(FRAME_SLACK * np.linalg.norm(offsets, axis=1).max()))


def _misses(grid: VoxelGrid, cameras: list[Camera], gaps: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per voxel (flat), how many views rule it out (no object pixel within its projection), and the last that did."""
    centres = grid.centres("cpu").numpy()
    reach = grid.voxel * math.sqrt(3) / 2  # a voxel's circumscribed radius
    misses = np.zeros(len(centres), dtype=np.int32)
    last = np.full(len(centres), -1, dtype=np.int32)
    for index, (camera, gap) in enumerate(zip(cameras, gaps, strict=True)):
        uv, depth = camera.project(centres)
        pixel = np.nan_to_num(uv - 0.5, nan=0.0, posinf=0.0, neginf=0.0)  # pixel-centre coordinates
        inside = np.clip(pixel, 0, [camera.width - 1, camera.height - 1])
        distance = gap[inside[:, 1].round().astype(int), inside[:, 0].round().astype(int)]
        distance = distance + np.linalg.norm(pixel - inside, axis=1)
        # The voxel's bounding sphere images to within f·r/(z − r) of the centre's projection on the axis, and
        # stretched by up to 1 + tan²θ off it (θ the angle off the optical axis).
        focal = float(max(camera.K[0, 0], camera.K[1, 1]))
        off_axis = np.sum(((uv - camera.K[:2, 2]) / focal) ** 2, axis=1)
        radius = focal * reach / np.maximum(depth - reach, 1e-12) * (1 + np.nan_to_num(off_axis, nan=0.0)) + 1.0
        # A voxel this near the camera's plane projects unboundedly far: its footprint cannot rule it out.
        around_camera = np.abs(depth) <= reach
        # Nor can a footprint far off the axis, which the stretch above makes huge; but the object is in the
        # picture, so a voxel whose bounding sphere lies wholly outside the cone of the frame's corners is ruled
        # out (without this a 4-view capture's box held voxels beside the cameras, 3-6 times the object's size).
        local = camera.to_camera(centres)
        distance_to_camera = np.maximum(np.linalg.norm(local, axis=1), 1e-12)
        off_axis_angle = np.arctan2(np.linalg.norm(local[:, :2], axis=1), local[:, 2])
        subtended = np.arcsin(np.clip(reach / distance_to_camera, 0.0, 1.0))
        out_of_frame = off_axis_angle - subtended > _frame_angle(camera)
        missed = (~around_camera & ((depth <= 0) | (distance > radius))) | out_of_frame
        misses += missed
        last[missed] = index
    return misses, last


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
