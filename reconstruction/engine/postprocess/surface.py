"""Topology and differential quantities on indexed triangle meshes, shared by the steps.

Vertices split at UV seams share a position but not an index; anything about connectivity (components,
holes, winding, smooth normals) is computed on the position-welded mesh so a seam is not mistaken for a border.
"""
from __future__ import annotations

import numpy as np
from scipy import sparse
from scipy.sparse import csgraph


def weld(positions: np.ndarray, tolerance: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Map each vertex to one representative per distinct position (within `tolerance`).

    Returns (welded index of each vertex, welded positions).
    """
    keys = positions if tolerance <= 0 else np.round(positions / tolerance)
    first, inverse = unique_rows(keys)
    return inverse, positions[first]


def unique_rows(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(index of the first occurrence of each distinct row, distinct-row index of every row).

    Rows are compared as raw bytes, which is exact and much faster than `np.unique(axis=0)`.
    """
    rows = np.ascontiguousarray(rows)
    if rows.dtype.kind == "f":
        rows = rows + 0.0  # -0.0 and 0.0 must compare equal as bytes too
    as_bytes = rows.view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1]))).reshape(-1)
    _, first, inverse = np.unique(as_bytes, return_index=True, return_inverse=True)
    return first, inverse.reshape(-1).astype(np.int64)


def face_normals_and_areas(positions: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit normals (zero for degenerate faces) and areas of each triangle."""
    tri = positions[faces]
    cross = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    doubled = np.linalg.norm(cross, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        normals = np.where(doubled[:, None] > 0, cross / doubled[:, None], 0.0)
    return normals, doubled / 2.0


def smooth_vertex_normals(positions: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted vertex normals, averaged across seams so split vertices shade identically."""
    welded, _ = weld(positions)
    cross = np.cross(positions[faces[:, 1]] - positions[faces[:, 0]], positions[faces[:, 2]] - positions[faces[:, 0]])
    sums = np.zeros((welded.max() + 1 if len(welded) else 0, 3))
    for corner in range(3):
        np.add.at(sums, welded[faces[:, corner]], cross)
    normals = sums[welded]
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    # Vertices on no face (or only degenerate ones) get +Y rather than NaN, which no exporter accepts.
    return np.where(length > 0, normals / np.where(length > 0, length, 1.0), np.array([0.0, 1.0, 0.0]))


def edge_keys(faces: np.ndarray) -> np.ndarray:
    """One integer per face corner edge (three per face, in face order), equal for both directions of an edge.

    Sorting integers is several times faster than `np.unique(axis=0)` on pairs, which dominates on scans.
    """
    edges = faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)
    low, high = edges.min(axis=1), edges.max(axis=1)
    return low.astype(np.int64) * (int(faces.max(initial=0)) + 1) + high


def edge_use_counts(faces: np.ndarray) -> np.ndarray:
    """How many faces use the edge of each face corner (shape: faces × 3, flattened)."""
    _, inverse, counts = np.unique(edge_keys(faces), return_inverse=True, return_counts=True)
    return counts[inverse]


def non_manifold_edge_count(faces: np.ndarray) -> int:
    _, counts = np.unique(edge_keys(faces), return_counts=True)
    return int((counts > 2).sum())


def face_components(faces: np.ndarray, vertex_count: int) -> np.ndarray:
    """Connected-component label of each face (faces sharing a vertex are connected)."""
    if len(faces) == 0:
        return np.zeros(0, dtype=np.int64)
    rows = np.concatenate([faces[:, 0], faces[:, 1]])
    cols = np.concatenate([faces[:, 1], faces[:, 2]])
    graph = sparse.coo_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(vertex_count, vertex_count))
    _, labels = csgraph.connected_components(graph, directed=False)
    return labels[faces[:, 0]].astype(np.int64)


def boundary_loops(faces: np.ndarray) -> list[np.ndarray]:
    """Closed loops of border edges, each as vertex indices in the direction the adjacent faces run.

    Where loops touch at a vertex (two holes sharing a corner), each simple cycle is returned on its own.
    """
    directed = faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)
    border = directed[edge_use_counts(faces) == 1]
    outgoing: dict[int, list[int]] = {}
    for start, end in border.tolist():
        outgoing.setdefault(start, []).append(end)
    loops: list[np.ndarray] = []
    for origin in list(outgoing):
        while outgoing.get(origin):
            path = [origin]
            position = {origin: 0}
            current = origin
            while outgoing.get(current):
                current = outgoing[current].pop()
                if current in position:
                    # Closed a simple cycle: split it off and keep walking from where it began.
                    cycle = path[position[current]:]
                    if len(cycle) >= 3:
                        loops.append(np.array(cycle, dtype=np.int64))
                    for vertex in cycle[1:]:
                        del position[vertex]
                    path = path[: position[current] + 1]
                    continue
                position[current] = len(path)
                path.append(current)
            # A path that ends without closing runs along a non-manifold border: it is no fillable hole.
    return loops


def vertex_tangents(positions: np.ndarray, faces: np.ndarray, uvs: np.ndarray, normals: np.ndarray) -> np.ndarray:
    """Per-vertex tangent frames (xyz, handedness w=±1) from UV gradients, orthogonal to the normals.

    The same frames are written to the GLB's TANGENT attribute, so a viewer decodes the baked normal map
    in exactly the frame it was baked in.
    """
    p0, p1, p2 = (positions[faces[:, i]] for i in range(3))
    t0, t1, t2 = (uvs[faces[:, i]] for i in range(3))
    e1, e2 = p1 - p0, p2 - p0
    d1, d2 = t1 - t0, t2 - t0
    det = d1[:, 0] * d2[:, 1] - d2[:, 0] * d1[:, 1]
    safe = np.where(np.abs(det) > 1e-20, det, 1.0)
    weight = (np.abs(det) > 1e-20)[:, None] / safe[:, None]
    tangent = (e1 * d2[:, 1:2] - e2 * d1[:, 1:2]) * weight
    bitangent = (e2 * d1[:, 0:1] - e1 * d2[:, 0:1]) * weight
    tan_sum = np.zeros_like(positions)
    bit_sum = np.zeros_like(positions)
    for corner in range(3):
        np.add.at(tan_sum, faces[:, corner], tangent)
        np.add.at(bit_sum, faces[:, corner], bitangent)
    # Gram-Schmidt against the normal; where UVs give no direction, any perpendicular will do.
    tan_sum -= normals * np.sum(normals * tan_sum, axis=1, keepdims=True)
    length = np.linalg.norm(tan_sum, axis=1, keepdims=True)
    fallback = np.cross(normals, np.where(np.abs(normals[:, :1]) < 0.9, [[1.0, 0.0, 0.0]], [[0.0, 1.0, 0.0]]))
    fallback /= np.linalg.norm(fallback, axis=1, keepdims=True)
    tan = np.where(length > 1e-12, tan_sum / np.where(length > 1e-12, length, 1.0), fallback)
    handed = np.where(np.sum(np.cross(normals, tan) * bit_sum, axis=1) < 0.0, -1.0, 1.0)
    return np.column_stack([tan, handed])


def uv_areas(uvs: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Signed area of each triangle in UV space (positive when the UV winding is counter-clockwise)."""
    t0, t1, t2 = (uvs[faces[:, i]] for i in range(3))
    d1, d2 = t1 - t0, t2 - t0
    return 0.5 * (d1[:, 0] * d2[:, 1] - d2[:, 0] * d1[:, 1])
