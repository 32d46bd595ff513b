"""Ground-truth occupancy of a mesh in a view frame by casting every column ray through all triangles at once.

All column rays start at the camera centre, so a ray meets a triangle exactly when its pixel falls inside the
triangle's projection; the hit depth is the perspective-correct interpolation of 1/z. Hits are paired per connected
component (enter, leave, enter, …), so an assembly of overlapping watertight parts is the union of its parts, which
a parity count over all hits would get wrong.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import trimesh

if TYPE_CHECKING:
    from reconstruction.engine.generative.frame import ViewFrame

# Samples sit this far (in columns) off the exact pixel centres so that edges and vertices of symmetric meshes,
# which often project exactly onto a centre, never land on a sample; far below any visible misalignment.
_JITTER = (1.234567e-6, 2.345678e-6)


def component_labels(mesh: trimesh.Trimesh) -> np.ndarray:
    """Connected-component label of every face, with coincident vertices merged first (seams, colour splits)."""
    merged = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False)
    merged.merge_vertices(merge_tex=True, merge_norm=True)
    return trimesh.graph.connected_component_labels(merged.face_adjacency, node_count=len(merged.faces))


def _column_hits(frame: ViewFrame, mesh: trimesh.Trimesh) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(column index, face index, camera depth) of every ray–triangle hit."""
    R = frame.resolution
    camera_points = frame.camera.to_camera(mesh.vertices)
    z = camera_points[:, 2]
    pixels = camera_points @ frame.camera.K.T
    u, v = pixels[:, 0] / z, pixels[:, 1] / z
    step = frame.side / R
    # Continuous column coordinates of every vertex: sample (i, j) sits at integer values.
    cols = (u - frame.x0) / step - 0.5 - _JITTER[0]
    rows = (v - frame.y0) / step - 0.5 - _JITTER[1]
    tri_cols, tri_rows, tri_inv_z = cols[mesh.faces], rows[mesh.faces], 1.0 / z[mesh.faces]
    i0 = np.clip(np.ceil(tri_rows.min(axis=1)), 0, R).astype(np.int64)
    i1 = np.clip(np.floor(tri_rows.max(axis=1)), -1, R - 1).astype(np.int64)
    j0 = np.clip(np.ceil(tri_cols.min(axis=1)), 0, R).astype(np.int64)
    j1 = np.clip(np.floor(tri_cols.max(axis=1)), -1, R - 1).astype(np.int64)
    heights, widths = np.maximum(i1 - i0 + 1, 0), np.maximum(j1 - j0 + 1, 0)
    counts = heights * widths
    faces = np.repeat(np.arange(len(mesh.faces)), counts)
    if not len(faces):
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0)
    offsets = np.arange(len(faces)) - np.repeat(np.cumsum(counts) - counts, counts)
    width_of = widths[faces]
    i = i0[faces] + offsets // width_of
    j = j0[faces] + offsets % width_of
    (ax, bx, cx), (ay, by, cy) = tri_cols[faces].T, tri_rows[faces].T
    area = (bx - ax) * (cy - ay) - (cx - ax) * (by - ay)
    w_a = (bx - j) * (cy - i) - (cx - j) * (by - i)
    w_b = (cx - j) * (ay - i) - (ax - j) * (cy - i)
    w_c = area - w_a - w_b
    sign = np.sign(area)
    inside = (area != 0) & (w_a * sign >= 0) & (w_b * sign >= 0) & (w_c * sign >= 0)
    faces, i, j = faces[inside], i[inside], j[inside]
    weights = np.stack([w_a[inside], w_b[inside], w_c[inside]], axis=1) / area[inside, None]
    depth = 1.0 / (weights * tri_inv_z[faces]).sum(axis=1)
    return i * R + j, faces, depth


def _fallback_columns(frame: ViewFrame, mesh: trimesh.Trimesh, labels: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """Occupancy (len(columns), D) by point containment per part, for the rare rays that graze an edge."""
    D, R = frame.depth_bins, frame.resolution
    k = np.arange(D, dtype=np.float64)
    grid = np.stack(
        [np.broadcast_to(k, (len(columns), D)), (columns // R)[:, None] + 0 * k, (columns % R)[:, None] + 0 * k], -1
    )
    points = frame.index_to_world(grid).reshape(-1, 3)
    inside = np.zeros(len(points), dtype=bool)
    for label in np.unique(labels):
        part = trimesh.Trimesh(mesh.vertices, mesh.faces[labels == label], process=False)
        inside |= part.contains(points)
    return inside.reshape(len(columns), D)


def column_occupancy(
    frame: ViewFrame, mesh: trimesh.Trimesh, labels: np.ndarray | None = None, *, thin_walls: bool = False
) -> np.ndarray:
    """(D, R, R) bool: voxel centres inside any watertight part (`labels`: part of each face; default components).

    With `thin_walls`, a stretch of solid along a column that holds no voxel centre marks the voxel nearest its
    middle, so thin shells (cups, shades, bowls) stay closed instead of breaking up into dots (training targets).
    """
    D, R = frame.depth_bins, frame.resolution
    if labels is None:
        labels = component_labels(mesh)
    if (frame.camera.to_camera(mesh.vertices)[:, 2] <= 1e-9).any():
        # Part of the mesh is behind the camera: projection does not apply, test every voxel centre instead.
        return _fallback_columns(frame, mesh, labels, np.arange(R * R)).reshape(R, R, D).transpose(2, 0, 1)
    column, faces, depth = _column_hits(frame, mesh)
    part = labels[faces]
    order = np.lexsort((depth, part, column))
    column, part, depth = column[order], part[order], depth[order]
    group_start = np.ones(len(column), dtype=bool)
    group_start[1:] = (column[1:] != column[:-1]) | (part[1:] != part[:-1])
    group_id = np.cumsum(group_start) - 1
    sizes = np.bincount(group_id)
    odd_group = sizes % 2 == 1
    rank = np.arange(len(column)) - np.flatnonzero(group_start)[group_id]
    good = ~odd_group[group_id]
    enter = good & (rank % 2 == 0)
    leave = np.flatnonzero(enter) + 1
    # Voxel k is inside an interval [z_in, z_out] when z_in ≤ z_k ≤ z_out.
    z_near, dz = float(frame.depth_of(np.zeros(()))), frame.depth_extent / D
    k_first = np.ceil((depth[enter] - z_near) / dz).astype(np.int64)
    k_last = np.floor((depth[leave] - z_near) / dz).astype(np.int64)
    thin = (k_first > k_last) & thin_walls
    k_first = np.where(thin, np.round(((depth[enter] + depth[leave]) / 2 - z_near) / dz), k_first).astype(np.int64)
    k_last = np.where(thin, k_first, k_last)
    k_first, k_last = np.clip(k_first, 0, D), np.clip(k_last, -1, D - 1)
    keep = k_first <= k_last
    counts = np.zeros((R * R, D + 1), dtype=np.int32)
    np.add.at(counts, (column[enter][keep], k_first[keep]), 1)
    np.add.at(counts, (column[enter][keep], k_last[keep] + 1), -1)
    occupancy = np.cumsum(counts[:, :D], axis=1) > 0
    bad_columns = np.unique(column[~good])
    if len(bad_columns):
        occupancy[bad_columns] = _fallback_columns(frame, mesh, labels, bad_columns)
    return occupancy.reshape(R, R, D).transpose(2, 0, 1)
