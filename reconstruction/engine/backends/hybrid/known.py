"""Known voxels of a view frame: what the cameras measured, to be held fixed while the generative model fills the rest.

- EMPTY where a silhouette excludes the voxel (visual-hull carving), or where a consistent depth map says it lies in
  front of an observed surface by more than the tolerance (free-space carving);
- OCCUPIED in a thin band just behind the fused surface points (each confirmed by at least two views);
- UNKNOWN elsewhere: inside the hull where no camera saw a surface (the far side, concavities no camera sees into).

Silhouettes are exact on our captures, so their verdict wins; the surface band wins over free-space carving, whose
depth maps are noisier than the consistency-checked points the band comes from.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from scipy.spatial import cKDTree

from reconstruction.engine.cameras import Camera
from reconstruction.engine.generative.frame import ViewFrame

from .observe import Observation

EMPTY = np.int8(0)
OCCUPIED = np.int8(1)
UNKNOWN = np.int8(-1)
SILHOUETTE_LEVEL = 0.5  # mask coverage below which a pixel is background
NEIGHBOUR_PLANES = 8  # fused points whose tangent planes a surface-band voxel must lie behind
PLANE_SLACK = 0.25  # …give or take this share of a voxel (the points themselves are noisy)


def world_to_index(frame: ViewFrame, points: np.ndarray) -> np.ndarray:
    """World points (N, 3) → continuous voxel indices (N, 3) in (k, i, j) order; the inverse of index_to_world."""
    camera_points = frame.camera.to_camera(points)
    z = camera_points[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        pixels = (camera_points / z[:, None]) @ frame.camera.K.T
    step = frame.side / frame.resolution
    j = (pixels[:, 0] - frame.x0) / step - 0.5
    i = (pixels[:, 1] - frame.y0) / step - 0.5
    k = (z - (frame.centre_depth - frame.depth_extent / 2)) * frame.depth_bins / frame.depth_extent - 0.5
    return np.stack([k, i, j], axis=1)


def voxel_centres(frame: ViewFrame) -> torch.Tensor:
    """World positions (D, R, R, 3) float32 of the voxel centres: frame.world_points() computed as depth × column
    direction + camera centre, which is fast enough for the output grid's millions of voxels."""
    i, j = np.meshgrid(np.arange(frame.resolution), np.arange(frame.resolution), indexing="ij")
    u, v = frame.column_pixels(i, j)
    pixels = np.stack([u, v, np.ones_like(u)], axis=-1)  # (R, R, 3)
    directions = pixels @ np.linalg.inv(frame.camera.K).T @ frame.camera.R  # world direction per unit camera depth
    depths = frame.depth_of(np.arange(frame.depth_bins, dtype=np.float64))
    return torch.from_numpy(depths.astype(np.float32))[:, None, None, None] * torch.from_numpy(
        directions.astype(np.float32)
    )[None] + torch.from_numpy(frame.camera.center.astype(np.float32))


def classify(
    frame: ViewFrame, observation: Observation, *, tolerance_voxels: float = 1.5, band_voxels: float = 2.0
) -> np.ndarray:
    """Label (D, R, R) int8 of every voxel of `frame`: EMPTY, OCCUPIED or UNKNOWN (see the module docstring)."""
    centres = voxel_centres(frame).reshape(-1, 3)
    lateral, depth = frame.voxel_size()
    coarse, fine = max(lateral, depth), min(lateral, depth)
    labels = np.full(len(centres), EMPTY, dtype=np.int8)
    # Silhouettes first, each view testing only what the previous ones left: most of the frame is carved early.
    alive = torch.arange(len(centres))
    for camera, mask in zip(observation.cameras, observation.masks, strict=True):
        alive = alive[~_outside_silhouette(camera, mask, centres[alive])]
    inside = np.zeros(len(centres), dtype=bool)
    inside[alive.numpy()] = True
    free = torch.zeros(len(alive), dtype=torch.bool)
    for camera, depth_map in zip(observation.stereo_cameras, observation.depths, strict=True):
        free |= _in_front_of_surface(camera, depth_map, centres[alive], tolerance_voxels * coarse)
    labels[alive[~free].numpy()] = UNKNOWN
    band = _behind_points(frame, observation, band_voxels * fine, fine)
    labels[band[inside[band]]] = OCCUPIED
    return labels.reshape(frame.shape)


def known_arrays(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(known values in {0, 1} as float32, known mask) for the sampler from voxel labels."""
    return (labels == OCCUPIED).astype(np.float32), labels != UNKNOWN


def project(camera: Camera, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel coordinates (N, 2) and depths (N,) of world points (N, 3) (float32; distortion through Camera.project)."""
    if camera.has_distortion:
        uv_np, z_np = camera.project(points.numpy().astype(np.float64))
        return torch.from_numpy(uv_np.astype(np.float32)), torch.from_numpy(z_np.astype(np.float32))
    R = torch.from_numpy(camera.R.astype(np.float32))
    t = torch.from_numpy(camera.t.astype(np.float32))
    K = torch.from_numpy(camera.K.astype(np.float32))
    local = points @ R.T + t
    depth = local[:, 2]
    pixels = (local @ K.T)[:, :2] / depth.clamp_min(1e-12)[:, None]
    return pixels, depth


def _sample(image: np.ndarray, uv: torch.Tensor, mode: str) -> torch.Tensor:
    """Values of a (H, W) map at pixel coordinates (N, 2) (pixel centres at +0.5), clamped at the border."""
    height, width = image.shape
    grid = torch.stack([2 * uv[:, 0] / width - 1, 2 * uv[:, 1] / height - 1], dim=-1)[None, None]
    source = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None, None]
    return F.grid_sample(source, grid, mode=mode, padding_mode="border", align_corners=False)[0, 0, 0]


def _outside_silhouette(camera: Camera, mask: np.ndarray, points: torch.Tensor) -> torch.Tensor:
    """Points whose projection is background in `mask`; the whole object is in every image, so outside the frame
    counts as background too (as for the visual hull)."""
    uv, z = project(camera, points)
    seen = (z > 0) & (uv[:, 0] >= 0) & (uv[:, 0] < camera.width) & (uv[:, 1] >= 0) & (uv[:, 1] < camera.height)
    return ~seen | (_sample(mask, uv, "bilinear") < SILHOUETTE_LEVEL)


def _in_front_of_surface(camera: Camera, depth_map: np.ndarray, points: torch.Tensor, tolerance: float) -> torch.Tensor:
    """Points a depth map sees through: nearer the camera than the measured surface by more than `tolerance`.

    The depth map is eroded by a pixel first (a 3×3 minimum, unmeasured pixels counting as 0), so a voxel that
    projects next to a depth edge or a hole is never carved on the strength of its neighbour pixel.
    """
    if not (depth_map > 0).any():
        return torch.zeros(len(points), dtype=torch.bool)
    eroded = ndimage.minimum_filter(depth_map, size=3, mode="constant", cval=0.0)
    uv, z = project(camera, points)
    seen = (z > 0) & (uv[:, 0] >= 0) & (uv[:, 0] < camera.width) & (uv[:, 1] >= 0) & (uv[:, 1] < camera.height)
    measured = _sample(eroded, uv, "nearest")
    return seen & (measured > 0) & (z < measured - tolerance)


def _behind_points(frame: ViewFrame, observation: Observation, band: float, step: float) -> np.ndarray:
    """Flat indices of voxels whose centre lies behind a fused point's tangent plane by at most `band`, on the
    voxel column through the point along its inward normal."""
    shape = frame.shape
    if not len(observation.points):
        return np.zeros(0, dtype=np.int64)
    points, inward = observation.points, -observation.normals
    candidates, owners = [], []
    for offset in np.arange(0.5 * step, band + 0.5 * step, 0.5 * step):
        index = np.round(world_to_index(frame, points + offset * inward)).astype(np.int64)
        inside = np.all((index >= 0) & (index < np.array(shape)), axis=1)
        candidates.append(np.ravel_multi_index(index[inside].T, shape))
        owners.append(np.flatnonzero(inside))
    pairs = np.unique(np.stack([np.concatenate(candidates), np.concatenate(owners)], axis=1), axis=0)
    voxel_ids, point_ids = pairs[:, 0], pairs[:, 1]
    centres = frame.index_to_world(np.stack(np.unravel_index(voxel_ids, shape), axis=1))
    behind = np.einsum("ij,ij->i", centres - points[point_ids], inward[point_ids])
    keep = (behind >= 0) & (behind <= band)
    voxel_ids = np.unique(voxel_ids[keep])
    if not len(voxel_ids):
        return voxel_ids
    centres = frame.index_to_world(np.stack(np.unravel_index(voxel_ids, shape), axis=1))
    # Near an edge one point's plane can put a centre "behind" while the other face has it outside: a centre must
    # lie behind the tangent plane of every fused point within the band around it.
    distance, nearest = cKDTree(points).query(centres, k=NEIGHBOUR_PLANES, distance_upper_bound=band)
    found = np.isfinite(distance)
    safe = np.where(found, nearest, 0)
    depth_behind = np.einsum("nkj,nkj->nk", centres[:, None] - points[safe], inward[safe])
    worst = np.where(found, depth_behind, np.inf).min(axis=1)
    return voxel_ids[worst >= -PLANE_SLACK * step]
