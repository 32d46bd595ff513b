"""Vertex colours of a reconstructed mesh taken from the calibrated views that see each vertex best."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import trimesh

from reconstruction.engine.cameras import Camera
from reconstruction.engine.capture import Capture


def colour_vertices(
    mesh: trimesh.Trimesh, capture: Capture, cameras: list[Camera], voxel: float, check: Callable[[], None]
) -> float:
    """Sets vertex colours from the best-facing view in which each vertex is visible; returns the share coloured."""
    vertices = np.asarray(mesh.vertices)
    colours, coloured = view_colours(mesh, capture, cameras, voxel, check)
    if coloured.any() and not coloured.all():
        # Vertices no view sees (deep folds) take the colour of the nearest coloured vertex.
        from scipy.spatial import cKDTree

        _, nearest = cKDTree(vertices[coloured]).query(vertices[~coloured])
        colours[~coloured] = colours[coloured][nearest]
    rgba = np.hstack([np.clip(colours * 255 + 0.5, 0, 255), np.full((len(colours), 1), 255)]).astype(np.uint8)
    mesh.visual = trimesh.visual.ColorVisuals(mesh, vertex_colors=rgba)
    return float(coloured.mean())


def view_colours(
    mesh: trimesh.Trimesh, capture: Capture, cameras: list[Camera], voxel: float, check: Callable[[], None]
) -> tuple[np.ndarray, np.ndarray]:
    """Colour (V, 3) in [0, 1] of each vertex from the best-facing view that sees it (a depth test against the
    mesh itself, `voxel` of slack), and which vertices some view sees (V,) bool; unseen vertices are grey."""
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
        colours[better] = bilinear(image, uv[better])
        best_score[better] = score[better]
    return colours, np.isfinite(best_score)


def bilinear(image: np.ndarray, uv: np.ndarray) -> np.ndarray:
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
