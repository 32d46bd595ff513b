"""Silhouette support for surfaces stereo cannot see: where the object has no texture, its masks still bound it.

The carved volume (every voxel inside every mask that sees it) is extracted with marching cubes; its
surface points far from any stereo point fill the gaps before Poisson, so a plain white patch becomes the
hull's surface there instead of a hole or a Poisson bulge.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from reconstruction.engine.cameras import Camera

from .fusion import PointCloud

HULL_RESOLUTION = 160
# Hull points closer than this many voxels to a stereo point are left out: stereo is the better witness there.
GAP_VOXELS = 3.0


def hull_fill(cloud: PointCloud, silhouettes: list[tuple[Camera, np.ndarray]], bounds: np.ndarray) -> tuple[PointCloud, int]:
    """`cloud` plus hull surface points in its gaps (with outward normals), and how many were added."""
    from skimage.measure import marching_cubes

    low, high = bounds
    size = high - low
    voxel = float(size.max()) / HULL_RESOLUTION
    shape = np.maximum(np.ceil(size / voxel).astype(int) + 3, 4)
    origin = low - voxel
    axes = [origin[k] + voxel * np.arange(shape[k]) for k in range(3)]
    centres = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    inside = np.ones(len(centres), dtype=bool)
    for camera, mask in silhouettes:
        uv, z = camera.project(centres)
        seen = camera.in_image(uv, z)
        cols = np.clip(uv[:, 0].astype(int), 0, mask.shape[1] - 1)
        rows = np.clip(uv[:, 1].astype(int), 0, mask.shape[0] - 1)
        inside &= ~seen | mask[rows, cols]
    field = ndimage.gaussian_filter(inside.reshape(shape).astype(np.float32), 0.7)
    if field.max() < 0.5 or field.min() > 0.5:
        return cloud, 0
    vertices, _, normals, _ = marching_cubes(field, 0.5)
    points = origin + vertices * voxel
    # marching_cubes' normals point down the gradient, i.e. out of the occupied volume.
    normals = normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
    if len(cloud.points):
        gaps, _ = cKDTree(cloud.points).query(points, k=1)
        keep = gaps > GAP_VOXELS * voxel
    else:
        keep = np.ones(len(points), dtype=bool)
    added = int(keep.sum())
    if not added:
        return cloud, 0
    grey = np.full((added, 3), 0.5)
    return (
        PointCloud(
            np.concatenate([cloud.points, points[keep]]),
            np.concatenate([cloud.colors, grey]),
            np.concatenate([cloud.normals, normals[keep]]),
            np.concatenate([cloud.view_index, np.full(added, -1)]),
        ),
        added,
    )
