"""Screened Poisson surface from the fused points, trimmed by density, distance to the points, the object
masks (when the capture has them) and small components."""
from __future__ import annotations

import numpy as np
import open3d as o3d
from scipy.spatial import cKDTree

from reconstruction.engine.cameras import Camera
from reconstruction.engine.errors import BackendFailed
from reconstruction.engine.meshes import Mesh, simplify

from .fusion import PointCloud

# A vertex farther than this many typical point spacings from any fused point is Poisson's guess, not data.
MAX_GAP_SPACINGS = 12.0
MIN_POINTS = 200


def poisson_mesh(
    cloud: PointCloud,
    *,
    depth: int,
    density_trim_quantile: float,
    min_component_share: float,
    max_triangles: int,
    silhouettes: list[tuple[Camera, np.ndarray]] | None = None,
    trim_unsupported: bool = True,
) -> tuple[Mesh, dict[str, float | int]]:
    """A trimmed watertight-where-supported surface through `cloud`, and counts of what each trim removed.

    `trim_unsupported` cuts Poisson's low-density and far-from-the-points surface; a caller whose cloud already
    covers the gaps (hull-fill points from a silhouette in every view) turns it off, since those trims would
    only open holes where stereo is sparse (plain, textureless patches).
    """
    if len(cloud.points) < MIN_POINTS:
        raise BackendFailed(
            f"Multi-view stereo kept only {len(cloud.points)} consistent points (at least {MIN_POINTS} are needed for a surface); "
            "the images may lack texture or overlap."
        )
    pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(cloud.points))
    pcd.normals = o3d.utility.Vector3dVector(cloud.normals)
    mesh, poisson_density = o3d.geometry.TriangleMesh.create_from_point_cloud_poisson(pcd, depth=depth, scale=1.1, linear_fit=False)
    vertices = np.asarray(mesh.vertices)
    faces = np.asarray(mesh.triangles)
    densities = np.asarray(poisson_density)
    report: dict[str, float | int] = {"poisson_vertices": len(vertices), "poisson_triangles": len(faces)}

    drop = np.zeros(len(vertices), bool)
    if trim_unsupported and density_trim_quantile > 0:
        drop = densities < np.quantile(densities, density_trim_quantile)
    report["trimmed_by_density"] = int(drop.sum())

    tree = cKDTree(cloud.points)
    spacing = float(np.median(tree.query(cloud.points[:: max(1, len(cloud.points) // 20000)], k=2)[0][:, 1]))
    gaps, _ = tree.query(vertices, k=1)
    far = (gaps > MAX_GAP_SPACINGS * spacing) if trim_unsupported else np.zeros(len(vertices), bool)
    report["trimmed_by_distance"] = int((far & ~drop).sum())
    drop |= far

    if silhouettes:
        outside = _outside_silhouettes(vertices, silhouettes)
        report["trimmed_by_silhouette"] = int((outside & ~drop).sum())
        drop |= outside

    faces = faces[~drop[faces].any(axis=1)]
    faces, removed = _drop_small_components(faces, len(vertices), min_component_share)
    report["small_component_triangles_removed"] = removed
    used = np.unique(faces)
    remap = np.full(len(vertices), -1)
    remap[used] = np.arange(len(used))
    mesh_out = Mesh(vertices[used].copy(), remap[faces])
    if len(mesh_out.faces) == 0:
        raise BackendFailed("The surface was empty after trimming; the fused points do not describe a surface.")
    if len(mesh_out.faces) > max_triangles:
        mesh_out = simplify(mesh_out, max_triangles)
        report["simplified_to"] = len(mesh_out.faces)
    report["triangles"] = len(mesh_out.faces)
    report["vertices"] = len(mesh_out.vertices)
    return mesh_out, report


def _outside_silhouettes(vertices: np.ndarray, silhouettes: list[tuple[Camera, np.ndarray]]) -> np.ndarray:
    """Vertices that project outside the (slightly grown) object mask of at least two views that see them."""
    votes = np.zeros(len(vertices), dtype=int)
    for camera, mask in silhouettes:
        grown = _grow(mask, 2)
        uv, z = camera.project(vertices)
        inside = camera.in_image(uv, z)
        cols = np.clip(uv[:, 0].astype(int), 0, mask.shape[1] - 1)
        rows = np.clip(uv[:, 1].astype(int), 0, mask.shape[0] - 1)
        votes += inside & ~grown[rows, cols]
    return votes >= 2


def _grow(mask: np.ndarray, pixels: int) -> np.ndarray:
    grown = mask.copy()
    for _ in range(pixels):
        shifted = grown.copy()
        shifted[1:] |= grown[:-1]
        shifted[:-1] |= grown[1:]
        shifted[:, 1:] |= grown[:, :-1]
        shifted[:, :-1] |= grown[:, 1:]
        grown = shifted
    return grown


def _drop_small_components(faces: np.ndarray, vertex_count: int, share: float) -> tuple[np.ndarray, int]:
    if len(faces) == 0:
        return faces, 0
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]]])
    graph = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(vertex_count, vertex_count))
    _, labels = connected_components(graph, directed=False)
    face_labels = labels[faces[:, 0]]
    sizes = np.bincount(face_labels)
    keep = sizes[face_labels] >= share * sizes.max()
    return faces[keep], int((~keep).sum())
