"""The plain triangle mesh that reconstruction stages hand each other, and its simplification to a budget."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import open3d as o3d


@dataclass
class Mesh:
    vertices: np.ndarray  # (V, 3)
    faces: np.ndarray  # (F, 3) int


def simplify(mesh: Mesh, max_triangles: int) -> Mesh:
    """`mesh` with at most `max_triangles` triangles (quadric edge collapse); returned as is when already within."""
    if len(mesh.faces) <= max_triangles:
        return mesh
    simplified = o3d.geometry.TriangleMesh(
        o3d.utility.Vector3dVector(mesh.vertices), o3d.utility.Vector3iVector(mesh.faces)
    ).simplify_quadric_decimation(max_triangles)
    simplified.remove_unreferenced_vertices()
    return Mesh(np.asarray(simplified.vertices).copy(), np.asarray(simplified.triangles).copy())
