"""Poisson meshing: what the trims cut, and when the caller asks it not to."""
import numpy as np
import trimesh

from reconstruction.engine.backends.photogrammetry.fusion import PointCloud
from reconstruction.engine.backends.photogrammetry.meshing import poisson_mesh


def _sphere_with_a_bare_cap(points: int = 20_000) -> PointCloud:
    """Points on a unit sphere except a cap around +z (a patch stereo could not measure)."""
    rng = np.random.default_rng(0)
    directions = rng.normal(size=(points, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    kept = directions[directions[:, 2] < 0.8]
    return PointCloud(points=kept, colors=np.full_like(kept, 0.5), normals=kept.copy(), view_index=np.zeros(len(kept), int))


def _boundary_edges(faces: np.ndarray, vertices: np.ndarray) -> int:
    mesh = trimesh.Trimesh(vertices, faces, process=False)
    return len(trimesh.grouping.group_rows(mesh.edges_sorted, require_count=1))


def test_unsupported_surface_is_trimmed_by_default_and_kept_when_asked():
    cloud = _sphere_with_a_bare_cap()
    options = dict(depth=6, density_trim_quantile=0.03, min_component_share=0.02, max_triangles=100_000)

    trimmed, report = poisson_mesh(cloud, **options)
    assert report["trimmed_by_density"] + report["trimmed_by_distance"] > 0
    opened = _boundary_edges(trimmed.faces, trimmed.vertices)
    assert opened > 0  # the bare cap is cut open
    assert trimmed.vertices[:, 2].max() < 0.95

    closed, report = poisson_mesh(cloud, **options, trim_unsupported=False)
    assert report["trimmed_by_density"] == report["trimmed_by_distance"] == 0
    # Poisson's surface over the cap stays (a few open edges may remain where open3d leaves slivers).
    assert _boundary_edges(closed.faces, closed.vertices) < opened / 2
    assert closed.vertices[:, 2].max() > 0.95
